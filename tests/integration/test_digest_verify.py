"""Tamper evidence on a local lake: `auditlake digest` seals what the compactor wrote, `auditlake
verify` proves it complete and catches a flipped byte, a removed file, an added file, and any
change to the digest chain itself."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from auditlake.cli import main
from auditlake.local_lake import LocalLake
from auditlake.stores import Store, StoreError
from auditlake.stores import local as local_module
from auditlake.stores.local import LocalStore
from auditlake.timestamps import format_utc
from auditlake.trust.digest import Digester, LocalChainHead, LocalSigner, message_digest, verify
from auditlake.trust.ledger import Entry, LocalLedger
from tests.helpers import corpus_path


def run(*args: str) -> Any:
    return CliRunner(mix_stderr=False).invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    lake = tmp_path / "lake"
    log = corpus_path("audit/liggitt__audit2rbac__demo_v1beta1_original.jsonl")
    assert run("ingest", str(log), "--cluster", "c1", "--lake", str(lake)).exit_code == 0
    assert run("compact", "--lake", str(lake)).exit_code == 0
    sealed = run("digest", "--lake", str(lake))
    assert sealed.exit_code == 0 and "digests 1" in sealed.stderr, sealed.stderr
    return lake


def archive_files(lake: Path) -> list[Path]:
    return sorted((lake / "archive" / "audit").rglob("*.parquet"))


def test_an_untouched_archive_verifies(lake: Path) -> None:
    result = run("verify", "--lake", str(lake))
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "verified" in result.stderr and f"files checked {len(archive_files(lake))}" in result.stderr


def test_a_flipped_byte_is_caught(lake: Path) -> None:
    victim = archive_files(lake)[0]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    result = run("verify", "--lake", str(lake))
    assert result.exit_code == 1
    assert result.stdout.startswith("ALTERED") and victim.name in result.stdout


def test_a_removed_file_is_caught(lake: Path) -> None:
    victim = archive_files(lake)[-1]
    victim.unlink()
    result = run("verify", "--lake", str(lake))
    assert result.exit_code == 1 and "MISSING" in result.stdout and victim.name in result.stdout


def test_an_added_file_is_caught(lake: Path) -> None:
    original = archive_files(lake)[0]
    forged = original.with_name(original.name.replace(original.name.split("-")[-1], "0badc0ffee00.parquet"))
    shutil.copy(original, forged)
    # Written after the last digest (its real write time, whatever its name says), but no
    # compaction recorded it in the ledger.
    result = run("verify", "--lake", str(lake))
    assert result.exit_code == 1 and "UNRECORDED" in result.stdout and forged.name in result.stdout
    # The next digest does not seal it (not in the ledger): from then on it is extra.
    assert run("digest", "--lake", str(lake)).exit_code == 0
    result = run("verify", "--lake", str(lake))
    assert result.exit_code == 1 and "EXTRA" in result.stdout and forged.name in result.stdout


def test_editing_or_removing_a_digest_breaks_the_chain(lake: Path, tmp_path: Path) -> None:
    log = corpus_path("audit/liggitt__audit2rbac__demo_v1.jsonl")
    assert run("ingest", str(log), "--cluster", "c2", "--lake", str(lake)).exit_code == 0
    assert run("compact", "--lake", str(lake)).exit_code == 0
    unsealed = run("verify", "--lake", str(lake))
    assert unsealed.exit_code == 0 and "not yet sealed 2" in unsealed.stderr  # written after the digest: no error
    assert run("digest", "--lake", str(lake)).exit_code == 0
    sealed = run("verify", "--lake", str(lake))
    assert sealed.exit_code == 0, sealed.stdout + sealed.stderr
    digests = sorted((lake / "archive" / "digests").iterdir())
    assert [d.name for d in digests] == ["0000000001.json", "0000000002.json"]
    # Hide a file by deleting it from the first digest: the signature no longer matches.
    doc = json.loads(digests[0].read_text())
    doc["objects"] = doc["objects"][1:]
    digests[0].write_text(json.dumps(doc))
    edited = run("verify", "--lake", str(lake))
    assert edited.exit_code == 1 and "BAD-SIGNATURE" in edited.stdout and "CHAIN" in edited.stdout
    # Remove the first digest altogether: the second no longer follows anything.
    digests[0].unlink()
    removed = run("verify", "--lake", str(lake))
    assert removed.exit_code == 1 and "CHAIN" in removed.stdout and "EXTRA" in removed.stdout


def _local(lake: Path) -> tuple[LocalLedger, dict[str, Store], LocalSigner, LocalChainHead]:
    local = LocalLake(lake)
    return local.ledger(), local.archives(), local.signer(), local.chain_head()


def _entry(key: str, at: datetime, data: bytes = b"x" * 10) -> Entry:
    stamp = format_utc(at)
    return Entry(key, hashlib.sha256(data).hexdigest(), len(data), 1, stamp, stamp, stamp)


def test_a_write_that_never_happened_is_abandoned_not_vanished(tmp_path: Path) -> None:
    """The compactor records a file in the ledger before writing it and marks it stored after; a
    write that failed (or a compactor killed before it) leaves an entry never marked and no file:
    the digest does not seal it and lists it abandoned; verify reports it and passes (its rows
    are compacted again by the retry: an honest archive)."""
    ledger, stores, signer, head = _local(tmp_path / "lake")
    now = datetime.now(UTC).replace(microsecond=0)
    key = "audit/dt=2026-11-21/hour=10/c1-20261121T100000Z-000000000000.parquet"
    ledger.record(_entry(key, now - timedelta(minutes=30)))
    report = Digester(ledger, stores, head, signer).seal(now, start=now - timedelta(hours=1), hourly=False)
    assert (report.abandoned, report.dropped, report.objects, len(report.digests)) == ([key], [], 0, 1)
    found = verify(stores, signer, head=head)
    assert found.ok and found.abandoned == [key], found.findings


@pytest.mark.parametrize("stored", [True, None], ids=["marked-stored", "recorded-before-marks"])
def test_a_file_removed_before_it_was_sealed_is_vanished(tmp_path: Path, stored: bool | None) -> None:
    """An entry marked stored whose file is gone: written, then removed before any digest sealed
    it. So is an entry recorded before the ledger marked writes (it cannot tell the two apart)."""
    ledger, stores, signer, head = _local(tmp_path / "lake")
    now = datetime.now(UTC).replace(microsecond=0)
    key = "audit/dt=2026-11-21/hour=10/c1-20261121T100000Z-000000000002.parquet"
    entry = replace(_entry(key, now - timedelta(minutes=30)), stored=stored)
    ledger.record(entry)
    if stored:
        stores["audit"].put(key, b"x" * 10, create_only=True)
        ledger.confirm(entry)
        (LocalLake(tmp_path / "lake").archive_dir / key).unlink()  # the attacker, before the digest
    report = Digester(ledger, stores, head, signer).seal(now, start=now - timedelta(hours=1), hourly=False)
    assert (report.dropped, report.abandoned, report.objects) == ([key], [], 0)
    found = verify(stores, signer, head=head)
    assert [(f.kind, f.key) for f in found.findings] == [("vanished", key)]
    assert "removed" in found.findings[0].detail


def test_after_the_last_digest_unmarked_entries_are_writing_or_abandoned(tmp_path: Path) -> None:
    """Since the last digest, verify reads the ledger itself: an entry never marked and without a
    file is still being written (younger than SETTLE) or abandoned (older), never a finding; one
    marked stored without a file is vanished."""
    ledger, stores, signer, head = _local(tmp_path / "lake")
    now = datetime.now(UTC).replace(microsecond=0)
    Digester(ledger, stores, head, signer).seal(now - timedelta(minutes=40), start=now - timedelta(hours=1),
                                                hourly=False, now=now - timedelta(minutes=40))  # fmt: skip
    base = "audit/dt=2026-11-21/hour=10/c1-20261121T100000Z-"
    ages = {3: timedelta(minutes=1), 4: timedelta(minutes=30), 5: timedelta(minutes=30)}
    young, old, gone = (_entry(f"{base}{n:012d}.parquet", now - age) for n, age in ages.items())
    for entry in (young, old, gone):
        ledger.record(entry)
    ledger.confirm(gone)
    found = verify(stores, signer, head=head, ledger=ledger, now=now)
    assert (found.writing, found.abandoned) == ([young.key], [old.key])
    assert [(f.kind, f.key) for f in found.findings] == [("vanished", gone.key)]


def test_a_file_still_being_written_is_sealed_by_the_next_digest(tmp_path: Path) -> None:
    """A digest reading the ledger between a compactor's entry and its write ends its window before
    that entry; the file, once written, is sealed by the next digest (it used to be left out as
    never written, then reported extra forever)."""
    ledger, stores, signer, head = _local(tmp_path / "lake")
    now = datetime.now(UTC).replace(microsecond=0)
    key = "audit/dt=2026-11-21/hour=10/c1-20261121T100000Z-000000000001.parquet"
    ledger.record(_entry(key, now - timedelta(seconds=1)))
    first = Digester(ledger, stores, head, signer).seal(now, start=now - timedelta(hours=1), hourly=False)
    assert first.waiting == [key] and first.dropped == [] and first.objects == 0
    stores["audit"].put(key, b"x" * 10, create_only=True)  # the compactor's write lands
    between = verify(stores, signer, head=head, ledger=ledger, now=datetime.now(UTC))
    assert between.ok and between.unsealed == [key], between.findings
    later = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    second = Digester(ledger, stores, head, signer).seal(later, start=now, hourly=False, now=later)
    assert second.objects == 1 and second.waiting == []
    after = verify(stores, signer, head=head, ledger=ledger, now=later)
    assert after.ok and after.objects == 1 and after.unsealed == [], after.findings


def test_a_cut_ledger_line_is_skipped_and_reported(lake: Path) -> None:
    """A compactor killed mid-append leaves half a line: digest skips it, says so, and the next
    compaction's entry still starts on a line of its own."""
    hour_file = sorted(LocalLake(lake).ledger_dir.glob("*.jsonl"))[-1]
    with hour_file.open("ab") as handle:
        handle.write(b'{"key": "audit/dt=2026-01-01/hour=00/cut-')
    log = corpus_path("audit/liggitt__audit2rbac__demo_v1.jsonl")
    assert run("ingest", str(log), "--cluster", "c2", "--lake", str(lake)).exit_code == 0
    assert run("compact", "--lake", str(lake)).exit_code == 0
    sealed = run("digest", "--lake", str(lake))
    assert sealed.exit_code == 0, sealed.stderr
    assert "unreadable ledger lines 1" in sealed.stderr and "ledger entry unreadable" in sealed.stderr
    result = run("verify", "--lake", str(lake))
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "not yet sealed 0" in result.stderr


