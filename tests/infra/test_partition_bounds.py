"""Limits as tests: how many (dt, hour) partitions each named query makes Athena project, from the
tables' projection config in template.yaml and the query's own predicates (tests/partitions.py
evaluates them with DuckDB over the projected partitions), and where the projection starts.

Before, coverage_gaps bounded dt only from above and the projection started in 2015: every run
projected ~104,000 partitions. Now every read of audit or events is bounded on dt from both sides
and on hour on its first and last day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from auditlake.query import named as query
from tests.partitions import literal_sql, partition_count, projected, projection_days, scans

NOW = datetime.now(UTC)  # the projection and the default window are both relative to it
REQUIRED = {"principal": "alice", "identity": "alice", "resource": "pods", "namespace": "prod", "name": "x"}
WINDOWS = {"the default 24 hours": {}, "a year": {"since": "365d"}}
# Per-column ranges (what a planner derives: dt between the first and last day, and every hour of
# them) and the exact (dt, hour) predicate (what partition pruning keeps).
LIMITS = {"the default 24 hours": (48, 25), "a year": (9000, 8761)}
RETENTION = {"audit": "AuditRetentionDays", "events": "EventsRetentionDays"}


def _tables(expanded: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {kind: expanded["Resources"][f"{kind.capitalize()}Table"]["Properties"]["TableInput"]["Parameters"]
            for kind in RETENTION}  # fmt: skip


def _defaults(expanded: dict[str, Any]) -> dict[str, Any]:
    return {name: p["Default"] for name, p in expanded["Parameters"].items() if "Default" in p}


def _limits(named: query.NamedQuery, window: str) -> tuple[int, int]:
    if "lookback_days" in named.params:
        # coverage_gaps reads lookback_days (default 90) before `since` too: a gap is filed under the
        # hour it started (see its SQL). Bounded all the same, and by the events projection.
        days = int(named.params["lookback_days"] or 0)
        return (days + 2) * 24, (days + 2) * 24
    return LIMITS[window]


def _counts(named: query.NamedQuery, given: dict[str, str], tables: dict[str, list[tuple[str, int]]]) -> list[Any]:
    """(table, per-column count, exact count) for each read of audit or events in the query."""
    required = {k: REQUIRED[k] for k, default in named.params.items() if default is None}
    sql = literal_sql(named.sql, named.bind({**required, **given}, now=NOW))
    found = scans(sql)
    assert found, f"{named.name} reads neither audit nor events"
    return [(s.table, partition_count(tables[s.table], s, per_column=True), partition_count(tables[s.table], s))
            for s in found]  # fmt: skip


Partitions = dict[str, list[tuple[str, int]]]


@pytest.fixture(scope="module")
def deployed(expanded: dict[str, Any]) -> Partitions:
    """What each table projects now with the template's default parameters."""
    return {kind: projected(table, _defaults(expanded), NOW) for kind, table in _tables(expanded).items()}


@pytest.fixture(scope="module")
def since_2015(expanded: dict[str, Any]) -> Partitions:
    """The same with the projection start this stack used to have (2015-01-01)."""
    return {kind: projected({**table, "projection.dt.range": "2015-01-01,NOW+1DAYS"}, _defaults(expanded), NOW)
            for kind, table in _tables(expanded).items()}  # fmt: skip


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("name", query.names())
def test_a_named_query_projects_few_partitions(deployed: Partitions, name: str, window: str) -> None:
    named = query.load(name)
    per_column_limit, exact_limit = _limits(named, window)
    for table, per_column, exact in _counts(named, WINDOWS[window], deployed):
        assert 0 < exact <= per_column <= per_column_limit, (table, per_column)
        assert exact <= exact_limit, (table, exact)


@pytest.mark.parametrize("name", query.names())
def test_the_query_not_the_projection_bounds_the_partitions(since_2015: Partitions, name: str) -> None:
    """With the 2015 projection start the old coverage_gaps met (it projected 104,448 partitions),
    a default run still projects a day or two: the bound is in every query, not only in the table."""
    assert len(since_2015["audit"]) > 100_000  # what a query bounded only from above projects
    named = query.load(name)
    per_column_limit, exact_limit = _limits(named, "the default 24 hours")
    for table, per_column, exact in _counts(named, {}, since_2015):
        assert per_column <= per_column_limit and exact <= exact_limit, (table, per_column, exact)


@pytest.mark.parametrize("kind", list(RETENTION))
def test_the_projection_starts_at_the_retention(expanded: dict[str, Any], kind: str) -> None:
    """The oldest partition lifecycle still keeps (files expire RetentionDays after they are
    written) is the first one projected, for any retention; the range ends tomorrow (a partition
    dated ahead by a fast API server clock is read)."""
    table, defaults = _tables(expanded)[kind], _defaults(expanded)
    parameter = RETENTION[kind]
    assert parameter in str(table["projection.dt.range"])
    for days in sorted({1, 30, int(defaults[parameter]), 3650}):
        first, last = projection_days(table, {**defaults, parameter: days}, NOW)
        assert (first, last) == ((NOW - timedelta(days=days)).date(), (NOW + timedelta(days=1)).date())
    partitions = projected(table, defaults, NOW)
    assert len(partitions) == (int(defaults[parameter]) + 2) * 24
