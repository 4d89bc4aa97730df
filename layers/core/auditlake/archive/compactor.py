"""Raw landing -> the archive: deduplicated, sorted, immutable Parquet in dt=/hour= partitions.

Columnar throughout: raw objects are parsed by Arrow's JSON reader with the explicit schema (no
per-event Python), deduplicated and ordered with Arrow compute, written row group by row group.

Exactly once, whatever is delivered twice or compacted concurrently:

1. Within the input, one row per key (audit: cluster, audit_id, stage; Events: cluster, uid,
   resource_version), the first ingested.
2. Per partition (kind, dt, hour, cluster), under a lock: the keys already archived in that
   partition are read (key columns only) and those rows dropped; the rest is written as one new
   file, create-only (S3 If-None-Match), then the lock is released. A file appears whole or not
   at all, and two compactors never interleave their read-then-write of a partition.
3. A run that dies after writing leaves its rows archived; the retry finds them and writes nothing.

One exception: a partition file in an archive tier (Deep Archive) cannot be read until restored, so
the anti-join leaves it out (and warns) instead of failing the batch: late data for an archived
partition is written, and a row that file holds may be archived twice (see ``_not_archived``).

Nothing read is dropped unsaid. A raw object must be whole: every zstd frame read to its end (a cut
or empty object, or bytes after the last frame, is not). One that is not is copied to quarantine with
the reason. In a readable object, a line the Arrow reader refuses (or that lacks its time or key) is
quarantined on its own, with its line number and reason, and its neighbours are archived: one bad
value never sinks an object. Quarantine writes are create-only under names of their own
(``<batch>.compact-<hash>.json``), so they never replace what ingest quarantined for the same batch.
"""

from __future__ import annotations

import bisect
import hashlib
import io
import itertools
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
import pyarrow.parquet as pq
import zstandard

from auditlake.archive.locks import Locks
from auditlake.archive.schema import ARCHIVE_TIMESTAMP, archive_schema, read_schema, timestamp_columns
from auditlake.jsonio import dumps
from auditlake.landing import MANIFEST_SUFFIX, RAW_SUFFIX, parse_raw_key, quarantine_base, raw_hour_prefix
from auditlake.model import ARCHIVE_KINDS, ArchiveKind
from auditlake.state_table import lock_name
from auditlake.stores import AlreadyExists, Archived, Store, StoreError
from auditlake.timestamps import format_utc
from auditlake.trust.ledger import Entry, Ledger

logger = logging.getLogger(__name__)

# Markers in place of an object's text (NUL never starts NDJSON).
_FETCH_FAILED = b"\0fetch failed: "
_UNREADABLE = b"\0unreadable: "
HOUR_MS = 3_600_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class BadLine:
    """A line of a raw object the archive cannot hold: 1-based line number, the line, and why."""

    number: int
    line: bytes
    reason: str


@dataclass
class CompactionReport:
    done: set[str] = field(default_factory=set)  # compacted, or nothing new in them
    failed: set[str] = field(default_factory=set)  # to be retried
    quarantined: dict[str, str] = field(default_factory=dict)  # raw key -> reason (whole object, or its bad lines)
    lines_quarantined: int = 0  # bad lines set aside from objects whose other lines were archived
    ignored: list[str] = field(default_factory=list)  # not raw landing keys
    rows_read: int = 0
    rows_written: int = 0
    duplicates: int = 0
    deferred: int = 0  # rows of the next hour's objects left to that hour's run (compact_hour)
    files: list[str] = field(default_factory=list)

    def add(self, other: CompactionReport) -> None:
        self.done |= other.done
        self.failed |= other.failed
        self.quarantined.update(other.quarantined)
        self.lines_quarantined += other.lines_quarantined
        self.ignored += other.ignored
        self.rows_read += other.rows_read
        self.deferred += other.deferred
        self.rows_written += other.rows_written
        self.duplicates += other.duplicates
        self.files += other.files


class PartitionBusy(RuntimeError):
    pass


@dataclass(frozen=True)
class _Early:
    """Raw objects of which only the rows before ``until_ms`` (milliseconds since the epoch) are archived."""

    keys: frozenset[str]
    until_ms: int