def test_verify_never_makes_a_key_and_needs_a_lake(tmp_path: Path) -> None:
    typo = tmp_path / "lakee"
    result = run("verify", "--lake", str(typo))
    assert result.exit_code == 1 and "no lake at" in result.stderr and not typo.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run("verify", "--lake", str(empty))
    assert result.exit_code == 1 and "no lake at" in result.stderr  # an empty directory is not a lake
    fresh = tmp_path / "fresh"
    LocalLake(fresh).create()  # a lake nothing was archived in yet
    result = run("verify", "--lake", str(fresh))
    assert result.exit_code == 1 and "NO-DIGEST" in result.stdout
    assert not (fresh / "state" / "digest-key.pem").exists()


def test_an_exported_public_key_verifies_and_refuses_a_swapped_key(lake: Path, tmp_path: Path) -> None:
    public = tmp_path / "elsewhere" / "digest.pub"
    public.parent.mkdir()
    exported = run("digest", "--lake", str(lake), "--export-public-key", str(public))
    assert exported.exit_code == 0 and public.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    head = exported.stderr.split("chain head ", 1)[1].split()[0]
    assert run("verify", "--lake", str(lake), "--public-key", str(public), "--expect-head", head).exit_code == 0
    # Someone with write access swaps the lake's key and re-signs every digest with theirs.
    LocalLake(lake).digest_key_file.unlink()
    forger = LocalLake(lake).signer()
    for path in sorted((lake / "archive" / "digests").iterdir()):
        doc = json.loads(path.read_text())
        doc["signature"]["value"] = base64.b64encode(forger.sign(message_digest(doc))).decode()
        path.write_text(json.dumps(doc))
    result = run("verify", "--lake", str(lake), "--public-key", str(public))
    assert result.exit_code == 1 and "BAD-SIGNATURE" in result.stdout


