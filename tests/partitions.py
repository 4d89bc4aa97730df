"""How many (dt, hour) partitions a named query makes Athena project, and what its time window
selects, computed from the SQL itself (sqlglot) and evaluated by DuckDB, never counted by hand.

* ``projected``: the partitions a table's projection config (from template.yaml) generates at a
  given moment: its ``projection.dt.range`` (fixed dates or Athena's ``NOW[+-]<n><unit>`` form,
  ``${Param}`` resolved from the stack parameters) crossed with ``projection.hour.range``.
* ``literal_sql``: a query with its ``?`` replaced by the bound values, as Athena inserts its
  execution parameters (so predicates can be read and evaluated apart from the query).
* ``scans``: for each read of ``audit`` or ``events``, the conjuncts of that SELECT's WHERE.
* ``partition_count``: how many projected partitions pass the conjuncts that name only partition
  columns. ``per_column=True`` keeps only conjuncts on one partition column: the per-column ranges
  a planner can derive from the predicate (Trino's TupleDomain); without it, the whole predicate on
  (dt, hour) is applied to each partition, as partition pruning does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import duckdb
import sqlglot
from sqlglot import exp
from sqlglot.tokens import TokenType

PARTITION_COLUMNS = frozenset({"dt", "hour"})
# Athena's relative date form (partition-projection-supported-types.html), units it accepts.
_RELATIVE = re.compile(r"\s*NOW\s*(?:([+-])\s*([0-9]+)\s*(YEARS?|MONTHS?|WEEKS?|DAYS?|HOURS?|MINUTES?|SECONDS?)\s*)?")
_UNIT_DAYS = {"WEEK": 7, "DAY": 1}


def _resolve(value: Any, parameters: Mapping[str, Any]) -> str:
    """A table parameter as CloudFormation hands it to Glue: a string, or an Fn::Sub of parameters."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
        return re.sub(r"\$\{([A-Za-z0-9]+)\}", lambda m: str(parameters[m.group(1)]), value["Fn::Sub"])
    raise AssertionError(f"unsupported projection value {value!r}")


def _day(bound: str, now: datetime) -> date:
    match = _RELATIVE.fullmatch(bound)
    if match is None:
        return date.fromisoformat(bound.strip())  # projection.dt.format is yyyy-MM-dd
    sign, amount, unit = match.groups()
    if sign is None:
        return now.date()
    days = _UNIT_DAYS.get(unit.rstrip("S"))
    if days is None:
        raise AssertionError(f"a day-partitioned range should move in days or weeks, not {unit}")
    return (now + (1 if sign == "+" else -1) * timedelta(days=days * int(amount))).date()


def projection_days(table: Mapping[str, Any], parameters: Mapping[str, Any], now: datetime) -> tuple[date, date]:
    """The first and last ``dt`` a table's projection generates at ``now`` (UTC, as Athena does)."""
    start, end = _resolve(table["projection.dt.range"], parameters).split(",")
    return _day(start, now), _day(end, now)


def projected(table: Mapping[str, Any], parameters: Mapping[str, Any], now: datetime) -> list[tuple[str, int]]:
    assert _resolve(table["projection.dt.type"], parameters) == "date"
    assert _resolve(table["projection.hour.type"], parameters) == "integer"
    first, last = projection_days(table, parameters, now)
    low, high = (int(v) for v in _resolve(table["projection.hour.range"], parameters).split(","))
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    return [(day.isoformat(), hour) for day in days for hour in range(low, high + 1)]


def _literal(value: Any) -> str:
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def literal_sql(sql: str, values: Sequence[Any]) -> str:
    """``sql`` with its ``?`` placeholders replaced, in order, by SQL literals of ``values``."""
    placeholders = [t for t in sqlglot.tokenize(sql, read="trino") if t.token_type == TokenType.PLACEHOLDER]
    assert len(placeholders) == len(values), (len(placeholders), len(values))
    out, last = [], 0
    for token, value in zip(placeholders, values, strict=True):
        out += [sql[last : token.start], _literal(value)]
        last = token.end + 1
    return "".join(out) + sql[last:]


@dataclass(frozen=True)
class Scan:
    table: str  # audit or events
    conjuncts: tuple[exp.Expression, ...]  # of the WHERE of the SELECT reading it


def scans(sql: str) -> list[Scan]:
    """Every SELECT that reads ``audit`` or ``events`` directly, or their ``_live`` views (query/live.py:
    the archive's partitions and dt/hour), with its WHERE split at AND; named by the archive table."""
    found = []
    for select in sqlglot.parse_one(sql, read="trino").find_all(exp.Select):
        source = select.args.get("from_")
        table = source.this if source is not None else None
        name = table.name.removesuffix("_live") if isinstance(table, exp.Table) else ""
        if name not in ("audit", "events"):
            continue
        where = select.args.get("where")
        condition = where.this if where is not None else None
        parts = tuple(condition.flatten()) if isinstance(condition, exp.And) else ((condition,) if condition else ())
        found.append(Scan(name, tuple(_unwrap(p) for p in parts)))
    return found


def _unwrap(expression: exp.Expression) -> exp.Expression:
    return expression.this if isinstance(expression, exp.Paren) else expression


def columns(expression: exp.Expression) -> set[str]:
    return {column.name for column in expression.find_all(exp.Column)}


def partition_count(partitions: Sequence[tuple[str, int]], scan: Scan, *, per_column: bool = False) -> int:
    """How many of ``partitions`` the scan's partition predicates leave (see the module doc)."""
    kept = [c for c in scan.conjuncts if columns(c) and columns(c) <= PARTITION_COLUMNS]
    if per_column:
        kept = [c for c in kept if len(columns(c)) == 1]
    connection = duckdb.connect()
    connection.execute("SET TimeZone = 'UTC'")
    connection.execute(
        "CREATE TABLE parts AS SELECT unnest(?::VARCHAR[]) AS dt, unnest(?::INTEGER[]) AS hour",
        [[dt for dt, _ in partitions], [hour for _, hour in partitions]],
    )
    where = " AND ".join(f"({c.sql(dialect='duckdb')})" for c in kept) or "true"
    row = connection.execute(f"SELECT count(*) FROM parts WHERE {where}").fetchone()
    assert row is not None
    return int(row[0])