@dataclass(eq=False)
class _Partition:
    """One archive partition (kind, hour) while a call writes its file: locked from the first row
    to the file's creation, so its duplicate check and its write are one step for other compactors."""

    kind: ArchiveKind
    hour: int  # since the epoch
    token: str | None = None  # the lock's, once taken
    existing: list[str] = field(default_factory=list)  # files it held when locked
    writer: pq.ParquetWriter | None = None
    buffer: io.BytesIO | None = None
    pending: list[pa.Table] = field(default_factory=list)  # rows not yet in a row group
    pending_rows: int = 0
    rows: int = 0  # rows in row groups
    times: list[datetime] = field(default_factory=list)
    carry: pa.Table | None = None  # keys written for the cluster the last round ended with
    sources: set[str] = field(default_factory=set)  # raw keys with rows in it
    failed: bool = False

    @property
    def moment(self) -> datetime:
        return EPOCH + timedelta(hours=self.hour)

    @property
    def directory(self) -> str:
        moment = self.moment  # year 1 is 0001 (strftime %Y: 1)
        return f"{self.kind.name}/dt={moment.date().isoformat()}/hour={moment.hour:02d}"

    @property
    def lock(self) -> str:
        moment = self.moment
        return lock_name(self.kind.name, moment.date().isoformat(), f"{moment.hour:02d}")

    def close(self, locks: Locks) -> None:
        try:
            if self.writer is not None:
                self.writer.close()
                self.writer = None
        finally:
            if self.token is not None:
                token, self.token = self.token, None
                locks.release(self.lock, token)