def test_a_stale_chain_fails_against_max_age(tmp_path: Path) -> None:
    """Digests that stopped (or whose newest ones were removed with the head) end too long ago."""
    lake = tmp_path / "lake"
    local = LocalLake(lake)
    now = datetime.now(UTC).replace(microsecond=0)
    Digester(local.ledger(), local.archives(), local.chain_head(), local.signer()).seal(
        now - timedelta(hours=2), start=now - timedelta(hours=3), hourly=False
    )
    assert run("verify", "--lake", str(lake)).exit_code == 0  # a local lake has no schedule: no limit by default
    stale = run("verify", "--lake", str(lake), "--max-age", "1h")
    assert stale.exit_code == 1 and stale.stdout.startswith("STALE"), stale.stdout
    assert run("verify", "--lake", str(lake), "--max-age", "3h").exit_code == 0
    bad = run("verify", "--lake", str(lake), "--expect-head", "2:abc")
    assert bad.exit_code == 2 and "SEQUENCE:SHA256" in bad.stderr


@pytest.fixture
def unsealed(lake: Path) -> Path:
    """The sealed lake, then a second cluster compacted and not yet sealed."""
    log = corpus_path("audit/liggitt__audit2rbac__demo_v1.jsonl")
    assert run("ingest", str(log), "--cluster", "c2", "--lake", str(lake)).exit_code == 0
    assert run("compact", "--lake", str(lake)).exit_code == 0
    return lake


