"""When the archive is written: once per closed landing hour, all clusters together; late objects on their own.

The archive holds one file per partition (kind, dt, hour) for every cluster of a fleet, written when
the hour has closed, instead of a file per cluster per batch as objects land. A fleet of 200 clusters
then writes a handful of files an hour instead of thousands (bench/fleet.py measures both), each
file's duplicate check reads a handful of files instead of a growing pile, and the ledger gets one
entry per file.

- **Scheduled** (``compact_due``, hourly at ``GRACE`` past the hour): each landing hour that closed
  ``GRACE`` ago and is not yet marked done (looking back ``LOOKBACK``) is compacted whole, kind by
  kind, then marked done. A run that fails leaves the hour undone; the next run does it again, and
  the duplicate check makes that harmless.
- **Late** (``late_keys``, from the S3 notifications): an object whose landing hour closed more than
  ``GRACE`` ago is compacted at once, as its own file (a writer with a slow clock, a backfill, a
  write that finished after the hour's run). An object of an hour still open, or closed less than
  ``GRACE`` ago, is left to the scheduled run, which lists the hour no earlier than ``GRACE`` after
  it closed. The two never both miss an object: at the moment a notification is handled, either the
  hour is within ``GRACE`` of closing (the object exists, so the run, which lists later, sees it) or
  it is not (the object is compacted now). Both may take the same object: the duplicate check of a
  partition, under its lock, keeps each key once.

The freshness this costs is covered by the raw Glue tables: Athena reads the landing hours not yet
compacted (the ``*_live`` views). Locally there is no schedule and no notification: ``compact`` runs
``compact_pending``, every raw object not yet archived (the open hour's too), found by its key.

``CompactedHours`` records the hours done: DynamoDB (``state_table.compacted_key``) and, in the local
lake, a directory of files (which also list the raw objects archived), side by side.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from auditlake.archive.compactor import CompactionReport, Compactor
from auditlake.landing import parse_raw_key
from auditlake.model import ARCHIVE_KINDS
from auditlake.state_table import TTL, compacted_key

HOUR = timedelta(hours=1)
# How long after an hour closes its objects are left to the scheduled run: longer than any writer
# takes from choosing its key to the object being stored (API Gateway's 30 s, a Lambda's 15 minutes
# at most; the forwarder and the poller finish within minutes).
GRACE = timedelta(minutes=20)
# How far back a run looks for hours not yet done (a run that failed, a schedule that was off).
LOOKBACK = timedelta(hours=48)


def floor_hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def hour_label(hour: datetime) -> str:
    """``yyyy-mm-ddThh`` (the state table's and the local lake's name for a landing hour)."""
    return f"{hour.year:04d}-{hour:%m-%dT%H}"


def is_closed(hour: datetime, now: datetime, grace: timedelta = GRACE) -> bool:
    """Has ``hour`` closed ``grace`` ago (its objects are all stored)?"""
    return now >= hour + HOUR + grace


class CompactedHours(Protocol):
    def done(self, kind: str, hour: datetime) -> bool: ...

    def mark(self, kind: str, hour: datetime) -> None: ...


class DynamoCompactedHours:
    def __init__(self, client: Any, table: str, *, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.table = table
        self.clock = clock

    def done(self, kind: str, hour: datetime) -> bool:
        key = compacted_key(kind, hour_label(hour))
        return "Item" in self.client.get_item(TableName=self.table, Key=key, ConsistentRead=True)

    def mark(self, kind: str, hour: datetime) -> None:
        expires = int(self.clock() + (LOOKBACK + timedelta(days=1)).total_seconds())
        self.client.put_item(
            TableName=self.table, Item={**compacted_key(kind, hour_label(hour)), TTL: {"N": str(expires)}}
        )


class LocalCompactedHours:
    """``<kind>/<hour>``: the hour is done (empty); ``<kind>/<hour>.keys``: the raw objects of it
    already archived, one key a line (a local lake has no notifications: a late object is found by
    its key missing from that list)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, kind: str, hour: datetime) -> Path:
        return self.directory / kind / hour_label(hour)

    def done(self, kind: str, hour: datetime) -> bool:
        return self._path(kind, hour).exists()

    def mark(self, kind: str, hour: datetime) -> None:
        path = self._path(kind, hour)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()

    def compacted(self, kind: str, hour: datetime) -> set[str]:
        path = self._path(kind, hour).with_suffix(".keys")
        return set(path.read_text().split()) if path.exists() else set()

    def record(self, kind: str, hour: datetime, keys: Iterable[str]) -> None:
        path = self._path(kind, hour).with_suffix(".keys")
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as out:
            out.writelines(f"{key}\n" for key in sorted(keys))