class Compactor:
    def __init__(
        self,
        raw: Store,
        archives: Mapping[str, Store],
        locks: Locks,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        lock_wait_seconds: float = 60.0,
        lease_seconds: int = 960,  # > the Lambda timeout (900 s): a partition is locked for a whole run
        chunk_bytes: int = 32 << 20,  # NDJSON parsed at a time
        round_bytes: int = 256 << 20,  # NDJSON archived at a time (two rounds in memory): peak RSS in make bench
        row_group_rows: int = 128 * 1024,
        fetch_threads: int = 8,
        ledger: Ledger | None = None,
    ) -> None:
        self.ledger = ledger  # what the digests seal: every file recorded before its write, marked after
        self.raw = raw
        self.archives = archives
        self.locks = locks
        self.clock = clock
        self.lock_wait_seconds = lock_wait_seconds
        self.lease_seconds = lease_seconds
        self.chunk_bytes = chunk_bytes
        self.round_bytes = round_bytes
        self.row_group_rows = row_group_rows
        self.fetch_threads = fetch_threads

    def compact(
        self, keys: Iterable[str], *, early: Iterable[str] = (), until: datetime | None = None
    ) -> CompactionReport:
        """``keys`` archived whole; of ``early``, only the rows whose time is before ``until`` (those
        keys are never reported done: their other rows are left for later)."""
        report = CompactionReport()
        by_kind: dict[str, list[str]] = {}
        clusters: dict[str, str] = {}
        keys = list(keys)
        early = set(early) - set(keys) if until is not None else set()
        for key in dict.fromkeys([*keys, *early]):  # S3 may notify twice; order kept
            raw = parse_raw_key(key)
            if raw is None or raw.kind not in ARCHIVE_KINDS:
                report.ignored.append(key)
                continue
            by_kind.setdefault(raw.kind, []).append(key)
            clusters[key] = raw.cluster
        for kind_name, kind_keys in by_kind.items():
            # Cluster by cluster: a cluster's rows meet in as few rounds as possible, and once a round
            # has moved past a cluster no later round holds it (see _Partition.carry).
            kind_keys.sort(key=lambda k: clusters[k])
            cut = None if until is None else _Early(frozenset(early), int((until - EPOCH).total_seconds() * 1000))
            report.add(self._compact_kind(ARCHIVE_KINDS[kind_name], kind_keys, clusters, cut))
        return report

    def compact_hour(self, kind: str, hour: datetime) -> CompactionReport:
        """Every raw object of ``kind`` that landed in ``hour`` (all clusters), and the rows of ``hour``
        (or before) that landed in the next hour so far: one file per archive partition its rows fall
        in, ``hour``'s holding all of it. (An hour's last seconds land in the next hour: kube-apiserver's
        webhook batches wait up to 30 s, CloudWatch deliveries minutes. The next hour's run reads those
        objects again, finds these rows archived, and writes no second file for them.)"""
        early = self.raw.list(raw_hour_prefix(kind, hour + timedelta(hours=1)))
        return self.compact(self.raw.list(raw_hour_prefix(kind, hour)), early=early, until=hour + timedelta(hours=1))

    # ------------------------------------------------------------------ reading

    def _compact_kind(
        self,
        kind: ArchiveKind,
        keys: list[str],
        clusters: Mapping[str, str],
        early: _Early | None = None,
    ) -> CompactionReport:
        """In rounds of about ``round_bytes`` of NDJSON, so memory is bounded whatever the batch holds
        (an hour of a fleet is gigabytes). Each partition's file stays open across rounds: one file per
        partition per call, its row groups each sorted in archive order. A round is archived (sorted,
        checked, encoded) on a thread while the next one is fetched and parsed (both release the GIL):
        at most two rounds are in memory."""
        report = CompactionReport()
        partitions: dict[int, _Partition] = {}
        tables: list[pa.Table] = []
        spans: list[tuple[str, int, int]] = []  # (raw key, first row, end row) in the round's table
        rows = size = 0
        whole: set[str] = set()  # quarantined as a whole: nothing of them archived
        archiver = ThreadPoolExecutor(1)
        archiving: Future[None] | None = None
        try:
            for chunk_keys, texts in self._chunks(keys):
                for key, text in zip(chunk_keys, texts, strict=True):
                    if text.startswith(_FETCH_FAILED):
                        logger.warning("raw object unavailable, will retry", extra={"key": key})
                        report.failed.add(key)
                readable = [(k, t) for k, t in zip(chunk_keys, texts, strict=True) if not t.startswith(_FETCH_FAILED)]
                size += sum(len(t) for _, t in readable)
                table, counts, bad, bad_lines = self._parse(kind, readable, clusters)
                texts_by_key = dict(readable) if bad_lines else {}
                del texts, readable
                for key, reason in bad.items():
                    self._quarantine(kind, key, reason)
                    report.quarantined[key] = reason
                    whole.add(key)
                for key, lines in bad_lines.items():
                    self._quarantine_lines(kind, key, texts_by_key.pop(key), lines)
                    report.quarantined[key] = (
                        f"{len(lines)} line(s) quarantined, first: line {lines[0].number}: {lines[0].reason}"
                    )
                    report.lines_quarantined += len(lines)
                del texts_by_key
                for key, count in counts:
                    spans.append((key, rows, rows + count))
                    rows += count
                if table is not None and table.num_rows:
                    tables.append(table)
                if size >= self.round_bytes:
                    if archiving is not None:
                        archiving.result()
                    archiving = archiver.submit(self._archive, kind, tables, spans, partitions, report, early=early)
                    tables, spans, rows, size = [], [], 0, 0
            if archiving is not None:
                archiving.result()
            self._archive(kind, tables, spans, partitions, report, early=early)
            for partition in partitions.values():
                self._finish(kind, partition, report)
        finally:
            archiver.shutdown(wait=True)  # no round is still writing when the partitions close
            for partition in partitions.values():
                try:
                    partition.close(self.locks)
                except Exception:  # one that cannot be released must not keep the others locked
                    logger.exception("partition lock not released (its lease ends it)", extra={"lock": partition.lock})
        partial = early.keys if early is not None else frozenset()
        report.done = {key for key in keys if key not in report.failed and key not in whole and key not in partial}
        return report

    def _archive(
        self,
        kind: ArchiveKind,
        tables: list[pa.Table],
        spans: list[tuple[str, int, int]],
        partitions: dict[int, _Partition],
        report: CompactionReport,
        *,
        early: _Early | None = None,
    ) -> None:
        """One round: deduplicated and ordered, then each partition's new rows appended to its file."""
        if not tables:
            return
        table = pa.concat_tables(tables)
        tables.clear()
        report.rows_read += table.num_rows
        order = self._order(kind, table)
        report.duplicates += table.num_rows - len(order)
        if early is not None and any(key in early.keys for key, _, _ in spans):
            # Rows of the next hour's objects from ``until`` on: that hour's run archives them.
            flags = pa.concat_arrays([pa.repeat(key in early.keys, end - start) for key, start, end in spans])
            later = pc.and_(flags, pc.greater_equal(pc.cast(table[kind.time_column], pa.int64()), early.until_ms))
            kept = pc.filter(order, pc.invert(pc.take(later, order)))
            report.deferred += len(order) - len(kept)
            order = kept
        for hour, rows in self._partitions(kind, table, order):
            partition = partitions.get(hour)
            if partition is None:
                partition = partitions[hour] = _Partition(kind, hour)
            if partition.failed:
                report.failed.update(_keys_with_rows(spans, rows))
                continue
            try:
                if partition.token is None:
                    self._open(partition)
                new = self._not_archived(kind, table, rows, partition)
                report.duplicates += len(rows) - len(new)
                if len(new):
                    self._append(kind, partition, table, new)
                partition.sources.update(_keys_with_rows(spans, rows))
            except (StoreError, PartitionBusy) as exc:
                logger.warning("partition not compacted, will retry", extra={"error": str(exc)})
                partition.failed = True
                report.failed.update(partition.sources | _keys_with_rows(spans, rows))

    def _chunks(self, keys: list[str]) -> Iterator[tuple[list[str], list[bytes]]]:
        """Raw objects fetched and decompressed ahead on a thread pool (zstd and S3 release the GIL),
        grouped into chunks of about ``chunk_bytes`` of NDJSON so memory stays bounded. An object
        S3 would not give is marked (retried later); one that is not zstd is left to _parse."""

        def fetch(key: str) -> bytes:
            try:
                data = self.raw.get(key)
            except StoreError as exc:
                return _FETCH_FAILED + str(exc).encode()
            try:
                return decompress_all(data)
            except ValueError as exc:
                return _UNREADABLE + str(exc).encode()

        with ThreadPoolExecutor(self.fetch_threads) as pool:
            pending: deque[tuple[str, Future[bytes]]] = deque()
            queue = iter(keys)
            for first in itertools.islice(queue, self.fetch_threads * 2):
                pending.append((first, pool.submit(fetch, first)))
            chunk_keys: list[str] = []
            texts: list[bytes] = []
            size = 0
            while pending:
                key, future = pending.popleft()
                next_key = next(queue, None)
                if next_key is not None:
                    pending.append((next_key, pool.submit(fetch, next_key)))
                text = future.result()
                chunk_keys.append(key)
                texts.append(text)
                size += len(text)
                if size >= self.chunk_bytes:
                    yield chunk_keys, texts
                    chunk_keys, texts, size = [], [], 0
            if chunk_keys:
                yield chunk_keys, texts

    def _parse(
        self, kind: ArchiveKind, objects: list[tuple[str, bytes]], clusters: Mapping[str, str]
    ) -> tuple[pa.Table | None, list[tuple[str, int]], dict[str, str], dict[str, list[BadLine]]]:
        """One Arrow table for a chunk, rows per object, the objects that cannot be read at all, and
        the bad lines of the others (when the chunk fails, each object is read alone, and an object
        that fails is split until each bad line stands alone: its good lines are kept). An object
        whose records name another cluster than its key is not read at all: the ingest paths write
        the key's cluster into every record, and the duplicate check relies on it."""
        texts = [_terminated(text) for _, text in objects]
        if not any(text.startswith(_UNREADABLE) for text in texts):
            try:
                table = self._read(kind, _Chained(texts))
                counts = [(key, text.count(b"\n")) for (key, _), text in zip(objects, texts, strict=True)]
                if sum(n for _, n in counts) == table.num_rows:
                    expected = pa.concat_arrays([pa.repeat(clusters[key], n) for key, n in counts])
                    if pc.all(pc.equal(table["cluster"], expected)).as_py():
                        return table, counts, {}, {}
            except (pa.ArrowException, ValueError):
                pass
        good: list[pa.Table] = []
        counts, bad, bad_lines = [], {}, {}
        for (key, _), text in zip(objects, texts, strict=True):
            if text.startswith(_UNREADABLE):
                bad[key] = text[len(_UNREADABLE) :].decode(errors="replace").strip()[:500]
                continue
            lines = [(number, line) for number, line in enumerate(text.split(b"\n"), 1) if line.strip()]
            if not lines:
                bad[key] = "no records: the object holds no line"
                continue
            tables, failures = self._read_lines(kind, lines)
            named = {c for t in tables for c in pc.unique(t["cluster"]).to_pylist()} - {clusters[key]}
            if named:
                bad[key] = f"records name another cluster than the key's ({clusters[key]}): {sorted(named)[:3]}"
                continue
            if failures:
                bad_lines[key] = failures
            good += tables
            counts.append((key, sum(t.num_rows for t in tables)))
        return (pa.concat_tables(good) if good else None), counts, bad, bad_lines

    def _read_lines(self, kind: ArchiveKind, lines: list[tuple[int, bytes]]) -> tuple[list[pa.Table], list[BadLine]]:
        """The lines' rows (one per line, in order), halving until each bad line stands alone."""
        try:
            table = self._read(kind, _Chained([b"\n".join(line for _, line in lines) + b"\n"]))
            if table.num_rows == len(lines):
                return [table], []
            error = f"{table.num_rows} rows from {len(lines)} line(s): a line must hold one JSON object"
        except (pa.ArrowException, ValueError) as exc:
            error = str(exc)[:500]
        if len(lines) == 1:
            number, line = lines[0]
            return [], [BadLine(number, line, error)]
        middle = len(lines) // 2
        head, head_bad = self._read_lines(kind, lines[:middle])
        tail, tail_bad = self._read_lines(kind, lines[middle:])
        return head + tail, head_bad + tail_bad

    def _read(self, kind: ArchiveKind, text: _Chained) -> pa.Table:
        table = pj.read_json(
            text,
            read_options=pj.ReadOptions(block_size=4 << 20),
            parse_options=pj.ParseOptions(explicit_schema=read_schema(kind), unexpected_field_behavior="error"),
        )
        for name in (kind.time_column, *kind.key):
            if table[name].null_count:
                raise ValueError(f"{table[name].null_count} rows without {name}")
        for name in timestamp_columns(kind):  # the precision Athena reads from Parquet
            column = table[name]
            if column.null_count < len(column) and pc.min(column.cast(pa.int64())).as_py() < 0:
                column = pc.floor_temporal(column, unit="millisecond")  # before 1970: down, not toward 1970
            table = table.set_column(
                table.schema.get_field_index(name), name, pc.cast(column, ARCHIVE_TIMESTAMP, safe=False)
            )
        return table

    # ------------------------------------------------------------------ dedupe, order, partitions

    @staticmethod
    def _order(kind: ArchiveKind, table: pa.Table) -> pa.Array:
        """Row indices: one per key (the first ingested), in archive order (cluster, time, key).

        A redelivered event has the same time as its first delivery, so after one sort in archive
        order its copies are adjacent. Only a key seen with different times (a sender's bug or
        hand-made data) needs the slower sort by key. The proof that no such key exists: every
        identifier (audit ID, Event uid) forms a single run of (cluster, time, identifier) - one
        hash of one column, where counting distinct whole keys would cost three times as much.
        Events, whose time moves with each resource version, always take the slower path.
        """
        key = list(kind.key)

        def sort(rows: pa.Table, columns: list[str]) -> pa.Array:
            return pc.sort_indices(rows.select(columns), [(name, "ascending") for name in columns])

        def first_of_each_key(ordered: pa.Array) -> pa.Array:  # copies of a key must be adjacent
            return pc.filter(ordered, _changes(table.select(key).take(ordered), key))

        kept = first_of_each_key(sort(table, [*kind.order, kind.first_of]))
        cluster, ident = kind.key[:2]
        runs = table.select([cluster, kind.time_column, ident]).take(kept)
        if pc.sum(_changes(runs, runs.column_names)).as_py() == pc.count_distinct(runs[ident]).as_py():
            return kept
        first = first_of_each_key(sort(table, [*key, kind.first_of]))
        return pc.take(first, sort(table.select(list(kind.order)).take(first), list(kind.order)))

    @staticmethod
    def _partitions(kind: ArchiveKind, table: pa.Table, order: pa.Array) -> Iterator[tuple[int, pa.Array]]:
        """(hour since epoch, row indices in archive order) per archive partition, hour by hour."""
        hours = _floor_divide(pc.cast(pc.take(table[kind.time_column], order), pa.int64()), HOUR_MS)
        by_hour = pc.sort_indices(hours)  # stable: archive order kept within each hour
        order, hours = pc.take(order, by_hour), pc.take(hours, by_hour)
        starts = _changes(pa.table({"h": hours}), ["h"])
        bounds = [*pc.indices_nonzero(starts).to_pylist(), len(order)]
        for start, end in itertools.pairwise(bounds):
            yield hours[start].as_py(), order.slice(start, end - start)

    # ------------------------------------------------------------------ writing

    def _open(self, partition: _Partition) -> None:
        """Lock the partition for the rest of the call and note the files it already holds."""
        partition.token = self._lock(partition.lock)
        store = self.archives[partition.kind.name]
        partition.existing = [k for k in store.list(partition.directory + "/") if k.endswith(".parquet")]

    def _append(self, kind: ArchiveKind, partition: _Partition, table: pa.Table, rows: pa.Array) -> None:
        """New rows of the partition, buffered and written a row group at a time."""
        if partition.writer is None:
            partition.buffer = io.BytesIO()
            partition.writer = self._writer(kind, partition.buffer)
        times = pc.min_max(pc.take(table[kind.time_column], rows))
        partition.times.extend((times["min"].as_py(), times["max"].as_py()))
        cluster = table["cluster"]
        last = cluster[rows[len(rows) - 1].as_py()].as_py()
        carried = table.select(list(kind.key)).take(pc.filter(rows, pc.equal(pc.take(cluster, rows), last)))
        # Only the last cluster may continue in the next round (keys are sorted by cluster).
        if partition.carry is not None and partition.carry["cluster"][0].as_py() == last:
            carried = pa.concat_tables([partition.carry, carried])
        partition.carry = carried
        schema = archive_schema(kind)

        def take(piece: pa.Array) -> pa.Table:
            return table.take(piece).cast(schema)

        # Row-group-sized pieces (the first one tops up what is pending); the next piece is gathered
        # while this one is encoded (both release the GIL).
        first = min(len(rows), self.row_group_rows - partition.pending_rows)
        pieces = [rows.slice(0, first)] + [
            rows.slice(start, self.row_group_rows) for start in range(first, len(rows), self.row_group_rows)
        ]
        with ThreadPoolExecutor(1) as gather:
            pending = gather.submit(take, pieces[0])
            for piece in pieces[1:]:
                group, pending = pending.result(), gather.submit(take, piece)
                self._add(partition, group)
                del group
            self._add(partition, pending.result())

    def _add(self, partition: _Partition, rows: pa.Table) -> None:
        partition.pending.append(rows)
        partition.pending_rows += len(rows)
        if partition.pending_rows >= self.row_group_rows:
            self._flush(partition, self.row_group_rows)

    def _flush(self, partition: _Partition, limit: int | None = None) -> None:
        if not partition.pending or partition.writer is None:
            return
        rows = pa.concat_tables(partition.pending)
        group = rows if limit is None else rows.slice(0, limit)
        partition.writer.write_table(group, row_group_size=len(group))
        partition.rows += len(group)
        rest = rows.slice(len(group))
        partition.pending = [rest] if len(rest) else []
        partition.pending_rows = len(rest)

    def _finish(self, kind: ArchiveKind, partition: _Partition, report: CompactionReport) -> None:
        """The partition's file, whole: recorded in the ledger, then created (never replacing a file)."""
        if partition.failed or partition.writer is None or partition.buffer is None:
            return
        try:
            self._flush(partition)
            partition.writer.close()
            partition.writer = None
            data = partition.buffer.getvalue()
            partition.buffer = None
            now = self.clock()  # after the encode: written_at is within the ledger's SETTLE of the write
            key = f"{partition.directory}/{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(6)}.parquet"
            entry = Entry(
                key, hashlib.sha256(data).hexdigest(), len(data), partition.rows,
                _utc(min(partition.times)), _utc(max(partition.times)), format_utc(now),
            )  # fmt: skip
            if self.ledger is not None:
                self.ledger.record(entry)
            self._write_file(kind, key, data)
        except (StoreError, PartitionBusy) as exc:
            # The entry stays unmarked: the digest lists it as abandoned, the retry writes another file.
            logger.warning("partition not compacted, will retry", extra={"error": str(exc)})
            partition.failed = True
            report.failed.update(partition.sources)
            return
        report.rows_written += partition.rows
        report.files.append(key)
        if self.ledger is not None:
            try:
                self.ledger.confirm(entry)
            except StoreError as exc:
                # The file is written: sealed as any present file. Unmarked, it would pass for an
                # abandoned write only if it were also removed before its digest.
                logger.warning("ledger entry not marked stored", extra={"key": key, "error": str(exc)})

    def _write_file(self, kind: ArchiveKind, key: str, data: bytes) -> None:
        """Create-only. ``key`` is new (a random part): a file already there is this write's own,
        applied by an attempt whose answer was lost and refused to the SDK's retry, when it holds
        these bytes; anything else is an error."""
        try:
            self.archives[kind.name].put(key, data, "application/vnd.apache.parquet", create_only=True)
        except AlreadyExists:
            if self.archives[kind.name].get(key) != data:
                raise

    def _lock(self, name: str) -> str:
        deadline = time.monotonic() + self.lock_wait_seconds
        delay = 0.05
        while True:
            token = self.locks.acquire(name, self.lease_seconds)
            if token is not None:
                return token
            if time.monotonic() >= deadline:
                raise PartitionBusy(f"partition {name} stayed locked for {self.lock_wait_seconds:.0f}s")
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def _not_archived(self, kind: ArchiveKind, table: pa.Table, rows: pa.Array, partition: _Partition) -> pa.Array:
        """``rows`` minus those whose key the partition already holds: in its files before this call
        (key columns of the rows of these clusters only: the files are sorted by cluster, so row-group
        statistics skip the others), or written by an earlier round of this call.

        A file in an archive tier (Deep Archive, Glacier Flexible Retrieval: GetObject refuses it
        until it is restored) is left out of the join rather than failing the batch into the
        dead-letter queue: late data for such a partition is written, and a row that file already
        holds is then archived twice. Only events delivered again after their first file left the
        queryable tiers (AuditDeepArchiveDays after it was written: a backfill of old logs, never a
        redelivery, which comes within days) can be, and Athena cannot read that file anyway; the
        warning names it."""
        key_columns = list(kind.key)
        candidates = table.select(key_columns).take(rows)
        clusters = pc.unique(candidates["cluster"])
        existing = []
        store = self.archives[kind.name]
        for key in partition.existing:
            try:
                existing.append(pq.read_table(
                    store.open(key), columns=key_columns, filters=pc.is_in(pc.field("cluster"), value_set=clusters),
                ).cast(candidates.schema))  # fmt: skip
            except Archived as exc:
                logger.warning("archived file left out of the duplicate check", extra={"key": key, "why": str(exc)})
        if partition.carry is not None and pc.any(pc.is_in(clusters, value_set=partition.carry["cluster"])).as_py():
            existing.append(partition.carry)
        existing = [t for t in existing if t.num_rows]
        if not existing:
            return rows
        candidates = candidates.append_column("_row", rows)
        archived = pa.concat_tables(existing)
        remaining = candidates.join(archived, keys=key_columns, join_type="left anti", use_threads=False)
        kept = remaining["_row"].combine_chunks()
        # The join does not keep order: restore it from each row's position in ``rows``.
        return pc.take(kept, pc.sort_indices(pc.index_in(kept, value_set=rows)))

    def _writer(self, kind: ArchiveKind, sink: io.BytesIO) -> pq.ParquetWriter:
        schema = archive_schema(kind)
        encodings = {kind.time_column: "DELTA_BINARY_PACKED", kind.key[1]: "DELTA_BYTE_ARRAY"}
        # Other per-event times (stage_at, ...) are near-unique: a dictionary would only add its indices.
        # The ingestion time repeats per batch, where a dictionary wins.
        encodings |= {c: "PLAIN" for c in timestamp_columns(kind) if c not in (kind.time_column, kind.first_of)}
        return pq.ParquetWriter(
            sink,
            schema,
            compression="zstd",
            use_dictionary=[p for p in _leaf_paths(schema) if p not in encodings],
            column_encoding=encodings,
            # Statistics prune row groups; JSON documents are never range-filtered, only fatten the footer.
            write_statistics=[
                p for p, (_, kind_of) in zip(_leaf_paths(schema), kind.columns, strict=True) if kind_of != "json"
            ],
            store_schema=False,  # Glue holds the schema; the Arrow copy would be a third of each footer
            # Each row group is sorted (cluster, time, ...); Parquet's sorting_columns is per row group.
            sorting_columns=[
                pq.SortingColumn(schema.get_field_index(name)) for name in kind.order if name in schema.names
            ],
        )

    def _quarantine(self, kind: ArchiveKind, key: str, reason: str) -> None:
        """The raw object as it was, and why it could not be archived."""
        try:
            data = self.raw.get(key)
        except StoreError as exc:
            data, reason = b"", f"{reason}; and it could not be read again: {exc}"
        target = _quarantine_name(key, data)
        self._create(target + RAW_SUFFIX, data, "application/zstd")
        manifest = {"kind": kind.name, "raw_key": key, "reason": reason, "quarantined_at": format_utc(self.clock()),
                    "object_key": target + RAW_SUFFIX, "items": []}  # fmt: skip
        self._create(target + MANIFEST_SUFFIX, dumps(manifest), "application/json")
        logger.warning("raw object quarantined", extra={"key": key, "reason": reason})

    def _quarantine_lines(self, kind: ArchiveKind, key: str, text: bytes, lines: list[BadLine]) -> None:
        """The bad lines of an object whose other lines were archived: one manifest item per line."""
        items = []
        for bad in lines:
            item: dict[str, object] = {"index": bad.number - 1, "line_number": bad.number, "reason": bad.reason}
            try:
                item["line"] = bad.line.decode("utf-8")
            except UnicodeDecodeError:
                item["line_hex"] = bad.line.hex()
            items.append(item)
        reason = f"{len(lines)} line(s) the archive cannot hold; the object's other lines were archived"
        manifest = {"kind": kind.name, "raw_key": key, "reason": reason, "quarantined_at": format_utc(self.clock()),
                    "items": items}  # fmt: skip
        self._create(_quarantine_name(key, text) + MANIFEST_SUFFIX, dumps(manifest), "application/json")
        logger.warning("raw lines quarantined", extra={"key": key, "lines": [b.number for b in lines]})

    def _create(self, key: str, data: bytes, content_type: str) -> None:
        """Create-only: a name taken holds what an earlier run of this same object wrote (the name
        carries the content's hash), so it is kept, never replaced."""
        try:
            self.raw.put(key, data, content_type, create_only=True)
        except AlreadyExists:
            logger.info("already quarantined", extra={"key": key})


