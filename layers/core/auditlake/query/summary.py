"""What is in a lake.

``contents``: what ``auditlake summary`` shows of a local lake: per data class (audit, events,
findings) raw objects archived or not and the rows not archived yet, archive files and rows, sealed
(named in a digest) and unsealed files, quarantined items, and per cluster the rows and the time
range; and the alerts sent. Every row is counted once: the archive's from its Parquet files, the raw
landing's only from objects not archived yet (compacted raw objects stay until they expire).

``summarise``: counts of one kind's landed raw records by cluster, level, verb and stage, of its
quarantined items, and of findings (raw lines and archived rows, by level): the demo's and tests'
view of the raw landing."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from auditlake.jsonio import loads
from auditlake.landing import (
    MANIFEST_SUFFIX,
    RAW_SUFFIX,
    decode_lines,
    parse_raw_key,
    quarantine_prefix,
    raw_prefix,
)
from auditlake.model import ARCHIVE_KINDS, FINDINGS, ArchiveKind
from auditlake.stores import Store
from auditlake.timestamps import format_utc

# Where the digests are, in the audit archive (trust/digest.py's PREFIX).
DIGESTS = "digests/"
# An archive partition's file, below its kind: what the compactor writes and the query views read
# (Athena, as Hive, skips files whose names start with "." or "_").
_PARTITION_FILE = re.compile(r"dt=[^/]+/hour=[^/]+/[^/._][^/]*\.parquet")


@dataclass
class LakeSummary:
    records: int = 0
    raw_objects: int = 0
    redacted: int = 0
    forbidden: int = 0
    clusters: Counter[str] = field(default_factory=Counter)
    levels: Counter[str] = field(default_factory=Counter)
    verbs: Counter[str] = field(default_factory=Counter)
    stages: Counter[str] = field(default_factory=Counter)
    quarantined_items: int = 0
    quarantined_batches: int = 0
    quarantine_reasons: Counter[str] = field(default_factory=Counter)
    findings_raw: int = 0
    findings_archived: int = 0
    finding_levels: Counter[str] = field(default_factory=Counter)  # of the raw findings


def summarise(store: Store, kind: str = "audit", *, archive: Store | None = None) -> LakeSummary:
    """Counts of ``kind``'s raw records and quarantine, and of the findings (raw; archived when
    ``archive`` is given)."""
    out = LakeSummary()
    for key in store.list(raw_prefix(FINDINGS.name)):
        if key.endswith(RAW_SUFFIX):
            for line in decode_lines(store.get(key)):
                out.findings_raw += 1
                out.finding_levels[str(loads(line).get("level") or "-")] += 1
    if archive is not None:
        import pyarrow.parquet as pq  # the local CLI has it (it compacts)

        for key in archive.list(f"{FINDINGS.name}/"):
            if key.endswith(".parquet"):
                out.findings_archived += pq.read_metadata(archive.open(key)).num_rows
    for key in store.list(raw_prefix(kind)):
        if not key.endswith(RAW_SUFFIX):
            continue
        out.raw_objects += 1
        for line in decode_lines(store.get(key)):
            record = loads(line)
            out.records += 1
            out.clusters[record["cluster"]] += 1
            out.levels[record["level"]] += 1
            out.verbs[record.get("verb") or "-"] += 1
            out.stages[record["stage"]] += 1
            out.redacted += bool(record["redactions"])
            out.forbidden += record.get("response_code") == 403
    for key, retried in _manifests(store, kind):
        if retried:
            continue
        manifest = loads(store.get(key))
        out.quarantined_batches += 1
        items = manifest.get("items") or []
        if not items:  # the whole payload was refused
            out.quarantined_items += 1
            out.quarantine_reasons[_short(manifest.get("reason", "?"))] += 1
        for item in items:
            out.quarantined_items += 1
            out.quarantine_reasons[_short(item.get("reason", "?"))] += 1
    return out


def _short(reason: str) -> str:
    return reason.split(":", 1)[0][:80]


# ------------------------------------------------------------------ what a lake holds (summary)


@dataclass
class ClusterSpan:
    """One cluster's rows of one data class: archived and raw (not archived yet), and the first and
    last time (the class's time column, RFC 3339 UTC) over both."""

    archived: int = 0
    raw: int = 0
    first: str | None = None
    last: str | None = None

    def saw(self, first: str | None, last: str | None) -> None:
        if first is not None and (self.first is None or first < self.first):
            self.first = first
        if last is not None and (self.last is None or last > self.last):
            self.last = last


@dataclass
class KindContents:
    """One data class (audit, events, findings) of a lake. Raw rows are those of raw objects not
    archived yet (the archive's rows are counted from its files, so none is counted twice);
    ``raw_archived`` objects were compacted and stay until the raw landing's expiry."""

    kind: str
    raw_objects: int = 0
    raw_pending: int = 0  # raw objects not archived yet
    raw_rows: int = 0  # lines of the pending ones
    archived_files: int = 0
    archived_rows: int = 0
    sealed_files: int = 0  # archive files a digest names
    quarantined_items: int = 0  # waiting: not retried
    quarantined_batches: int = 0
    quarantined_retried: int = 0  # items re-ingested by ``auditlake quarantine retry``
    clusters: dict[str, ClusterSpan] = field(default_factory=dict)

    @property
    def raw_archived(self) -> int:
        return self.raw_objects - self.raw_pending

    @property
    def unsealed_files(self) -> int:
        return self.archived_files - self.sealed_files

    def span(self, cluster: str) -> ClusterSpan:
        return self.clusters.setdefault(cluster, ClusterSpan())

    def as_dict(self) -> dict[str, Any]:
        return {
            "raw_objects": self.raw_objects, "raw_objects_archived": self.raw_archived,
            "raw_objects_pending": self.raw_pending, "raw_rows_pending": self.raw_rows,
            "archived_files": self.archived_files, "archived_rows": self.archived_rows,
            "sealed_files": self.sealed_files, "unsealed_files": self.unsealed_files,
            "quarantined_items": self.quarantined_items, "quarantined_batches": self.quarantined_batches,
            "quarantined_retried": self.quarantined_retried,
            "clusters": {name: vars(span) for name, span in sorted(self.clusters.items())},
        }  # fmt: skip


@dataclass
class AuditBreakdown:
    """The audit rows (archived and not compacted yet, each once) by level, stage and verb; how many
    had bodies removed (``redactions``: secrets, configmaps) and how many were answered 403."""

    levels: Counter[str] = field(default_factory=Counter)
    stages: Counter[str] = field(default_factory=Counter)
    verbs: Counter[str] = field(default_factory=Counter)
    redacted: int = 0
    forbidden: int = 0

    def add(self, level: Any, stage: Any, verb: Any, count: int, *, redacted: int, forbidden: int) -> None:
        self.levels[str(level or "-")] += count
        self.stages[str(stage or "-")] += count
        self.verbs[str(verb or "-")] += count
        self.redacted += redacted
        self.forbidden += forbidden

    def as_dict(self) -> dict[str, Any]:
        return {
            "levels": dict(self.levels.most_common()), "stages": dict(self.stages.most_common()),
            "verbs": dict(self.verbs.most_common()), "redacted": self.redacted, "forbidden_403": self.forbidden,
        }  # fmt: skip


@dataclass
class LakeContents:
    kinds: dict[str, KindContents]
    audit: AuditBreakdown = field(default_factory=AuditBreakdown)
    quarantine_reasons: Counter[str] = field(default_factory=Counter)
    alerts: Counter[str] = field(default_factory=Counter)  # by level
    digests: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            **{kind: contents.as_dict() for kind, contents in self.kinds.items()},
            "audit_rows": self.audit.as_dict(),
            "quarantine_reasons": dict(self.quarantine_reasons.most_common()),
            "alerts": {"total": sum(self.alerts.values()), "by_level": dict(self.alerts.most_common())},
            "digests": self.digests,
        }


