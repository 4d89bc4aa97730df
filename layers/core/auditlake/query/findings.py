"""Findings over a time range (``auditlake findings``): one query text for Athena and the local lake.

Contract: ``findings_sql(relation)`` is Athena SQL over ``relation`` (the findings columns of
model.FINDING_COLUMNS plus the ``dt``/``hour`` partitions) taking ``FindingsFilter.values()`` as
its placeholders, in order. It returns one row per finding key (cluster, rule_id, audit_id: the
first ingested, as the compactor keeps it) with ``at`` in [since, until), at or above a Sigma level
(model.SIGMA_LEVEL_RANK; an unknown level only when no level is asked for), of one rule and one
cluster when given, ordered by time. Deployed, ``relation`` is the Glue view ``findings_live``: the
archive plus the raw findings of the last hours not yet compacted (query/live.py). Locally,
``local_findings`` runs the same text on DuckDB (LocalEngine's sqlglot path) over the findings
archive AND the raw findings not yet compacted, so a finding is visible right after ingest; a
compacted and a raw copy of one finding count once. ``rows`` gives every row the same shape
whichever engine ran it: times RFC 3339 (ms, UTC), ``source_ips`` a list, ``details`` an object.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from auditlake.jsonio import loads
from auditlake.landing import RAW_SUFFIX, decode_lines, raw_prefix
from auditlake.model import FINDING_COLUMN_NAMES, FINDING_COLUMNS, FINDINGS, SIGMA_LEVEL_RANK, SIGMA_LEVELS
from auditlake.query.named import LocalEngine, Result, time_bounds
from auditlake.stores import Store, StoreError
from auditlake.timestamps import format_millis, parse

_RANK = " ".join(f"WHEN '{level}' THEN {rank}" for level, rank in SIGMA_LEVEL_RANK.items())
# Identifiers double-quoted: ``at`` is a keyword to DuckDB (AT TIME ZONE), a plain name to Athena.
_OUTPUT = ", ".join(
    "array_join(source_ips, ',') AS source_ips" if c == "source_ips" else f'"{c}"' for c in FINDING_COLUMN_NAMES
)
_KEY = ", ".join(FINDINGS.key)
# The local relation: the archive's view and the raw findings, one relation (LocalEngine names the view ``findings``).
LOCAL_RELATION = "findings_landed"
_RAW_TABLE = "findings_raw"


@dataclass(frozen=True)
class FindingsFilter:
    since: str  # ISO 8601 UTC (named.time_bounds)
    until: str
    level: str | None = None  # at or above this Sigma level
    rule_id: str | None = None
    cluster: str | None = None

    @classmethod
    def parse(
        cls,
        since: str | None,
        until: str | None,
        *,
        level: str | None = None,
        rule_id: str | None = None,
        cluster: str | None = None,
        now: datetime | None = None,
    ) -> FindingsFilter:
        """since/until as ``auditlake query`` takes them (default: the last 24 hours); QueryError (a
        ValueError) for a malformed time, ValueError for an unknown level."""
        start, end = time_bounds(since, until, now or datetime.now(UTC))
        if level is not None and level not in SIGMA_LEVEL_RANK:
            raise ValueError(f"level must be one of {', '.join(SIGMA_LEVELS)}, got {level!r}")
        return cls(start, end, level, rule_id or None, cluster or None)

    def values(self) -> list[Any]:
        """The placeholders of ``findings_sql``, in order."""
        rank = SIGMA_LEVEL_RANK[self.level] if self.level else -1
        rule, cluster = self.rule_id or "", self.cluster or ""
        since, until = self.since, self.until
        return [since, until, since, since, until, until, since, until, rank, rule, rule, cluster, cluster]


def findings_sql(relation: str) -> str:
    """Athena SQL over ``relation`` (our own name, never user input); placeholders: ``FindingsFilter.values``."""
    return f"""WITH found AS (
  SELECT *, row_number() OVER (PARTITION BY {_KEY} ORDER BY ingested_at) AS first
  FROM {relation}
  WHERE dt BETWEEN date_format(from_iso8601_timestamp(?) AT TIME ZONE 'UTC', '%Y-%m-%d')
               AND date_format(from_iso8601_timestamp(?) AT TIME ZONE 'UTC', '%Y-%m-%d')
    AND (dt > date_format(from_iso8601_timestamp(?) AT TIME ZONE 'UTC', '%Y-%m-%d')
         OR hour >= CAST(hour(from_iso8601_timestamp(?) AT TIME ZONE 'UTC') AS integer))
    AND (dt < date_format(from_iso8601_timestamp(?) AT TIME ZONE 'UTC', '%Y-%m-%d')
         OR hour <= CAST(hour(from_iso8601_timestamp(?) AT TIME ZONE 'UTC') AS integer))
    AND "at" >= CAST(from_iso8601_timestamp(?) AT TIME ZONE 'UTC' AS timestamp)
    AND "at" < CAST(from_iso8601_timestamp(?) AT TIME ZONE 'UTC' AS timestamp)
    AND (CASE level {_RANK} ELSE -1 END) >= ?
    AND (? = '' OR rule_id = ?)
    AND (? = '' OR cluster = ?)
)
SELECT {_OUTPUT}
FROM found
WHERE first = 1
ORDER BY "at", cluster, rule_id, audit_id"""  # noqa: S608 - our own relation and column names


# ---------------------------------------------------------------- the local lake


@dataclass
class RawRead:
    rows: list[tuple[Any, ...]]
    skipped: list[str]  # "<key>: why" for objects or lines that could not be read


def raw_findings(store: Store) -> RawRead:
    """The raw landing's findings lines as rows in FINDING_COLUMNS order (timestamps as naive UTC,
    the archive's form); unreadable objects and lines are skipped and named (the compactor
    quarantines them)."""
    read = RawRead([], [])
    for key in store.list(raw_prefix(FINDINGS.name)):
        if not key.endswith(RAW_SUFFIX):
            continue
        try:
            lines = decode_lines(store.get(key))
        except (StoreError, ValueError) as exc:
            read.skipped.append(f"{key}: {exc}")
            continue
        for number, line in enumerate(lines, 1):
            try:
                read.rows.append(_row(loads(line)))
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                read.skipped.append(f"{key} line {number}: {exc}")
    return read


def _row(record: dict[str, Any]) -> tuple[Any, ...]:
    if not isinstance(record, dict) or not all(record.get(name) for name in (*FINDINGS.key, "at")):
        raise ValueError("not a finding: no cluster, rule_id, audit_id or at")
    values = []
    for name, kind in FINDING_COLUMNS:
        value = record.get(name)
        if value is not None and kind == "timestamp":
            value = parse(value).replace(tzinfo=None)
        elif value is not None and kind == "json" and not isinstance(value, str):
            value = json.dumps(value, separators=(",", ":"), sort_keys=True)
        values.append(value)
    return tuple(values)


def local_findings(engine: LocalEngine, store: Store, where: FindingsFilter) -> tuple[Result, list[str]]:
    """``findings_sql`` on the local lake: the archive's findings and the raw ones not yet compacted.
    Returns the result and what of the raw landing could not be read."""
    raw = raw_findings(store)
    types = {"string": "VARCHAR", "json": "VARCHAR", "timestamp": "TIMESTAMP", "list<string>": "VARCHAR[]"}
    columns = ", ".join(f'"{name}" {types[kind]}' for name, kind in FINDING_COLUMNS)
    connection = engine.connection
    connection.execute(f"CREATE OR REPLACE TEMP TABLE {_RAW_TABLE} ({columns})")
    if raw.rows:
        marks = ", ".join("?" for _ in FINDING_COLUMNS)
        connection.executemany(f"INSERT INTO {_RAW_TABLE} VALUES ({marks})", raw.rows)  # noqa: S608 - our names
    names = ", ".join(f'"{name}"' for name in FINDING_COLUMN_NAMES)
    # Raw rows get the partition the compactor will give them (dt/hour of ``at``), so one WHERE serves both.
    connection.execute(
        f"CREATE OR REPLACE TEMP VIEW {LOCAL_RELATION} AS "  # noqa: S608 - our own names
        f"SELECT {names}, dt, hour FROM {FINDINGS.name} UNION ALL "
        f"""SELECT {names}, strftime("at", '%Y-%m-%d') AS dt, CAST(hour("at") AS INTEGER) AS hour FROM {_RAW_TABLE}"""
    )
    return engine.run(findings_sql(LOCAL_RELATION), where.values()), raw.skipped


# ---------------------------------------------------------------- one shape for both engines


def rows(result: Result) -> Iterator[dict[str, Any]]:
    """Each row as an object of FINDING_COLUMNS: ``at``/``ingested_at`` RFC 3339 (ms, UTC),
    ``source_ips`` a list, ``details`` the JSON object (Athena answers text; DuckDB typed values)."""
    for row in result.rows:
        item = dict(zip(result.columns, row, strict=True))
        for name, kind in FINDING_COLUMNS:
            value = item.get(name)
            if kind == "timestamp" and value is not None:
                moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
                item[name] = format_millis(moment if moment.tzinfo else moment.replace(tzinfo=UTC))
            elif kind == "list<string>":
                item[name] = [part for part in (value or "").split(",") if part]
            elif kind == "json" and isinstance(value, str):
                with contextlib.suppress(ValueError):  # not JSON: kept as the text it is
                    item[name] = json.loads(value)
        yield item