def _quarantine_name(key: str, content: bytes) -> str:
    """``quarantine/<kind>/<cluster>/.../<batch>.compact-<hash>``: apart from ingest's ``<batch>.json``,
    and one per content, so a raw object rewritten with other bytes never replaces the first."""
    return f"{quarantine_base(key)}.compact-{hashlib.sha256(content).hexdigest()[:12]}"


def decompress_all(data: bytes) -> bytes:
    """Every zstd frame of ``data``, each read to its end; ValueError for an empty object, a cut
    frame, or bytes that are not zstd (zstandard's streaming reader returns what it could from a cut
    frame and raises nothing, and its one-shot reader stops after the first frame)."""
    if not data:
        raise ValueError("empty object: no zstd frame")
    try:  # one frame that records its size (ours): one shot, ~3x faster than streaming
        return zstandard.ZstdDecompressor().decompress(data, allow_extra_data=False)
    except zstandard.ZstdError:
        pass
    parts, rest, frame = [], data, 0
    while rest:
        frame += 1
        reader = zstandard.ZstdDecompressor().decompressobj()
        try:
            parts.append(reader.decompress(rest))
        except zstandard.ZstdError as exc:
            raise ValueError(f"not zstd (frame {frame} at byte {len(data) - len(rest)}): {exc}") from None
        if not reader.eof:
            raise ValueError(f"cut: zstd frame {frame} ends before its end ({len(data)} bytes)")
        rest = reader.unused_data
    return b"".join(parts)