# Archived raw keys of a landing hour (archive/hourly.py's LocalCompactedHours.compacted, passed in:
# query does not import archive).
CompactedKeys = Callable[[str, datetime], set[str]]


def contents(store: Store, archive: Store, compacted: CompactedKeys, alerts: Path | None = None) -> LakeContents:
    """What a local lake holds (``auditlake summary``): per data class its raw objects (archived or
    not) and the rows of those not archived yet, its archive files and rows, which files a digest
    names (sealed: ``verify`` proves them), its quarantine, per cluster the rows and time range; and
    the alerts sent. Archive rows are counted by DuckDB from the Parquet files (their statistics),
    raw rows by reading the pending objects."""
    out = LakeContents({kind.name: KindContents(kind.name) for kind in ARCHIVE_KINDS.values()})
    sealed = _sealed_keys(archive)
    out.digests = len(sealed.digests)
    for kind in ARCHIVE_KINDS.values():
        held = out.kinds[kind.name]
        breakdown = out.audit if kind.name == "audit" else None
        _archived(kind, archive, held, sealed.keys, breakdown)
        _raw(kind, store, held, compacted, breakdown)
        for key, retried in _manifests(store, kind.name):
            manifest = loads(store.get(key))
            items = manifest.get("items") or [manifest]  # no items: the whole payload was refused
            if retried:  # re-ingested by ``auditlake quarantine retry``: landed since, not waiting
                held.quarantined_retried += len(items)
                continue
            held.quarantined_batches += 1
            held.quarantined_items += len(items)
            out.quarantine_reasons.update(_short(str(item.get("reason", "?"))) for item in items)
    if alerts is not None and alerts.is_dir():
        for path in sorted(alerts.glob("*.jsonl")):
            for line in path.read_bytes().splitlines():
                if line.strip():
                    try:
                        out.alerts[str(loads(line).get("level") or "-")] += 1
                    except ValueError:  # a line cut by a crash is still an alert that was sent
                        out.alerts["unreadable"] += 1
    return out


