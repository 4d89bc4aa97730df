"""Tamper evidence on a local lake: `auditlake digest` seals what the compactor wrote, `auditlake
verify` proves it complete and catches a flipped byte, a removed file, an added file, and any
change to the digest chain itself."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from auditlake.cli import main
from auditlake.digest import Digester, LocalChainHead, LocalSigner, verify
from auditlake.ledger import Entry, LocalLedger
from auditlake.stores.local import LocalStore
from tests.conftest import corpus_path


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


def test_a_write_that_never_happened_is_left_out(tmp_path: Path) -> None:
    """The compactor records a file in the ledger before writing it; if the write then fails, the
    digest must not seal a file that does not exist."""
    lake = tmp_path / "lake"
    ledger = LocalLedger(lake / "state" / "ledger")
    at = "2026-11-21T10:00:00.000000Z"
    key = "audit/dt=2026-11-21/hour=10/c1-20261121T100000Z-000000000000.parquet"
    ledger.record(Entry(key, "0" * 64, 10, 1, at, at, at))
    archive = LocalStore(lake / "archive")
    stores = {"audit": archive, "events": archive}
    signer = LocalSigner(lake / "state" / "key.pem")
    report = Digester(ledger, stores, LocalChainHead(lake / "head.json"), signer).seal(
        datetime(2026, 11, 21, 11, tzinfo=UTC), start=datetime(2026, 11, 21, 10, tzinfo=UTC)
    )
    assert report.dropped == [key] and report.objects == 0
    assert verify(stores, signer).ok
