"""Every named query returns exactly the rows of its window [since, until): none outside it, none
missed at its edges (exactly at since, just before until, the last hour of a day, across midnight
UTC), with since/until written in UTC or with an offset. Windows are built relative to now.

Two levels: each query's window predicates (partition and time columns) evaluated by DuckDB over
every edge instant, filed under the (dt, hour) the compactor gives it; and, end to end, queries
run by the local engine over an archive the compactor wrote. The SQL runs on DuckDB through
sqlglot: the transpiled query must keep the order of its ``?`` placeholders."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import duckdb
import pytest
import sqlglot
from sqlglot import exp

from auditlake.archive.compactor import Compactor
from auditlake.archive.locks import LocalLocks
from auditlake.audit.pipeline import AuditPipeline, PipelineConfig
from auditlake.events.files import ingest_events
from auditlake.events.poller import gap_record
from auditlake.ingest.files import FileIngest
from auditlake.jsonio import dumps
from auditlake.landing import Landing
from auditlake.query import named as query
from auditlake.stores.local import LocalStore
from auditlake.timestamps import format_millis, format_utc
from tests.helpers import corpus_kube_events, forbidden_events
from tests.partitions import columns, literal_sql, scans

_now = datetime.now(UTC)
NOW = _now.replace(microsecond=_now.microsecond // 1000 * 1000)  # the archive keeps milliseconds
MIDNIGHT = NOW.replace(hour=0, minute=0, second=0, microsecond=0)  # today's, UTC
MS = timedelta(milliseconds=1)
REQUIRED = {"principal": "alice", "identity": "alice", "resource": "pods", "namespace": "prod", "name": "x"}
TIME_COLUMNS = frozenset({"request_received_at", "event_time", "first_timestamp", "last_timestamp"})


def _written(moment: datetime, hours: float) -> str:
    """``moment`` written in another zone, as someone typing a parameter in the Athena console might."""
    return moment.astimezone(timezone(timedelta(hours=hours))).isoformat(timespec="milliseconds")


# name -> (since, until) as given, and the instants they stand for
WINDOWS: dict[str, tuple[str, str, datetime, datetime]] = {}


def _window(name: str, since: datetime, until: datetime, *, given: tuple[str, str] | None = None) -> None:
    written = given or (format_utc(since), format_utc(until))
    WINDOWS[name] = (*written, since, until)


_window("the default last 24 hours", NOW - timedelta(hours=24), NOW)
_window("across midnight", MIDNIGHT - timedelta(minutes=90), MIDNIGHT + timedelta(minutes=75))
_window("ending at midnight", MIDNIGHT - timedelta(hours=1), MIDNIGHT)
_window("inside one hour", MIDNIGHT - timedelta(days=2) + timedelta(hours=10, minutes=15, milliseconds=500),
        MIDNIGHT - timedelta(days=2) + timedelta(hours=10, minutes=45))  # fmt: skip
_window("three days", MIDNIGHT - timedelta(days=3, minutes=1), MIDNIGHT - timedelta(hours=1))
since, until = MIDNIGHT - timedelta(minutes=30), MIDNIGHT + timedelta(minutes=30)
_window("with UTC offsets", since, until, given=(_written(since, 5.5), _written(until, -8)))


def _edges(since: datetime, until: datetime) -> list[datetime]:
    """Instants on and around the window's edges and every hour boundary near it."""
    out = {since + d for d in (-MS, timedelta(0), MS)} | {until + d for d in (-MS, timedelta(0), MS)}
    hour = since.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    while hour <= until + timedelta(hours=1):
        out |= {hour - MS, hour, hour + MS}
        hour += timedelta(hours=1)
    return sorted(out)


