"""Compaction: exactly once whatever arrives twice, ordered, partitioned, bad objects quarantined."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from auditlake.archive.compactor import Compactor
from auditlake.archive.locks import LocalLocks
from auditlake.archive.schema import archive_schema
from auditlake.audit.pipeline import AuditPipeline, PipelineConfig
from auditlake.demo.synth import Synth
from auditlake.jsonio import dumps
from auditlake.landing import Landing, decode_lines, encode_lines
from auditlake.model import AUDIT
from auditlake.stores import Archived
from auditlake.stores.local import LocalStore
from auditlake.trust.digest import SealReport, VerifyReport
from auditlake.trust.ledger import SETTLE, LocalLedger
from tests.helpers import complete_events

AT = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
INGESTED = "2026-11-20T12:00:00.000000Z"


class Lake:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.store = LocalStore(root)
        self.archive = LocalStore(root / "archive")
        self.landing = Landing(self.store)

    def compactor(self, **kwargs: Any) -> Compactor:
        return Compactor(self.store, {"audit": self.archive, "events": self.archive}, LocalLocks(self.root / "locks"),
                         clock=lambda: AT, **kwargs)  # fmt: skip

    def land(self, events: list[dict[str, Any]], batch: str, cluster: str = "c1", ingested_at: str = INGESTED) -> str:
        result = AuditPipeline(PipelineConfig()).process(
            events, cluster=cluster, source="file", ingested_at=ingested_at
        )
        key = self.landing.write_raw(cluster, AT, batch, result.lines)
        assert key is not None
        return key

    def raw_keys(self) -> list[str]:
        return list(self.store.list("raw/"))

    def rows(self) -> pa.Table:
        files = [str(self.root / "archive" / k) for k in self.archive.list("audit/") if k.endswith(".parquet")]
        return pa.concat_tables([pq.read_table(f) for f in files]) if files else pa.table({})

    def files(self) -> list[str]:
        return [k for k in self.archive.list("") if k.endswith(".parquet")]


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake(tmp_path)


SYNTH = list(Synth(minutes=100, rate=5, seed=4, start=datetime(2026, 11, 20, 9, 30, tzinfo=UTC)).events())


def keys_of(table: pa.Table) -> list[tuple[str, str, str]]:
    return list(zip(*(table[c].to_pylist() for c in ("cluster", "audit_id", "stage")), strict=True))


def test_rows_land_once_in_hour_partitions_in_archive_order(lake: Lake) -> None:
    lake.land(SYNTH[:20000], "a")
    lake.land(SYNTH[20000:], "b")
    report = lake.compactor().compact(lake.raw_keys())
    assert (report.rows_read, report.rows_written, report.duplicates) == (len(SYNTH), len(SYNTH), 0)
    assert sorted(f.split("/")[1:3] for f in lake.files()) == [
        ["dt=2026-11-20", "hour=09"], ["dt=2026-11-20", "hour=10"], ["dt=2026-11-20", "hour=11"]
    ]  # fmt: skip
    for key in lake.files():
        table = pq.read_table(lake.root / "archive" / key)
        hour = int(key.split("hour=")[1][:2])
        times = table["request_received_at"].to_pylist()
        assert {t.hour for t in times} == {hour}
        order = list(zip(table["cluster"].to_pylist(), times, table["audit_id"].to_pylist(), table["stage"].to_pylist(),
                         strict=True))  # fmt: skip
        assert order == sorted(order)
    assert sorted(keys_of(lake.rows())) == sorted(("c1", e["auditID"], e["stage"]) for e in SYNTH)


def test_a_batch_delivered_twice_is_archived_once(lake: Lake) -> None:
    lake.land(SYNTH[:3000], "first")
    lake.land(SYNTH[:3000], "redelivered", ingested_at="2026-11-20T12:05:00.000000Z")
    report = lake.compactor().compact(lake.raw_keys())
    assert (report.rows_written, report.duplicates) == (3000, 3000)
    assert lake.rows()["ingested_at"].to_pylist() == [datetime(2026, 11, 20, 12, 0)] * 3000  # the first delivery


def test_a_batch_larger_than_a_round_is_archived_in_rounds_each_row_once(lake: Lake) -> None:
    # Memory is bounded per round; a redelivery that falls in a later round is found in the archive.
    lake.land(SYNTH[:3000], "a")
    lake.land(SYNTH[3000:6000], "b")
    lake.land(SYNTH[:3000], "c-redelivered", ingested_at="2026-11-20T12:05:00.000000Z")
    report = lake.compactor(chunk_bytes=1, round_bytes=1).compact(sorted(lake.raw_keys()))
    assert (report.rows_read, report.rows_written, report.duplicates) == (9000, 6000, 3000)
    assert sorted(keys_of(lake.rows())) == sorted(("c1", e["auditID"], e["stage"]) for e in SYNTH[:6000])
    # Rounds bound memory, not the file count: one file per partition however many rounds fed it.
    assert len(report.done) == 3 and len(report.files) == len({f.rsplit("/", 1)[0] for f in report.files})


def test_compacting_again_writes_nothing_and_new_data_only_adds(lake: Lake) -> None:
    lake.land(SYNTH[:3000], "a")
    lake.compactor().compact(lake.raw_keys())
    files = {key: lake.archive.get(key) for key in lake.files()}
    again = lake.compactor().compact(lake.raw_keys())
    assert (again.rows_written, again.duplicates, again.files) == (0, 3000, [])
    lake.land(SYNTH[2000:4000], "overlapping")
    more = lake.compactor().compact(lake.raw_keys())
    assert more.rows_written == 1000 and set(files) < set(lake.files())
    assert {key: lake.archive.get(key) for key in files} == files  # archived files are never rewritten
    assert sorted(keys_of(lake.rows())) == sorted(("c1", e["auditID"], e["stage"]) for e in SYNTH[:4000])


def test_concurrent_compactions_archive_each_row_once(lake: Lake) -> None:
    for n in range(4):
        lake.land(SYNTH[n * 2000 : (n + 1) * 2000], f"b{n}")
    keys = lake.raw_keys()
    reports = []

    def run() -> None:
        reports.append(lake.compactor().compact(keys))

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r.rows_written for r in reports) == 8000 and not any(r.failed for r in reports)
    assert len(keys_of(lake.rows())) == len(set(keys_of(lake.rows()))) == 8000


def test_a_key_seen_with_different_times_is_kept_once(lake: Lake) -> None:
    falco = complete_events("audit/falcosecurity__falco__trace_files_k8s_audit.jsonl")  # reuses two auditIDs
    lake.land(falco, "falco", cluster="falco")
    report = lake.compactor().compact(lake.raw_keys())
    assert (report.rows_written, report.duplicates) == (49, 2)
    assert len(set(keys_of(lake.rows()))) == 49


def test_a_key_redelivered_with_another_time_around_a_different_stage_is_kept_once(lake: Lake) -> None:
    # In archive order the two copies of (a, RequestReceived) are not adjacent: the other stage sorts between.
    base = next(e for e in SYNTH if e["stage"] == "ResponseComplete")
    times = ["2026-11-20T10:00:00.000000Z", "2026-11-20T10:00:00.500000Z", "2026-11-20T10:00:01.000000Z"]
    stages = ["RequestReceived", "ResponseComplete", "RequestReceived"]
    lake.land(
        [{**base, "stage": st, "requestReceivedTimestamp": at} for st, at in zip(stages, times, strict=True)], "x"
    )
    report = lake.compactor().compact(lake.raw_keys())
    assert (report.rows_written, report.duplicates) == (2, 1)
    assert sorted(s for _, _, s in keys_of(lake.rows())) == ["RequestReceived", "ResponseComplete"]


def test_bad_raw_objects_are_quarantined_and_the_rest_archived(lake: Lake) -> None:
    good = lake.land(SYNTH[:500], "good")
    unreadable = {"raw/audit/c1/2026/11/20/12/not-zstd.ndjson.zst": b"plain text, not zstd"}
    bad_lines = {
        "raw/audit/c1/2026/11/20/12/not-json.ndjson.zst": encode_lines([b"{not json"]),
        "raw/audit/c1/2026/11/20/12/unknown-field.ndjson.zst": encode_lines([dumps({"cluster": "c1", "bogus": 1})]),
        "raw/audit/c1/2026/11/20/12/no-time.ndjson.zst": encode_lines([dumps({"cluster": "c1", "audit_id": "x",
                                                                                "stage": "Panic"})]),
    }  # fmt: skip
    for key, data in (unreadable | bad_lines).items():
        lake.store.put(key, data)
    report = lake.compactor().compact([good, *unreadable, *bad_lines, "raw/nonsense.txt"])
    assert set(report.quarantined) == set(unreadable) | set(bad_lines) and report.ignored == ["raw/nonsense.txt"]
    assert report.done == {good, *bad_lines} and report.rows_written == 500 and report.lines_quarantined == 3
    manifests = {k: json.loads(lake.store.get(k)) for k in lake.store.list("quarantine/") if k.endswith(".json")}
    by_raw = {m["raw_key"]: (k, m) for k, m in manifests.items()}
    ((key, data),) = unreadable.items()
    manifest_key, manifest = by_raw[key]
    assert manifest_key.endswith(".json") and ".compact-" in manifest_key and manifest["items"] == []
    assert lake.store.get(manifest["object_key"]) == data  # as it was
    for key in bad_lines:
        (item,) = by_raw[key][1]["items"]
        assert item["line_number"] == 1 and item["line"] == decode_lines(bad_lines[key])[0].decode()
    assert "unexpected field" in by_raw["raw/audit/c1/2026/11/20/12/unknown-field.ndjson.zst"][1]["items"][0]["reason"]
    assert "without request_received_at" in report.quarantined["raw/audit/c1/2026/11/20/12/no-time.ndjson.zst"]


def test_a_partition_locked_elsewhere_is_retried_later(lake: Lake) -> None:
    key = lake.land(SYNTH[:1000], "a")
    other = LocalLocks(lake.root / "locks")
    hour = SYNTH[0]["requestReceivedTimestamp"][11:13]
    token = other.acquire(f"audit#2026-11-20#{hour}", 60)
    assert token is not None
    report = lake.compactor(lock_wait_seconds=0.2).compact([key])
    assert report.failed == {key} and report.rows_written == 0
    other.release(f"audit#2026-11-20#{hour}", token)
    assert lake.compactor().compact([key]).rows_written == 1000


def test_parquet_is_what_athena_reads(lake: Lake) -> None:
    lake.land(SYNTH[:2000], "a")
    lake.compactor().compact(lake.raw_keys())
    (key, *_) = lake.files()
    parquet = pq.ParquetFile(lake.root / "archive" / key)
    assert key.startswith("audit/dt=2026-11-20/hour=09/20261120T120000Z-")
    # Read without any Arrow schema copy in the footer, the types are the archive's (Glue's).
    assert parquet.schema_arrow == archive_schema(AUDIT) and b"ARROW:schema" not in (parquet.metadata.metadata or {})
    group = parquet.metadata.row_group(0)
    stats = {group.column(i).path_in_schema: group.column(i).statistics for i in range(group.num_columns)}
    assert group.column(0).compression == "ZSTD" and stats["request_received_at"].has_min_max
    assert stats["request_object"] is None  # JSON documents are never range-filtered: no min/max in the footer
    assert [c.column_index for c in parquet.metadata.row_group(0).sorting_columns][:2] == [0, 31]


def test_archive_files_are_never_overwritten(lake: Lake) -> None:
    from auditlake.stores import AlreadyExists

    lake.archive.put("audit/x.parquet", b"one", create_only=True)
    with pytest.raises(AlreadyExists):
        lake.archive.put("audit/x.parquet", b"two", create_only=True)
    assert lake.archive.get("audit/x.parquet") == b"one"


def test_events_are_compacted_by_uid_and_resource_version(lake: Lake) -> None:
    from auditlake.events.files import ingest_events

    path = lake.root / "events.jsonl"
    events = Synth(minutes=30, rate=1, seed=2, start=AT - timedelta(hours=1)).kube_events()
    path.write_bytes(b"".join(dumps(e) + b"\n" for e in events))
    ingest_events(path, Landing(lake.store, "events"), "c1", clock=lambda: AT)
    ingest_events(path, Landing(lake.store, "events"), "c1", clock=lambda: AT + timedelta(hours=1))  # delivered again
    report = lake.compactor().compact(lake.raw_keys())
    assert (report.rows_written, report.duplicates) == (len(events), len(events))
    files = [k for k in lake.files() if k.startswith("events/")]
    table = pa.concat_tables([pq.read_table(lake.root / "archive" / k) for k in files])
    assert sorted(table["uid"].to_pylist()) == sorted(e["metadata"]["uid"] for e in events)


def test_an_object_s3_would_not_give_is_retried_not_quarantined(lake: Lake) -> None:
    from auditlake.stores import StoreError

    good, missing = lake.land(SYNTH[:100], "good"), lake.land(SYNTH[100:200], "missing")

    class Flaky(LocalStore):
        def get(self, key: str) -> bytes:
            if key == missing:
                raise StoreError("SlowDown")
            return super().get(key)

    report = Compactor(Flaky(lake.root), {"audit": lake.archive, "events": lake.archive},
                       LocalLocks(lake.root / "locks")).compact([good, missing])  # fmt: skip
    assert (report.done, report.failed, report.quarantined, report.rows_written) == ({good}, {missing}, {}, 100)


def record_line(n: int, received: str) -> bytes:
    return dumps({"cluster": "c1", "source": "file", "audit_id": f"id-{n:05d}", "stage": "ResponseComplete",
                  "level": "Metadata", "request_received_at": received, "ingested_at": INGESTED})  # fmt: skip


def test_bad_lines_are_found_among_many_and_only_they_are_quarantined(lake: Lake) -> None:
    lines = [record_line(n, f"2026-11-20T12:{n // 60 % 60:02d}:{n % 60:02d}.000000Z") for n in range(1000)]
    bad = {7, 500, 501, 998}
    for n in bad:
        lines[n] = record_line(n, "2026-W47-5T12:00:00.000000Z") if n != 500 else b'{"cluster": 5}'
    key = "raw/audit/c1/2026/11/20/12/mixed.ndjson.zst"
    lake.store.put(key, encode_lines(lines))
    report = lake.compactor().compact([key])
    assert report.done == {key} and report.rows_written == 1000 - len(bad) and report.lines_quarantined == len(bad)
    ((_, manifest),) = ((k, json.loads(lake.store.get(k))) for k in lake.store.list("quarantine/"))
    assert [item["line_number"] for item in manifest["items"]] == [n + 1 for n in sorted(bad)]
    assert sorted(lake.rows()["audit_id"].to_pylist()) == [f"id-{n:05d}" for n in range(1000) if n not in bad]
    again = lake.compactor().compact([key])  # a retry writes nothing twice, and keeps the first quarantine
    assert again.rows_written == 0 and len(list(lake.store.list("quarantine/"))) == 1


@pytest.mark.parametrize(
    ("received", "partition", "stored"),
    [
        ("1969-12-31T22:30:00.000000Z", "dt=1969-12-31/hour=22", "1969-12-31 22:30:00"),
        ("1969-12-31T23:59:59.999999Z", "dt=1969-12-31/hour=23", "1969-12-31 23:59:59.999000"),  # floored
        ("0001-01-01T00:00:00.000000Z", "dt=0001-01-01/hour=00", "0001-01-01 00:00:00"),
        ("9999-12-31T23:59:59.999999Z", "dt=9999-12-31/hour=23", "9999-12-31 23:59:59.999000"),
        ("1970-01-01T00:00:00.000000Z", "dt=1970-01-01/hour=00", "1970-01-01 00:00:00"),
    ],
)
def test_times_at_the_ends_of_the_range_are_partitioned_by_their_own_hour(
    lake: Lake, received: str, partition: str, stored: str
) -> None:
    key = "raw/audit/c1/2026/11/20/12/edges.ndjson.zst"
    lake.store.put(key, encode_lines([record_line(1, received), record_line(2, "2026-11-20T12:00:00.000000Z")]))
    report = lake.compactor().compact([key])
    assert report.rows_written == 2 and not report.quarantined
    (file,) = [f for f in lake.files() if "dt=2026" not in f]
    assert file.startswith(f"audit/{partition}/")
    assert str(pq.read_table(lake.root / "archive" / file)["request_received_at"][0]) == stored


def test_raw_objects_must_be_whole(lake: Lake) -> None:
    import zstandard

    whole = encode_lines([record_line(n, "2026-11-20T12:00:00.000000Z") for n in range(20)])
    objects = {
        "cut": whole[:-5],
        "empty": b"",
        "two-frames": whole + encode_lines([record_line(99, "2026-11-20T12:00:00.000000Z")]),
        "trailing": whole + b"\0\0",
        "unsized": zstandard.ZstdCompressor(write_content_size=False).compress(record_line(98, INGESTED)),
    }
    keys = {}
    for name, data in objects.items():
        keys[name] = f"raw/audit/c1/2026/11/20/12/{name}.ndjson.zst"
        lake.store.put(keys[name], data)
    report = lake.compactor().compact(keys.values())
    assert set(report.quarantined) == {keys["cut"], keys["empty"], keys["trailing"]}
    assert report.done == {keys["two-frames"], keys["unsized"]} and report.rows_written == 22
    assert "cut" in report.quarantined[keys["cut"]] and "empty" in report.quarantined[keys["empty"]]


class _DeepArchive(LocalStore):
    """An archive whose files written so far are in Deep Archive: S3 refuses to read them."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.frozen = set(self.list(""))

    def open(self, key: str) -> Any:
        if key in self.frozen:
            raise Archived(f"{key} is in DEEP_ARCHIVE: restore it to read it")
        return super().open(key)


