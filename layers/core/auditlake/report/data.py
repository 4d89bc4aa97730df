"""What the report shows, gathered over one window: ``gather`` runs the report queries
(report/queries.py) and the named queries it reuses on one engine and returns a ``ReportData``.

Both engines answer in one shape here: DuckDB returns typed values, Athena returns text
("2026-12-01 02:00:00.000", "12"); every time becomes an aware UTC datetime, every count an int.
Nothing here reads the lake except through those queries, so the page shows what ``auditlake query``
answers for the same window.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from auditlake.query import named
from auditlake.report import queries
from auditlake.timestamps import format_millis
from auditlake.trust.digest import VerifyReport

# A timeline is drawn point by point; past this many requests of one identity the page would be slow to
# open, so the first ones are drawn and the page says how many there were.
MAX_TIMELINE_POINTS = 2000


class Engine(Protocol):
    def run(self, sql: str, values: Sequence[Any] = ()) -> named.Result: ...


@dataclass(frozen=True)
class ArchiveState:
    """The sealed/unsealed state of the archive, as ``auditlake verify`` found it."""

    digests: int
    sealed_files: int
    unsealed: list[str]
    sealed_until: str | None
    head: str | None
    problems: list[str]  # "KIND key: detail", one per verify finding

    @classmethod
    def from_verify(cls, report: VerifyReport) -> ArchiveState:
        return cls(
            digests=report.digests,
            sealed_files=report.objects,
            unsealed=sorted(report.unsealed),
            sealed_until=report.sealed_until,
            head=report.head,
            problems=[f"{f.kind} {f.key}: {f.detail}" for f in report.findings],
        )


@dataclass
class Timeline:
    label: str
    rows: list[dict[str, Any]]  # the named query's rows (times as datetimes)
    total: int  # rows the query answered; ``rows`` holds at most MAX_TIMELINE_POINTS of them


@dataclass
class ReportData:
    source: str  # "lake /path" or "stack NAME": what the page is about
    since: datetime
    until: datetime
    generated_at: datetime
    cluster: str  # "" for every cluster
    bucket: str  # the activity chart's bucket: minute, hour or day
    activity: list[dict[str, Any]] = field(default_factory=list)  # bucket_start, cluster, requests, denied
    hourly: list[dict[str, Any]] = field(default_factory=list)  # activity per hour: the coverage chart
    denials: list[dict[str, Any]] = field(default_factory=list)  # minute, cluster, denied
    bursts: list[dict[str, Any]] = field(default_factory=list)  # forbidden_bursts' rows
    top_identities: list[dict[str, Any]] = field(default_factory=list)
    top_verbs: list[dict[str, Any]] = field(default_factory=list)
    top_resources: list[dict[str, Any]] = field(default_factory=list)
    top_objects: list[dict[str, Any]] = field(default_factory=list)
    identity_timelines: list[Timeline] = field(default_factory=list)
    object_timelines: list[Timeline] = field(default_factory=list)
    findings: list[dict[str, Any]] | None = None  # None: the lake could not be asked
    gaps: list[dict[str, Any]] = field(default_factory=list)  # coverage_gaps' rows
    hours_without_data: list[dict[str, Any]] = field(default_factory=list)  # cluster, start, end, hours
    archive: ArchiveState | None = None
    notes: list[str] = field(default_factory=list)


def bucket_for(since: datetime, until: datetime) -> str:
    """The activity chart's bucket: a few hundred points at most for any window."""
    span = until - since
    if span <= timedelta(hours=6):
        return "minute"
    if span <= timedelta(days=14):
        return "hour"
    return "day"