# Beside a quarantine manifest once ``auditlake quarantine retry`` landed its records (ingest/quarantine.py's
# RETRIED_SUFFIX; ingest sits above query, so the name is repeated here).
RETRIED_SUFFIX = ".retried"


def _manifests(store: Store, kind: str) -> Iterator[tuple[str, bool]]:
    """One kind's quarantine manifests, each with whether it was retried."""
    keys = list(store.list(quarantine_prefix(kind)))
    retried = {key.removesuffix(RETRIED_SUFFIX) + MANIFEST_SUFFIX for key in keys if key.endswith(RETRIED_SUFFIX)}
    for key in keys:
        if key.endswith(MANIFEST_SUFFIX):
            yield key, key in retried


@dataclass
class _Sealed:
    keys: set[str]
    digests: list[str]


def _sealed_keys(archive: Store) -> _Sealed:
    """The archive keys the digests name (unverified: ``verify`` checks signatures and hashes)."""
    digests = sorted(key for key in archive.list(DIGESTS) if key.endswith(".json"))
    keys: set[str] = set()
    for key in digests:
        try:
            objects = loads(archive.get(key)).get("objects") or []
        except ValueError:
            continue
        keys.update(str(item.get("key")) for item in objects if isinstance(item, dict))
    return _Sealed(keys, digests)


def _archived(
    kind: ArchiveKind, archive: Store, held: KindContents, sealed: set[str], breakdown: AuditBreakdown | None
) -> None:
    files = [key for key in archive.list(f"{kind.name}/") if _PARTITION_FILE.fullmatch(key.split("/", 1)[-1])]
    held.archived_files = len(files)
    held.sealed_files = sum(key in sealed for key in files)
    if not files:
        return
    import duckdb  # the local CLI's engine

    root = getattr(archive, "root", None)
    if root is None:  # not a local store: counted from the file metadata only
        return
    paths = ", ".join("'" + str(Path(root) / key).replace("'", "''") + "'" for key in files)
    time = kind.time_column
    sql = (
        f'SELECT cluster, count(*), min("{time}"), max("{time}") '  # noqa: S608 - model names, escaped paths
        f"FROM read_parquet([{paths}], union_by_name = true) GROUP BY cluster"
    )
    connection = duckdb.connect()
    rows = connection.execute(sql).fetchall()
    for cluster, count, first, last in rows:
        span = held.span(str(cluster))
        span.archived += int(count)
        held.archived_rows += int(count)
        span.saw(_rfc3339(first), _rfc3339(last))
    if breakdown is not None:
        by = (
            "SELECT level, stage, verb, count(*), count(*) FILTER (WHERE len(coalesce(redactions, [])) > 0), "  # noqa: S608
            f"count(*) FILTER (WHERE response_code = 403) FROM read_parquet([{paths}], union_by_name = true) "
            "GROUP BY level, stage, verb"
        )  # model names and escaped paths only
        grouped = connection.execute(by).fetchall()
        for level, stage, verb, count, redacted, forbidden in grouped:
            breakdown.add(level, stage, verb, int(count), redacted=int(redacted), forbidden=int(forbidden))