def test_late_data_for_a_partition_in_deep_archive_is_written_not_failed(lake: Lake) -> None:
    """The anti-join cannot read a file in Deep Archive: it leaves it out (the batch is not failed
    into the dead-letter queue), so the rows that file holds are archived again; the others not."""
    hour = [e for e in SYNTH if e["requestReceivedTimestamp"].startswith("2026-11-20T10")]
    lake.land(hour[:600], "a")
    lake.compactor().compact(lake.raw_keys())
    frozen = _DeepArchive(lake.root / "archive")
    unfrozen = len(lake.files())
    compactor = Compactor(lake.store, {"audit": frozen, "events": frozen}, LocalLocks(lake.root / "locks"),
                          clock=lambda: AT + timedelta(days=200))  # fmt: skip
    lake.land(hour[400:800], "late")
    report = compactor.compact([k for k in lake.raw_keys() if k.endswith("late.ndjson.zst")])
    assert not report.failed and report.rows_written == 400  # 200 already in the archived file, again
    assert len(lake.files()) == unfrozen + 1
    # A partition file that can be read still keeps its rows out: a second delivery adds nothing.
    again = compactor.compact([k for k in lake.raw_keys() if k.endswith("late.ndjson.zst")])
    assert not again.failed and again.rows_written == 0 and again.duplicates == 400


