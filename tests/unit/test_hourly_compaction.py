"""The hourly archive: one file per partition for every cluster, written once per closed landing hour;
late objects archived on their own; every key exactly once whichever path takes it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from auditlake.archive.compactor import Compactor
from auditlake.archive.hourly import (
    GRACE,
    LocalCompactedHours,
    compact_due,
    compact_pending,
    due_hours,
    is_closed,
    late_keys,
)
from auditlake.archive.locks import LocalLocks
from auditlake.audit.pipeline import AuditPipeline, PipelineConfig
from auditlake.landing import Landing, parse_raw_key, quarantine_base
from auditlake.stores.local import LocalStore
from auditlake.timestamps import format_utc

# Relative to now, whole hours: the tests hold on any date.
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
HOUR = timedelta(hours=1)


def events(at: datetime, n: int, prefix: str) -> list[dict[str, Any]]:
    """``n`` complete audit events received at ``at`` + i ms, with audit IDs ``prefix``-i."""
    items = []
    for i in range(n):
        when = format_utc(at + timedelta(milliseconds=i))
        items.append({
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": f"{prefix}-{i}",
            "stage": "ResponseComplete", "requestURI": "/api/v1/namespaces/ns/pods", "verb": "list",
            "user": {"username": "alice"}, "sourceIPs": ["10.0.0.1"], "responseStatus": {"code": 200},
            "objectRef": {"resource": "pods", "namespace": "ns", "apiVersion": "v1"},
            "requestReceivedTimestamp": when, "stageTimestamp": when,
        })  # fmt: skip
    return items


class Fleet:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.store = LocalStore(root)
        self.archive = LocalStore(root / "archive")
        self.hours = LocalCompactedHours(root / "compacted")

    def compactor(self) -> Compactor:
        archives = {"audit": self.archive, "events": self.archive, "findings": self.archive}
        return Compactor(self.store, archives, LocalLocks(self.root / "locks"), clock=lambda: NOW)

    def land(self, cluster: str, landed: datetime, batch: str, items: list[dict[str, Any]]) -> str:
        result = AuditPipeline(PipelineConfig()).process(
            items, cluster=cluster, source="webhook", ingested_at=format_utc(landed)
        )
        key = Landing(self.store).write_raw(cluster, landed, batch, result.lines)
        assert key is not None
        return key

    def files(self) -> list[str]:
        return sorted(k for k in self.archive.list("audit/") if k.endswith(".parquet"))

    def rows(self) -> pa.Table:
        return pa.concat_tables([pq.read_table(self.archive.open(k)) for k in self.files()])


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    return Fleet(tmp_path)


def keys_of(table: pa.Table) -> list[tuple[str, str, str]]:
    return list(
        zip(table["cluster"].to_pylist(), table["audit_id"].to_pylist(), table["stage"].to_pylist(), strict=True)
    )


def test_an_hour_of_many_clusters_is_one_file_per_partition_sorted_by_cluster_then_time(fleet: Fleet) -> None:
    hour = NOW - 3 * HOUR
    for n, cluster in enumerate(["zeta", "alpha", "mid"]):
        for batch in range(3):
            fleet.land(cluster, hour + timedelta(minutes=10 * batch), f"{cluster}-{batch}",
                       events(hour + timedelta(minutes=10 * batch, seconds=n), 50, f"{cluster}-{batch}"))  # fmt: skip
    # The last seconds of the hour before, landed in this hour (the webhook's batch wait).
    fleet.land("alpha", hour, "straggler", events(hour - timedelta(seconds=5), 10, "straggler"))
    report = compact_due(fleet.compactor(), fleet.hours, NOW)
    assert report.rows_written == 9 * 50 + 10 and not report.failed
    files = fleet.files()
    assert [f.rsplit("/", 1)[0] for f in files] == [
        f"audit/dt={(hour - HOUR):%Y-%m-%d}/hour={(hour - HOUR):%H}",
        f"audit/dt={hour:%Y-%m-%d}/hour={hour:%H}",
    ]
    main = pq.read_table(fleet.archive.open(files[1]))
    clusters, times = main["cluster"].to_pylist(), main["request_received_at"].to_pylist()
    assert clusters == sorted(clusters) and set(clusters) == {"alpha", "mid", "zeta"}
    for cluster in set(clusters):
        mine = [t for c, t in zip(clusters, times, strict=True) if c == cluster]
        assert mine == sorted(mine)


def test_an_hour_is_compacted_once_closed_and_never_read_again(fleet: Fleet) -> None:
    open_hour = NOW
    closed = NOW - 2 * HOUR
    fleet.land("c1", closed, "a", events(closed, 20, "a"))
    fleet.land("c1", open_hour, "b", events(open_hour, 20, "b"))
    compactor = fleet.compactor()
    first = compact_due(compactor, fleet.hours, NOW + timedelta(minutes=5))
    assert first.rows_written == 20 and fleet.hours.done("audit", closed) and not fleet.hours.done("audit", open_hour)
    # The next run does not read the done hour again; the open one waits until GRACE after it closes
    # (the hour before it, due now, looks into it for its own stragglers and leaves its rows).
    before = compact_due(compactor, fleet.hours, open_hour + HOUR + GRACE - timedelta(seconds=1))
    assert (before.rows_written, before.deferred, before.files) == (0, 20, [])
    later = compact_due(compactor, fleet.hours, open_hour + HOUR + GRACE)
    assert (later.rows_read, later.rows_written) == (20, 20) and fleet.hours.done("audit", open_hour)
    assert sorted(k[1] for k in keys_of(fleet.rows())) == sorted([f"a-{i}" for i in range(20)] +
                                                                 [f"b-{i}" for i in range(20)])  # fmt: skip


def test_an_hours_stragglers_that_landed_in_the_next_hour_join_its_one_file(fleet: Fleet) -> None:
    hour = NOW - 3 * HOUR
    fleet.land("c1", hour, "main", events(hour + timedelta(minutes=30), 40, "main"))
    # Landed 10 s into the next hour: the hour's last seconds, and the next hour's first.
    fleet.land("c1", hour + HOUR, "edge", events(hour + HOUR - timedelta(seconds=3), 6, "edge"))
    fleet.land("c1", hour + HOUR, "next", events(hour + HOUR + timedelta(minutes=1), 30, "next"))
    compact_due(fleet.compactor(), fleet.hours, NOW)
    by_partition: dict[str, list[str]] = {}
    for key in fleet.files():
        by_partition.setdefault(key.rsplit("/", 1)[0], []).append(key)
    assert sorted(len(files) for files in by_partition.values()) == [1, 1]  # one file per partition
    rows = keys_of(fleet.rows())
    assert len(rows) == len(set(rows)) == 40 + 6 + 30


def test_a_failed_hour_stays_due_and_its_retry_archives_each_row_once(fleet: Fleet) -> None:
    hour = NOW - 2 * HOUR
    fleet.land("c1", hour, "a", events(hour, 30, "a"))
    fleet.land("c2", hour, "b", events(hour + timedelta(minutes=1), 30, "b"))
    locks = LocalLocks(fleet.root / "locks")
    token = locks.acquire(f"audit#{hour:%Y-%m-%d}#{hour:%H}", 60)
    assert token is not None
    busy = Compactor(fleet.store, {"audit": fleet.archive}, LocalLocks(fleet.root / "locks"), lock_wait_seconds=0.1)
    report = compact_due(busy, fleet.hours, NOW, kinds=("audit",))
    assert report.failed and not fleet.hours.done("audit", hour) and fleet.files() == []
    locks.release(f"audit#{hour:%Y-%m-%d}#{hour:%H}", token)
    assert list(due_hours("audit", NOW, fleet.hours))[-1] == hour
    retry = compact_due(fleet.compactor(), fleet.hours, NOW, kinds=("audit",))
    assert retry.rows_written == 60 and fleet.hours.done("audit", hour) and len(fleet.files()) == 1


def test_a_late_object_is_its_own_file_and_a_key_already_archived_is_not_written_again(fleet: Fleet) -> None:
    hour = NOW - 3 * HOUR
    first = fleet.land("c1", hour, "a", events(hour, 40, "a"))
    compact_due(fleet.compactor(), fleet.hours, NOW)
    # Later, into the same (done) landing hour: a backfill with new events and a redelivery of "a".
    late = fleet.land("c1", hour, "late", events(hour + timedelta(minutes=30), 15, "late"))
    again = fleet.land("c1", hour, "again", events(hour, 40, "a"))
    go_now, leave = late_keys([late, again, first], NOW)
    assert go_now == [late, again, first] and leave == []
    report = fleet.compactor().compact(go_now)
    assert (report.rows_written, report.duplicates) == (15, 80) and len(fleet.files()) == 2
    assert len(keys_of(fleet.rows())) == len(set(keys_of(fleet.rows()))) == 55


def test_notifications_of_an_hour_not_yet_due_are_left_to_the_hourly_run() -> None:
    hour = NOW - HOUR
    key = f"raw/audit/{hour:%Y/%m/%d/%H}/c1/b.ndjson.zst"
    assert late_keys([key, "not/a/raw/key"], hour + HOUR + GRACE - timedelta(seconds=1)) == (["not/a/raw/key"], [key])
    assert late_keys([key], hour + HOUR + GRACE) == ([key], [])
    # An object landed just before the upgrade, in the layout before: no hour's listing finds it.
    legacy = f"raw/audit/c1/{hour:%Y/%m/%d/%H}/b.ndjson.zst"
    assert late_keys([legacy], hour) == ([legacy], [])
    assert not is_closed(hour, hour + HOUR) and is_closed(hour, hour + HOUR + GRACE)


def test_local_compact_takes_the_open_hour_too_and_never_reads_an_object_twice(fleet: Fleet) -> None:
    closed, open_hour = NOW - 2 * HOUR, NOW
    keys = [
        fleet.land("c1", closed, "a", events(closed, 10, "a")),
        fleet.land("c1", open_hour, "b", events(open_hour, 10, "b")),
    ]
    report, skipped = compact_pending(fleet.compactor(), fleet.hours, keys, NOW + timedelta(minutes=1))
    assert (report.rows_written, skipped) == (20, 0)
    assert fleet.hours.done("audit", closed) and not fleet.hours.done("audit", open_hour)
    report, skipped = compact_pending(fleet.compactor(), fleet.hours, keys, NOW + timedelta(minutes=1))
    assert (report.rows_read, skipped) == (0, 2)
    # A late object in the closed, done hour (no notification locally): found by its key, archived once.
    late = fleet.land("c1", closed, "late", events(closed + timedelta(minutes=5), 7, "late"))
    again = fleet.land("c1", closed, "again", events(closed, 10, "a"))  # a redelivery of "a"
    report, skipped = compact_pending(fleet.compactor(), fleet.hours, [*keys, late, again], NOW + timedelta(minutes=1))
    assert (report.rows_read, report.rows_written, report.duplicates, skipped) == (17, 7, 10, 2)


def test_raw_keys_land_hour_first_and_keys_of_the_earlier_layout_still_parse() -> None:
    at = datetime(2026, 3, 4, 7, 59, tzinfo=UTC)
    key = Landing(LocalStore(Path("/nonexistent"))).raw_key("prod", at, "b1")
    assert key == "raw/audit/2026/03/04/07/prod/b1.ndjson.zst"
    legacy = "raw/audit/prod/2026/03/04/07/b1.ndjson.zst"
    for raw in (parse_raw_key(key), parse_raw_key(legacy)):
        assert raw is not None and (raw.kind, raw.cluster, raw.batch) == ("audit", "prod", "b1")
        assert raw.landed == datetime(2026, 3, 4, 7, tzinfo=UTC)
    # What the compactor quarantines of either sits beside what ingest quarantined of the batch.
    assert quarantine_base(key) == quarantine_base(legacy) == "quarantine/audit/prod/2026/03/04/07/b1"
    assert parse_raw_key("raw/audit/2026/13/04/07/prod/b1.ndjson.zst") is None  # no month 13


def test_an_object_whose_records_name_another_cluster_than_its_key_is_quarantined_whole(fleet: Fleet) -> None:
    # Someone with write access to raw/ forges objects: the records say cluster m under keys of a and c.
    # Archived, a redelivery of m's events two rounds later would pass the duplicate check.
    hour = NOW - 3 * HOUR

    def forged(key_cluster: str, record_cluster: str, batch: str, items: list[dict[str, Any]]) -> str:
        result = AuditPipeline(PipelineConfig()).process(
            items, cluster=record_cluster, source="webhook", ingested_at=format_utc(hour)
        )
        key = Landing(fleet.store).write_raw(key_cluster, hour, batch, result.lines)
        assert key is not None
        return key

    first = forged("a", "m", "b1", events(hour, 5, "k"))
    honest = forged("b", "b", "b2", events(hour, 5, "j"))
    again = forged("c", "m", "b3", events(hour, 5, "k"))
    archives = {"audit": fleet.archive}
    compactor = Compactor(fleet.store, archives, LocalLocks(fleet.root / "locks"), round_bytes=1, chunk_bytes=1)
    report = compactor.compact_hour("audit", hour)
    assert set(report.quarantined) == {first, again} and "another cluster" in report.quarantined[first]
    assert report.done == {honest} and keys_of(fleet.rows()) == [("b", f"j-{i}", "ResponseComplete") for i in range(5)]