class _Chained(io.RawIOBase):
    """Several byte strings read as one stream, without joining (copying) them first."""

    def __init__(self, parts: list[bytes]) -> None:
        self.parts = parts
        self.index = 0
        self.offset = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        filled = 0
        while filled < len(view) and self.index < len(self.parts):
            part = self.parts[self.index]
            n = min(len(view) - filled, len(part) - self.offset)
            view[filled : filled + n] = part[self.offset : self.offset + n]
            filled += n
            self.offset += n
            if self.offset == len(part):
                self.index, self.offset = self.index + 1, 0
        return filled


def _keys_with_rows(spans: list[tuple[str, int, int]], rows: pa.Array) -> set[str]:
    """The raw objects some of ``rows`` (table row numbers) came from."""
    numbers = sorted(rows.to_pylist())
    keys = set()
    for key, start, end in spans:
        at = bisect.bisect_left(numbers, start)
        if at < len(numbers) and numbers[at] < end:
            keys.add(key)
    return keys


def _utc(moment: datetime) -> str:
    """An archive timestamp (UTC without a zone, as Athena reads them) in RFC 3339."""
    return format_utc(moment.replace(tzinfo=UTC))


def _floor_divide(values: pa.Array, divisor: int) -> pa.Array:
    """``values // divisor`` (toward minus infinity; Arrow's integer divide truncates toward zero)."""
    quotient = pc.divide(values, divisor)
    if len(values) and pc.min(values).as_py() < 0:
        below = pc.less(values, pc.multiply(quotient, divisor))
        quotient = pc.subtract(quotient, pc.cast(below, pa.int64()))
    return quotient


def _terminated(text: bytes) -> bytes:
    return text if text.endswith(b"\n") else text + b"\n"


def _changes(table: pa.Table, columns: list[str]) -> pa.Array:
    """True where a row differs from the one before in any of ``columns`` (and for the first row)."""
    n = table.num_rows
    if n == 0:
        return pa.array([], pa.bool_())
    differs = None
    for name in columns:
        column = table[name].combine_chunks()
        unequal = pc.fill_null(pc.not_equal(column.slice(1), column.slice(0, n - 1)), True)
        differs = unequal if differs is None else pc.or_(differs, unequal)
    assert differs is not None
    return pa.concat_arrays([pa.array([True]), differs])


def _leaf_paths(schema: pa.Schema) -> list[str]:
    """Column paths as the Parquet writer names them (a list's values are ``name.list.element``)."""
    return [f"{f.name}.list.element" if pa.types.is_list(f.type) else f.name for f in schema]