def _raw(
    kind: ArchiveKind, store: Store, held: KindContents, compacted: CompactedKeys, breakdown: AuditBreakdown | None
) -> None:
    archived: dict[tuple[str, datetime], set[str]] = {}
    for key in store.list(raw_prefix(kind.name)):
        raw = parse_raw_key(key)
        if raw is None:
            continue
        held.raw_objects += 1
        hour = (kind.name, raw.landed)
        if hour not in archived:
            archived[hour] = compacted(*hour)
        if key in archived[hour]:
            continue
        held.raw_pending += 1
        for line in decode_lines(store.get(key)):
            try:
                record = loads(line)
            except ValueError:  # the compactor quarantines it
                continue
            span = held.span(str(record.get("cluster") or "-"))
            span.raw += 1
            held.raw_rows += 1
            moment = record.get(kind.time_column)
            if isinstance(moment, str):
                span.saw(moment, moment)
            if breakdown is not None:
                breakdown.add(record.get("level"), record.get("stage"), record.get("verb"), 1,
                              redacted=int(bool(record.get("redactions"))),
                              forbidden=int(record.get("response_code") == 403))  # fmt: skip


def _rfc3339(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return format_utc(value if value.tzinfo else value.replace(tzinfo=UTC))
    return str(value)


def pending_raw_objects(store: Store, compacted: CompactedKeys) -> int:
    """Raw objects (every data class) not archived yet: listed, not read."""
    archived: dict[tuple[str, datetime], set[str]] = {}
    pending = 0
    for key in store.list(raw_prefix()):
        raw = parse_raw_key(key)
        if raw is None or raw.kind not in ARCHIVE_KINDS:
            continue
        hour = (raw.kind, raw.landed)
        if hour not in archived:
            archived[hour] = compacted(*hour)
        pending += key not in archived[hour]
    return pending


# ------------------------------------------------------------------ what a deployed stack holds (summary --stack)


@dataclass
class StackKind:
    """One data class of a deployed stack, from S3 listings alone (no object is read, no Athena
    query run): archive files, their bytes and first and last partition day; raw objects in the raw
    landing (kept a few days: archived or not, they are not told apart here); quarantine manifests
    waiting and retried."""

    kind: str
    files: int = 0
    bytes: int = 0
    first_day: str | None = None
    last_day: str | None = None
    raw_objects: int = 0
    quarantined: int = 0  # manifests not retried
    retried: int = 0


@dataclass
class StackContents:
    kinds: dict[str, StackKind]
    digests: int = 0
    newest_digest: str | None = None  # its key

    def as_dict(self) -> dict[str, Any]:
        return {
            **{name: {k: v for k, v in vars(kind).items() if k != "kind"} for name, kind in self.kinds.items()},
            "digests": self.digests,
            "newest_digest": self.newest_digest,
        }


def stack_contents(s3: Any, raw_bucket: str, archive_buckets: Mapping[str, str]) -> StackContents:
    """What a deployed stack holds, from LIST requests only (a thousand keys each: a year of hourly
    partitions is tens of requests, a fraction of a cent): ``archive_buckets`` by data class (its
    ``<kind>/dt=.../hour=.../`` files; the audit bucket's ``digests/`` too), the raw bucket's
    ``raw/<kind>/`` and ``quarantine/<kind>/``. Row counts would need Athena (or every file's footer):
    ``auditlake query --athena --sql`` gives them."""

    def listed(bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            yield from page.get("Contents", [])

    out = StackContents({kind: StackKind(kind) for kind in ARCHIVE_KINDS})
    for kind, held in out.kinds.items():
        days: set[str] = set()
        for item in listed(archive_buckets[kind], f"{kind}/"):
            key = item["Key"]
            if _PARTITION_FILE.fullmatch(key.split("/", 1)[-1]):
                held.files += 1
                held.bytes += int(item.get("Size", 0))
                days.add(key.split("/")[1].removeprefix("dt="))
        if days:
            held.first_day, held.last_day = min(days), max(days)
        held.raw_objects = sum(1 for item in listed(raw_bucket, raw_prefix(kind)) if item["Key"].endswith(RAW_SUFFIX))
        keys = [item["Key"] for item in listed(raw_bucket, quarantine_prefix(kind))]
        retried = {key.removesuffix(RETRIED_SUFFIX) + MANIFEST_SUFFIX for key in keys if key.endswith(RETRIED_SUFFIX)}
        manifests = [key for key in keys if key.endswith(MANIFEST_SUFFIX)]
        held.retried = sum(key in retried for key in manifests)
        held.quarantined = len(manifests) - held.retried
    digests = sorted(item["Key"] for item in listed(archive_buckets["audit"], DIGESTS) if item["Key"].endswith(".json"))
    out.digests, out.newest_digest = len(digests), (digests[-1] if digests else None)
    return out