class _LostAnswers(LocalStore):
    """An archive whose create-only writes are applied, then answered as SDK retries answer after a
    lost reply (``AlreadyExists``), or fail before applying (``fail``)."""

    fail = False

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream", *,
            create_only: bool = False) -> None:  # fmt: skip
        from auditlake.stores import AlreadyExists, StoreError

        if self.fail:
            raise StoreError("SlowDown: the write never happened")
        super().put(key, data, content_type, create_only=create_only)
        raise AlreadyExists(key)


def _sealed(lake: Lake, ledger: LocalLedger) -> tuple[SealReport, VerifyReport]:
    from auditlake.trust.digest import Digester, LocalChainHead, LocalSigner, verify

    stores = {"audit": lake.archive, "events": lake.archive, "findings": lake.archive}
    head, signer = LocalChainHead(lake.root / "head.json"), LocalSigner(lake.root / "key.pem")
    # Sealed by real write time (a file's ctime), past the ledger's SETTLE after the entries' stamps.
    later = datetime.now(UTC) + SETTLE + timedelta(minutes=1)
    sealed = Digester(ledger, stores, head, signer).seal(later, start=later - timedelta(hours=1), hourly=False,
                                                         now=later)  # fmt: skip
    return sealed, verify(stores, signer, head=head)