def due_hours(
    kind: str, now: datetime, hours: CompactedHours, *, lookback: timedelta = LOOKBACK, grace: timedelta = GRACE
) -> Iterator[datetime]:
    """Closed landing hours within ``lookback`` not yet done, oldest first."""
    hour = floor_hour(now - lookback)
    while is_closed(hour, now, grace):
        if not hours.done(kind, hour):
            yield hour
        hour += HOUR


def compact_due(
    compactor: Compactor,
    hours: CompactedHours,
    now: datetime,
    *,
    kinds: Sequence[str] = tuple(ARCHIVE_KINDS),
    lookback: timedelta = LOOKBACK,
    grace: timedelta = GRACE,
) -> CompactionReport:
    """The scheduled run: every due hour of every kind, each marked done once nothing of it failed."""
    report = CompactionReport()
    for kind in kinds:
        for hour in due_hours(kind, now, hours, lookback=lookback, grace=grace):
            done = compactor.compact_hour(kind, hour)
            report.add(done)
            if not done.failed:
                hours.mark(kind, hour)
    return report


def compact_pending(
    compactor: Compactor, hours: LocalCompactedHours, keys: Iterable[str], now: datetime, *, grace: timedelta = GRACE
) -> tuple[CompactionReport, int]:
    """The local lake's compaction: every raw object of ``keys`` not yet archived, hour by hour, the
    open hour too; each one archived is recorded, so no later call reads it again, and an object that
    lands later in an hour already compacted (a late one) is found by its key. An hour closed with
    everything of it archived is marked done. Returns the report and the number of raw objects
    already archived (not read)."""
    by_hour: dict[tuple[str, datetime], list[str]] = {}
    report = CompactionReport()
    for key in keys:
        raw = parse_raw_key(key)
        if raw is None or raw.kind not in ARCHIVE_KINDS:
            report.ignored.append(key)
            continue
        by_hour.setdefault((raw.kind, raw.landed), []).append(key)
    skipped = 0
    for (kind, hour), hour_keys in sorted(by_hour.items()):
        known = hours.compacted(kind, hour)
        new = [key for key in hour_keys if key not in known]
        skipped += len(hour_keys) - len(new)
        if not new:
            continue
        done = compactor.compact(new)
        report.add(done)
        hours.record(kind, hour, (key for key in new if key not in done.failed))
        if not done.failed and is_closed(hour, now, grace):
            hours.mark(kind, hour)
    return report, skipped


def late_keys(keys: Iterable[str], now: datetime, grace: timedelta = GRACE) -> tuple[list[str], list[str]]:
    """(late, scheduled): raw keys to compact now, and those the scheduled run of their hour will take.
    A key that is not a raw key is 'late': the compactor reports it as ignored. A key of the layout
    before the hour came first is late too: no hour's listing finds it (objects landed just before an
    upgrade)."""
    late: list[str] = []
    scheduled: list[str] = []
    for key in keys:
        raw = parse_raw_key(key)
        waits = raw is not None and raw.hour_first and not is_closed(raw.landed, now, grace)
        (scheduled if waits else late).append(key)
    return late, scheduled