def _values(named: query.NamedQuery, since: str, until: str) -> list[Any]:
    """The placeholders' values with since/until exactly as written (bind would rewrite them in UTC)."""
    given: dict[str, Any] = {"since": since, "until": until, "cluster": ""}
    for name, default in named.params.items():
        value = REQUIRED[name] if default is None else default
        given[name] = int(value) if value.isdigit() else value
    return [given[name] for name in named.placeholders]


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("name", query.names())
def test_the_window_predicates_select_exactly_the_window(name: str, window: str) -> None:
    given_since, given_until, since, until = WINDOWS[window]
    named = query.load(name)
    sql = literal_sql(named.sql, _values(named, given_since, given_until))
    instants = _edges(since, until)
    connection = duckdb.connect()
    connection.execute("SET TimeZone = 'UTC'")
    # Each instant filed as the compactor files it: dt and hour of its UTC time.
    connection.execute(
        "CREATE TABLE rows AS SELECT unnest(?::TIMESTAMP[]) AS t, unnest(?::VARCHAR[]) AS dt, "
        "unnest(?::INTEGER[]) AS hour",
        [[i.replace(tzinfo=None) for i in instants], [i.date().isoformat() for i in instants],
         [i.hour for i in instants]],
    )  # fmt: skip
    for scan in scans(sql):
        window_part = [c for c in scan.conjuncts if columns(c) and columns(c) <= TIME_COLUMNS | {"dt", "hour"}]
        assert any(columns(c) & TIME_COLUMNS for c in window_part), f"{name} does not filter its time column"
        where = " AND ".join(f"({c.sql(dialect='duckdb')})" for c in window_part)
        # A point in time as every time column of a row (a coverage gap of no length for coverage_gaps).
        selected = connection.execute(
            f"SELECT t FROM (SELECT *, t AS request_received_at, t AS event_time, t AS first_timestamp, "
            f"t AS last_timestamp FROM rows) WHERE {where} ORDER BY t"
        ).fetchall()
        expected = [i.replace(tzinfo=None) for i in instants if since <= i < until]
        assert [row[0] for row in selected] == expected, (name, scan.table, window)


_COMPARISONS = (exp.EQ, exp.GT, exp.GTE, exp.LT, exp.LTE)
# What each column must be compared with: its own type, so that no column is cast per row and the
# engine can compare it with Parquet row-group statistics (Athena) and partition values (projection).
_LIKE = {
    "timestamp column": lambda other: isinstance(other, exp.Cast) and other.to.this == exp.DataType.Type.TIMESTAMP,
    "hour": lambda other: isinstance(other, exp.Cast) and other.to.this == exp.DataType.Type.INT,
    "dt": lambda other: isinstance(other, exp.TimeToStr),  # date_format(..., '%Y-%m-%d'): varchar
}


@pytest.mark.parametrize("name", query.names())
def test_columns_are_compared_like_with_like(name: str) -> None:
    """``request_received_at >= from_iso8601_timestamp(?)`` compared a timestamp with a timestamp
    with time zone: Trino then casts the column. Every bound is now a plain UTC timestamp, an
    integer hour or a yyyy-MM-dd string (DuckDB compares either form alike, so this is read from
    the SQL)."""
    pairs: list[tuple[str, exp.Expression]] = []
    for scan in scans(query.load(name).sql):
        for conjunct in scan.conjuncts:
            for node in conjunct.find_all(*_COMPARISONS, exp.Between):
                sides = [node.this, node.args["low"], node.args["high"]] if isinstance(node, exp.Between) else [
                    node.this, node.expression]  # fmt: skip
                column, *others = sides
                if not isinstance(column, exp.Column):
                    continue
                kind = "timestamp column" if column.name in TIME_COLUMNS else column.name
                pairs += [(kind, other) for other in others] if kind in _LIKE else []
    assert {kind for kind, _ in pairs} == set(_LIKE)
    for kind, other in pairs:
        assert _LIKE[kind](other), f"{name}: {kind} compared with {other.sql(dialect='trino')}"


@pytest.mark.parametrize("name", query.names())
def test_duckdb_binds_the_placeholders_in_the_files_order(name: str) -> None:
    """sqlglot may move arguments when it transpiles (date_add becomes ``x + INTERVAL (n) DAY``):
    the query with its values bound must be the query with those values written in."""
    named = query.load(name)
    values = [f"value-{n}" if isinstance(v, str) else v for n, v in enumerate(_values(named, "s", "u"))]
    bound = sqlglot.transpile(named.sql, read="trino", write="duckdb")[0]
    written = sqlglot.transpile(literal_sql(named.sql, values), read="trino", write="duckdb")[0]
    assert literal_sql(bound, values) == written


# ---------------------------------------------------------------- end to end on a compacted archive

CLUSTER = "edge"