def test_a_failed_archive_write_is_retried_and_its_entry_abandoned_verify_passes(lake: Lake) -> None:
    """The ledger entry is recorded before the write: a write that failed leaves it unmarked; the
    retry writes another file. The digest seals that file, lists the entry abandoned, and verify
    passes (it used to report ``vanished`` forever on an honest archive)."""
    ledger, archive = LocalLedger(lake.root / "ledger"), _LostAnswers(lake.root / "archive")
    archive.fail = True
    keys = [lake.land(SYNTH[:200], "b1")]
    now = datetime.now(UTC)  # the entries' stamps and the files' real write times agree
    compactor = Compactor(lake.store, {"audit": archive, "events": archive}, LocalLocks(lake.root / "locks"),
                          clock=lambda: now, ledger=ledger)  # fmt: skip
    failed = compactor.compact(keys)
    assert (failed.failed, failed.files) == (set(keys), [])
    (abandoned,) = ledger.entries(f"{now:%Y-%m-%dT%H}")
    assert abandoned.stored is False
    archive.fail = False  # the retry's write is applied, its answer lost: the SDK's retry is refused
    retried = compactor.compact(keys)
    assert retried.done == set(keys) and len(retried.files) == 1 and retried.rows_written == 200
    assert {e.key: e.stored for e in ledger.entries(f"{now:%Y-%m-%dT%H}")} == {
        abandoned.key: False, retried.files[0]: True}  # fmt: skip
    sealed, verified = _sealed(lake, ledger)
    assert (sealed.objects, sealed.abandoned, sealed.dropped) == (1, [abandoned.key], [])
    assert verified.ok and verified.abandoned == [abandoned.key], verified.findings
    assert len(lake.rows()) == 200


def test_a_file_already_there_with_other_bytes_is_not_taken_for_the_write(lake: Lake) -> None:
    """``AlreadyExists`` is the compactor's own write only when the file holds its bytes."""
    from auditlake.stores import AlreadyExists

    class Taken(LocalStore):
        def put(self, key: str, data: bytes, content_type: str = "application/octet-stream", *,
                create_only: bool = False) -> None:  # fmt: skip
            super().put(key, b"someone else's", content_type, create_only=create_only)
            raise AlreadyExists(key)

    ledger = LocalLedger(lake.root / "ledger")
    archive = Taken(lake.root / "archive")
    keys = [lake.land(SYNTH[:50], "b1")]
    report = Compactor(lake.store, {"audit": archive, "events": archive}, LocalLocks(lake.root / "locks"),
                       clock=lambda: AT, ledger=ledger).compact(keys)  # fmt: skip
    assert report.failed == set(keys) and report.files == []
    assert [e.stored for e in ledger.entries(f"{AT:%Y-%m-%dT%H}")] == [False]