def test_an_honest_copy_verifies(unsealed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An auditor gets a copy of the lake (cp -a, tar, a restore): every file's ctime is the copy's.
    A file written since the last digest is looked up in every ledger hour since that digest, not
    only around its (copied) write time, so a copy made hours later verifies too."""
    copy = tmp_path / "copy"
    shutil.copytree(unsealed, copy, symlinks=True)
    result = run("verify", "--lake", str(copy))
    assert result.exit_code == 0 and "not yet sealed 0" not in result.stderr, result.stdout + result.stderr
    # The copy made (and verified) three hours later: file times and verify's clock both move.
    later = timedelta(hours=3)
    base = local_module._file_clock_offset()
    monkeypatch.setattr(local_module, "_file_clock_offset", lambda: base + later.total_seconds())
    ledger, stores, _, _ = _local(copy)
    signer = LocalLake(copy).signer(create=False)
    head = LocalLake(copy).chain_head()
    report = verify(stores, signer, head=head, ledger=ledger, now=datetime.now(UTC) + later)
    assert report.ok and report.unsealed, report.findings
    # ... and a file written since the last digest that the ledger does not hold is still caught.
    stray = report.unsealed[0].replace(".parquet", "-stray.parquet")
    shutil.copy(copy / "archive" / report.unsealed[0], copy / "archive" / stray)
    caught = verify(stores, signer, head=head, ledger=ledger, now=datetime.now(UTC) + later)
    assert [(f.kind, f.key) for f in caught.findings] == [("unrecorded", stray)]


def test_a_digest_run_that_stopped_before_moving_the_head_is_adopted(unsealed: Path) -> None:
    """A crash between writing digest N+1 and moving the head used to stall sealing for good
    ("cannot write ...: exists"). The next run adopts the file if it is signed by the key and links
    to the head; anything else there is an error naming it."""
    head_path = LocalLake(unsealed).digest_head_file
    before = head_path.read_bytes()
    assert run("digest", "--lake", str(unsealed)).exit_code == 0
    written = sorted((unsealed / "archive" / "digests").glob("*.json"))[-1]
    head_path.write_bytes(before)  # the run stopped before moving the head
    assert "HEAD" in run("verify", "--lake", str(unsealed)).stdout
    again = run("digest", "--lake", str(unsealed))
    assert again.exit_code == 0 and f"digests/{written.name} was written by a digest run" in again.stderr, again.stderr
    result = run("verify", "--lake", str(unsealed))
    assert result.exit_code == 0 and "not yet sealed 0" in result.stderr, result.stdout + result.stderr
    # A file at the next digest's name that this key did not sign is not adopted.
    after = head_path.read_bytes()
    newest = sorted((unsealed / "archive" / "digests").glob("*.json"))[-1]
    nxt = newest.with_name(f"{int(newest.stem) + 1:010d}.json")
    doc = json.loads(newest.read_text())
    doc["sequence"] += 1
    nxt.write_text(json.dumps(doc))
    time_passes = run("digest", "--lake", str(unsealed))
    assert time_passes.exit_code == 1 and f"digests/{nxt.name} exists but is not the next" in time_passes.stderr, (
        time_passes.stderr
    )
    assert head_path.read_bytes() == after


def test_verify_in_a_window_says_what_it_checked(lake: Path) -> None:
    """--from/--to choose files by write (seal) time; a sealed file outside the window is not read,
    so the message names the window instead of claiming every sealed file."""
    archive_files(lake)[0].write_bytes(b"altered, sealed before the window")
    window = run("verify", "--lake", str(lake), "--from", "2h")
    assert window.exit_code == 1  # the file was sealed within the last two hours
    future = run("verify", "--lake", str(lake), "--from", format_utc(datetime.now(UTC) + timedelta(hours=1)))
    assert future.exit_code == 0, future.stdout + future.stderr
    assert "every sealed file" not in future.stderr
    assert "(by write time)" in future.stderr and "Files sealed outside the window were not read" in future.stderr


def test_a_fifo_recorded_in_the_ledger_is_never_opened(lake: Path) -> None:
    """A FIFO named like an archive file with a forged ledger line made verify hang hashing it."""
    partition = archive_files(lake)[0].parent
    fifo = partition / "c9-20991231T235959Z-0badc0ffee00.parquet"
    os.mkfifo(fifo)
    key = fifo.relative_to(lake / "archive").as_posix()
    LocalLake(lake).ledger().record(_entry(key, datetime.now(UTC)))

    def hung(*_: object) -> None:
        raise TimeoutError("verify hung on a FIFO")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(20)
    try:
        result = run("verify", "--lake", str(lake))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert result.exit_code == 1 and f"IRREGULAR      {key}" in result.stdout, result.stdout
    with pytest.raises(StoreError):
        LocalStore(lake / "archive").get(key)