def _node_event(at: datetime, n: int) -> dict[str, Any]:
    """A real corpus Event, turned into a node becoming ready at ``at``."""
    event = json.loads(json.dumps(corpus_kube_events()[0]))
    event["metadata"] = {**event["metadata"], "uid": f"node-ready-{n}", "name": f"node-{n}.ready",
                         "resourceVersion": str(1000 + n)}  # fmt: skip
    event["involvedObject"] = {"kind": "Node", "name": f"node-{n}", "uid": f"node-{n}"}
    event.pop("series", None)
    event.pop("eventTime", None)
    event["reason"] = "NodeReady"
    event["firstTimestamp"] = event["lastTimestamp"] = format_utc(at)
    return event


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[query.LocalEngine, list[datetime]]]:
    """Audit records and node Events at every edge instant of every window; coverage gaps."""
    lake = tmp_path_factory.mktemp("lake")
    store = LocalStore(lake)
    instants = sorted({i for _, _, since, until in WINDOWS.values() for i in _edges(since, until)})
    audit = lake.parent / "audit.jsonl"
    events = [e for n, at in enumerate(instants) for e in forbidden_events(1, start=at, first=n)]
    audit.write_bytes(b"".join(dumps(e) + b"\n" for e in events))
    FileIngest(AuditPipeline(PipelineConfig()), Landing(store), CLUSTER).jsonl(audit)
    nodes = lake.parent / "nodes.json"
    nodes.write_text(json.dumps({"kind": "EventList", "apiVersion": "v1", "metadata": {},
                                 "items": [_node_event(at, n) for n, at in enumerate(instants)]}))  # fmt: skip
    assert ingest_events(nodes, Landing(store, "events"), CLUSTER).accepted == len(instants)
    since, until = WINDOWS["across midnight"][2:]
    gaps = [gap_record(CLUSTER, start, end, reason, format_utc(NOW)) for start, end, reason in _gaps(since, until)]
    Landing(store, "events").write_raw(CLUSTER, NOW, "gaps", [dumps(g) for g in gaps])
    report = Compactor(store, {"audit": LocalStore(lake / "archive"), "events": LocalStore(lake / "archive")},
                       LocalLocks(lake / "locks")).compact(list(store.list("raw/")))  # fmt: skip
    assert not report.failed and not report.quarantined
    yield query.LocalEngine(lake / "archive"), instants


def _gaps(since: datetime, until: datetime) -> list[tuple[datetime, datetime, str]]:
    """Coverage gaps around a window, each named for whether coverage_gaps must report it."""
    return [
        (since - timedelta(days=89), since + timedelta(hours=1), "in: started 89 days before since"),
        (since - timedelta(days=91), since + timedelta(hours=2), "out: started beyond lookback_days"),
        (since - timedelta(hours=2), since - MS, "out: ended just before since"),
        (since - timedelta(hours=3), since, "in: ended at since"),
        (MIDNIGHT - MS, MIDNIGHT + timedelta(minutes=10), "in: started in the last hour of a day"),
        (until - MS, until + timedelta(hours=1), "in: started just before until"),
        (until, until + timedelta(hours=1), "out: started at until"),
    ]


def _run(engine: query.LocalEngine, name: str, window: str, **params: str) -> list[dict[str, Any]]:
    given_since, given_until, _, _ = WINDOWS[window]
    named = query.load(name)
    result = engine.run(named.sql, named.bind({"since": given_since, "until": given_until, **params}, now=NOW))
    return [dict(zip(result.columns, row, strict=True)) for row in result.rows]


@pytest.mark.parametrize("window", WINDOWS)
def test_audit_and_events_queries_return_their_window_end_to_end(
    archive: tuple[query.LocalEngine, list[datetime]], window: str
) -> None:
    engine, instants = archive
    since, until = WINDOWS[window][2:]
    expected = [i.replace(tzinfo=None) for i in instants if since <= i < until]
    assert expected, "a window with no edge rows proves nothing"
    reads = _run(engine, "secret_reads", window, cluster=CLUSTER)
    assert [r["at"] for r in reads] == expected
    timeline = _run(engine, "identity_timeline", window, identity="mallory@example.com")
    assert [r["at"] for r in timeline] == expected
    nodes = _run(engine, "node_membership", window)
    assert [r["at"] for r in nodes] == expected and {r["what"] for r in nodes} == {"NodeReady"}


def test_coverage_gaps_finds_gaps_that_overlap_the_window(archive: tuple[query.LocalEngine, list[datetime]]) -> None:
    engine, _ = archive
    since, until = WINDOWS["across midnight"][2:]
    found = {r["reason"] for r in _run(engine, "coverage_gaps", "across midnight")}
    assert found == {reason for _, _, reason in _gaps(since, until) if reason.startswith("in:")}
    wider = {r["reason"] for r in _run(engine, "coverage_gaps", "across midnight", lookback_days="100")}
    assert wider == found | {"out: started beyond lookback_days"}


def test_the_default_window_is_the_last_24_hours(archive: tuple[query.LocalEngine, list[datetime]]) -> None:
    engine, instants = archive
    named = query.load("secret_reads")
    rows = engine.run(named.sql, named.bind({}, now=NOW)).rows
    assert [r[0] for r in rows] == [i.replace(tzinfo=None) for i in instants if NOW - timedelta(hours=24) <= i < NOW]
    assert format_millis(NOW - timedelta(hours=24)) in named.bind({}, now=NOW)