def gather(
    engine: Engine,
    *,
    source: str,
    since: datetime,
    until: datetime,
    now: datetime,
    cluster: str = "",
    top: int = 10,
    burst_threshold: int = 10,
    findings: Callable[[str, str], list[dict[str, Any]]] | None = None,
    archive: ArchiveState | None = None,
) -> ReportData:
    """Everything the page shows for [since, until) (aware datetimes). ``findings(since, until)`` returns the
    findings rows (query.findings.rows' shape) or is None when the lake has no findings to ask."""
    if since >= until:
        raise named.QueryError(f"since ({format_millis(since)}) must be before until ({format_millis(until)})")
    window = {"since": format_millis(since), "until": format_millis(until), "cluster": cluster}
    bucket = bucket_for(since, until)

    def run(query: named.NamedQuery, params: dict[str, str]) -> list[dict[str, Any]]:
        result = engine.run(query.sql, query.bind({**window, **params}, now))
        return [{k: _value(k, v) for k, v in zip(result.columns, row, strict=True)} for row in result.rows]

    def report_query(query: str, **params: str) -> list[dict[str, Any]]:
        return run(queries.load(query), params)

    def named_query(query: str, **params: str) -> list[dict[str, Any]]:
        return run(named.load(query), params)

    data = ReportData(source, since, until, now, cluster, bucket, archive=archive)
    data.activity = report_query("activity", bucket=bucket)
    data.hourly = data.activity if bucket == "hour" else report_query("activity", bucket="hour")
    data.hours_without_data = hours_without_data(data.hourly, since, min(until, now))
    data.denials = report_query("denials_per_minute")
    data.bursts = named_query("forbidden_bursts", threshold=str(burst_threshold))
    limit = {"top": str(top)}
    data.top_identities = report_query("top_identities", **limit)
    data.top_verbs = report_query("top_verbs", **limit)
    data.top_resources = report_query("top_resources", **limit)
    data.top_objects = report_query("top_objects", **limit)
    # The top identities by requests, then any identity of a burst not among them: whoever hammered the
    # API with forbidden requests is the first timeline a security engineer opens.
    identities = [str(row["identity"]) for row in data.top_identities]
    identities += sorted({str(b["identity"]) for b in data.bursts} - set(identities))
    for identity in identities:
        rows = named_query("identity_timeline", identity=identity)
        data.identity_timelines.append(Timeline(identity, rows[:MAX_TIMELINE_POINTS], len(rows)))
    for row in data.top_objects:
        ref = {"resource": str(row["resource"]), "namespace": str(row["namespace"]), "name": str(row["name"])}
        rows = named_query("object_history", **ref)
        label = "/".join(part for part in (ref["resource"], ref["namespace"], ref["name"]) if part)
        data.object_timelines.append(Timeline(label, rows[:MAX_TIMELINE_POINTS], len(rows)))
    for timeline in (*data.identity_timelines, *data.object_timelines):
        if timeline.total > len(timeline.rows):
            data.notes.append(f"timeline of {timeline.label}: the first {len(timeline.rows)} of {timeline.total}")
    data.gaps = named_query("coverage_gaps")
    if findings is not None:
        data.findings = [
            {k: _value(k, v) for k, v in row.items()} for row in findings(window["since"], window["until"])
        ]
    return data


def hours_without_data(hourly: list[dict[str, Any]], since: datetime, end: datetime) -> list[dict[str, Any]]:
    """Per cluster, the runs of whole hours in the window with no audit record, from the cluster's first
    hour with data to the last hour that ended before ``end`` (an hour still running is not a gap)."""
    seen: dict[str, set[datetime]] = {}
    for row in hourly:
        seen.setdefault(str(row["cluster"]), set()).add(row["bucket_start"])
    last = end.replace(minute=0, second=0, microsecond=0)  # hours before this one have ended
    out: list[dict[str, Any]] = []
    for cluster, hours in sorted(seen.items()):
        hour = max(min(hours), since.replace(minute=0, second=0, microsecond=0))
        run_start: datetime | None = None
        while hour < last:
            if hour not in hours and run_start is None:
                run_start = hour
            if hour in hours and run_start is not None:
                out.append(_run(cluster, run_start, hour))
                run_start = None
            hour += timedelta(hours=1)
        if run_start is not None:
            out.append(_run(cluster, run_start, last))
    return out


def _run(cluster: str, start: datetime, end: datetime) -> dict[str, Any]:
    return {"cluster": cluster, "start": start, "end": end, "hours": int((end - start) / timedelta(hours=1))}


# The answer columns that are times and counts, by name: Athena answers every cell as text, and a
# user or object name that looks like a number or a date stays text.
TIME_COLUMNS = frozenset(
    {
        "bucket_start",
        "minute",
        "first_seen",
        "last_seen",
        "at",
        "threshold_reached_at",
        "first_denied",
        "last_denied",
        "gap_from",
        "gap_to",
        "recorded_at",
        "ingested_at",
    }
)
COUNT_COLUMNS = frozenset(
    {
        "requests",
        "denied",
        "clusters",
        "changes",
        "identities",
        "place",
        "max_per_minute",
        "denied_in_range",
        "response_code",
        "code",
    }
)


def _value(column: str, value: Any) -> Any:
    """One answer cell in one shape: times aware UTC datetimes, counts ints, the rest as it came."""
    if value is None or value == "":
        return None if column in TIME_COLUMNS | COUNT_COLUMNS else value
    if column in TIME_COLUMNS:
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if column in COUNT_COLUMNS:
        return int(value)
    return value
