"""The same rules over history: an ``ir.Rule`` (or ``ir.Correlation``) compiled to SQL over the
archive table of its logsource (``audit`` or ``events``), run on Athena or, locally, on DuckDB.

The SQL is built as sqlglot expressions, never by splicing text: every value a rule carries is a
sqlglot literal (quotes doubled by the generator). It is written in Athena's dialect (Trino) and
reaches DuckDB through ``LocalEngine.run``, the transpilation every named query takes.

What a hunt row is: a finding (``model.FINDING_COLUMNS``) the ingest engine would have written for
that event, with ``details`` = ``{"fields": {sigma field: value}}`` for the fields whose tests held
(built here from per-field flag columns, not in SQL). One row per event: the archive keeps every
stage of a request, the ingest engine evaluates ResponseStarted, ResponseComplete and Panic (never
RequestReceived) and the findings archive keeps one finding per (cluster, rule_id, audit_id), the
first ingested; the SQL keeps the same one (``row_number`` over the event's stages by
``ingested_at``). Kubernetes Events: one row per Event uid (``audit_id`` holds it, as in findings).

Semantics equal to the ingest engine's (``detect/ir.py``), leaf by leaf:
- ``glob``: ``LIKE`` with ``\\`` escaping ``%``, ``_`` and ``\\`` (no wildcard: ``=``); not cased:
  ``lower()`` on both sides (SQL ``lower`` is Unicode lower-casing; Python's ``casefold`` differs
  only on a few characters such as ``ß``). A non-string column is compared as its text.
- ``re``: ``regexp_like`` (DuckDB: ``regexp_matches``), a search; not cased: ``(?i)`` prepended.
- ``cidr``: IPv4 only, as a range test on the address's 32-bit value (the string must be a dotted
  quad without leading zeros, as Python's ``ipaddress`` requires). DuckDB has no IP type without
  its ``inet`` extension, so an IPv6 network is not expressible on both engines: such a rule is
  reported ingest-only.
- ``num``: numeric comparison; a string column is ``try_cast`` to double (numeric strings match).
- ``bool``: ``lower(text) = 'true'``/``'false'`` (the archive has no boolean columns).
- ``null`` / ``exists``: ``IS NULL`` / ``IS NOT NULL``.
- An array column (``user.groups``, ``sourceIPs``, ...) matches when any element does
  (``cardinality(filter(...)) > 0``).
- Every leaf is ``coalesce(test, false)``: SQL's NULL would otherwise turn ``NOT (x = 'a')`` on an
  absent field into "no match", where the ingest engine says match.

What hunt cannot see, and says so (``Hunt.ingest_only``), never skipping silently: a field the
archive has no column for (request and response bodies are stored redacted, if at all), a keyword
search (``field`` None: any string of the event, bodies included), an IPv6 CIDR, and a correlation
over such a rule or grouping by such a field. Two differences a hunt cannot remove: the archive
holds what the pipeline policy kept (an event the policy dropped was matched at ingest, not here),
and ``responseStatus.message`` is stored redacted.

Correlation rules count their base rules' matches per ``group_by`` values in fixed windows of
``timespan`` aligned to the Unix epoch (``floor(to_unixtime(at) / span)``), each event once
(``count(DISTINCT audit_id)``; ``value_count``: distinct values of its field). The ingest path
counts in sliding windows, so a burst straddling a window boundary can fire there and not here.

Each rule is one query (its SQL is shown by ``--show-sql`` and fails alone); ``run_hunts`` runs a
few at a time so a stack's Athena works on several concurrently.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlglot import exp

from auditlake import timestamps
from auditlake.detect import ir
from auditlake.model import AUDIT_COLUMNS, EVENT_COLUMNS, FINDING_COLUMN_NAMES

# Sigma field (as a rule names it, after the processing pipeline) -> archive column, per logsource.
# ``level`` is the level the event arrived with (``received_level``): the ingest engine sees the
# event before the pipeline policy, which may lower the stored ``level``.
FIELD_COLUMNS: Mapping[str, Mapping[str, str]] = {
    "audit": {
        "auditID": "audit_id",
        "verb": "verb",
        "requestURI": "request_uri",
        "userAgent": "user_agent",
        "user.username": "user_name",
        "user.uid": "user_uid",
        "user.groups": "user_groups",
        "impersonatedUser.username": "impersonated_user_name",
        "impersonatedUser.uid": "impersonated_user_uid",
        "impersonatedUser.groups": "impersonated_user_groups",
        "sourceIPs": "source_ips",
        "objectRef.resource": "object_resource",
        "objectRef.subresource": "object_subresource",
        "objectRef.namespace": "object_namespace",
        "objectRef.name": "object_name",
        "objectRef.apiGroup": "object_api_group",
        "objectRef.apiVersion": "object_api_version",
        "objectRef.uid": "object_uid",
        "objectRef.resourceVersion": "object_resource_version",
        "responseStatus.code": "response_code",
        "responseStatus.reason": "response_reason",
        "responseStatus.status": "response_status",
        "responseStatus.message": "response_message",
        "stage": "stage",
        "level": "received_level",
        'annotations."authorization.k8s.io/decision"': "authz_decision",
        "annotations.authorization.k8s.io/decision": "authz_decision",
        'annotations."authorization.k8s.io/reason"': "authz_reason",
        "annotations.authorization.k8s.io/reason": "authz_reason",
    },
    "events": {
        "reason": "reason",
        "type": "type",
        "note": "note",
        "action": "action",
        "regarding.kind": "regarding_kind",
        "regarding.namespace": "regarding_namespace",
        "regarding.name": "regarding_name",
        "regarding.uid": "regarding_uid",
        "reportingController": "reporting_controller",
        "reportingInstance": "reporting_instance",
    },
}
BODY_PREFIXES = ("requestObject", "responseObject")
_TYPES = {"audit": dict(AUDIT_COLUMNS), "events": dict(EVENT_COLUMNS)}


@dataclass(frozen=True)
class Source:
    """One logsource's table and how its rows become findings (expressions over its columns)."""

    table: str | exp.Expr  # the archive table, or a SELECT over it (aliased as the table)
    time: str  # the partitioning time column
    event: str  # one event: dedupe key beside cluster
    first: str  # among an event's rows, the first ingested
    tiebreak: str  # then this (rows ingested together)
    finding: Mapping[str, exp.Expr]


def _col(name: str) -> exp.Column:
    return exp.column(name)


def _events_as_ingest_sees_them() -> exp.Expr:
    """The events table with the reporting fields the ingest engine evaluates (detect/engine.py): a
    core/v1 Event's ``source.component`` and ``source.host`` (kept in ``extra``) stand for
    ``reportingController`` and ``reportingInstance`` when it has none of its own, so a hunt over
    history matches (and names as identity) what ingest would have."""
    reporting = {
        "reporting_controller": "$.source.component",
        "reporting_instance": "$.source.host",
    }
    picked = [
        exp.alias_(
            exp.func(
                "coalesce",
                exp.func("nullif", _col(name), exp.Literal.string("")),
                exp.func("json_extract_scalar", _col("extra"), exp.Literal.string(reporting[name])),
            ),
            name,
        )
        if name in reporting
        else _col(name)
        for name, _ in EVENT_COLUMNS
    ]
    return exp.select(*picked, _col("dt"), _col("hour")).from_("events").subquery("events")


SOURCES: Mapping[str, Source] = {
    "audit": Source(
        "audit",
        "request_received_at",
        "audit_id",
        "ingested_at",
        "stage_at",
        {
            "cluster": _col("cluster"),
            "audit_id": _col("audit_id"),
            "at": _col("request_received_at"),
            "identity": _col("user_name"),
            "verb": _col("verb"),
            # resource[/subresource], as the ingest engine writes it
            "resource": exp.func(
                "concat",
                _col("object_resource"),
                exp.func(
                    "coalesce",
                    exp.func("concat", exp.Literal.string("/"), _col("object_subresource")),
                    exp.Literal.string(""),
                ),
            ),
            "namespace": _col("object_namespace"),
            "name": _col("object_name"),
            "source_ips": _col("source_ips"),
            "user_agent": _col("user_agent"),
            "ingested_at": _col("ingested_at"),
        },
    ),
    "events": Source(
        _events_as_ingest_sees_them(),
        "event_time",
        "uid",
        "observed_at",
        "resource_version",
        {
            "cluster": _col("cluster"),
            "audit_id": _col("uid"),
            "at": _col("event_time"),
            "identity": _col("reporting_controller"),
            "verb": exp.null(),
            "resource": _col("regarding_kind"),
            "namespace": exp.func("coalesce", _col("regarding_namespace"), _col("namespace")),
            "name": _col("regarding_name"),
            "source_ips": exp.null(),
            "user_agent": exp.null(),
            "ingested_at": _col("observed_at"),
        },
    ),
}


@dataclass(frozen=True)
class Window:
    """What to hunt over: ``since`` <= the event's time < ``until`` (aware datetimes), a cluster or all."""

    since: datetime
    until: datetime
    cluster: str | None = None


@dataclass(frozen=True)
class Hunt:
    """One rule compiled: ``query`` (None when ingest-only) and why not (``ingest_only``: the fields
    or constructs the archive cannot answer). ``fields``: the Sigma fields whose flag/value columns
    ``_m<i>``/``_v<i>`` the query selects, for ``details``; ``correlation``: its group-by fields."""

    rule_id: str
    title: str
    level: str
    logsource: str
    query: exp.Select | None
    ingest_only: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()
    correlation: tuple[str, ...] | None = None

    def sql(self, dialect: str = "trino") -> str:
        if self.query is None:
            raise ValueError(f"{self.rule_id} is ingest-only")
        return self.query.sql(dialect=dialect, pretty=True)

    @property
    def reason(self) -> str:
        """The one-line "ingest-only: ..." a person reads."""
        bodies = any(item.split(".")[0] in BODY_PREFIXES for item in self.ingest_only)
        why = "bodies are not archived" if bodies else "not in the archive's columns"
        return f"ingest-only: needs {', '.join(self.ingest_only)} ({why})"


class Engine(Protocol):
    def run(self, sql: str, values: Sequence[Any] = ()) -> Any: ...


@dataclass
class Outcome:
    """A hunt's result: finding-shaped rows (dicts, ``FINDING_COLUMN_NAMES``), ``total`` matches
    (rows may stop at the limit), or ``error`` (the engine's message)."""

    hunt: Hunt
    rows: list[dict[str, Any]] = field(default_factory=list)
    total: int = 0
    error: str | None = None


# ---------------------------------------------------------------- conditions


class _IngestOnly(Exception):
    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class _Compiler:
    """One rule's leaves -> SQL predicates; collects what it cannot express instead of stopping at
    the first, so the report names every field that made the rule ingest-only."""

    def __init__(self, logsource: str) -> None:
        self.columns = FIELD_COLUMNS[logsource]
        self.types = _TYPES[logsource]
        self.missing: list[str] = []
        self.positive: dict[str, list[exp.Expr]] = {}  # field -> its tests outside any Not

    def node(self, node: ir.Node, negated: bool = False) -> exp.Expr:
        if isinstance(node, ir.All):
            return _fold(exp.and_, [self.node(part, negated) for part in node.parts], exp.true())
        if isinstance(node, ir.AnyOf):
            return _fold(exp.or_, [self.node(part, negated) for part in node.parts], exp.false())
        if isinstance(node, ir.Not):
            return exp.not_(self.node(node.part, not negated))
        try:
            test = self.leaf(node)
        except _IngestOnly as exc:
            if exc.what not in self.missing:
                self.missing.append(exc.what)
            return exp.false()
        if not negated and node.field is not None:
            self.positive.setdefault(node.field, []).append(test)
        return test

    def column(self, name: str | None) -> tuple[str, str]:
        if name is None:
            raise _IngestOnly("a keyword search (any field, bodies included)")
        column = self.columns.get(name)
        if column is None:
            raise _IngestOnly(name)
        return column, self.types[column]

    def leaf(self, leaf: ir.Leaf) -> exp.Expr:
        column, kind = self.column(leaf.field)
        if leaf.op == "null" or (leaf.op == "exists" and not leaf.value):
            return exp.Is(this=_col(column), expression=exp.null())
        if leaf.op == "exists":
            return exp.not_(exp.Is(this=_col(column), expression=exp.null()))
        scalar = kind.removeprefix("list<").removesuffix(">")
        test = _scalar_test(leaf, scalar)
        if kind.startswith("list<"):
            element = exp.to_identifier("x")
            kept = exp.func("filter", _col(column), exp.Lambda(this=test(exp.column(element)), expressions=[element]))
            predicate: exp.Expr = exp.GT(this=exp.func("cardinality", kept), expression=exp.Literal.number(0))
        else:
            predicate = test(_col(column))
        return exp.func("coalesce", exp.paren(predicate, copy=False), exp.false())


def _fold(join: Callable[..., exp.Expr], parts: list[exp.Expr], empty: exp.Expr) -> exp.Expr:
    return exp.paren(join(*parts), copy=False) if parts else empty


def _scalar_test(leaf: ir.Leaf, kind: str) -> Callable[[exp.Expr], exp.Expr]:
    """The test of one value (a column, or an array element), as a function of it."""
    if leaf.op == "glob":
        return _glob(leaf.value, leaf.cased, kind)
    if leaf.op == "re":
        pattern = leaf.value if leaf.cased else f"(?i){leaf.value}"
        return lambda v: exp.RegexpLike(this=_text(v, kind), expression=exp.Literal.string(pattern))
    if leaf.op == "cidr":
        return _cidr(str(leaf.value))
    if leaf.op == "num":
        comparison, number = leaf.value
        operator = {"eq": exp.EQ, "lt": exp.LT, "lte": exp.LTE, "gt": exp.GT, "gte": exp.GTE}[comparison]
        literal = exp.Literal.number(number)
        if kind == "int32":
            return lambda v: operator(this=v, expression=literal)
        return lambda v: operator(this=exp.TryCast(this=v, to=exp.DataType.build("double")), expression=literal)
    if leaf.op == "bool":
        word = exp.Literal.string("true" if leaf.value else "false")
        return lambda v: exp.EQ(this=exp.Lower(this=_text(v, kind)), expression=word)
    raise _IngestOnly(f"{leaf.field} ({leaf.op})")


def _text(value: exp.Expr, kind: str) -> exp.Expr:
    return value if kind in ("string", "json") else exp.cast(value, "varchar")


def _glob(parts: Sequence[str | int], cased: bool, kind: str) -> Callable[[exp.Expr], exp.Expr]:
    def text(part: str) -> str:
        return part if cased else part.lower()

    def side(value: exp.Expr) -> exp.Expr:
        value = _text(value, kind)
        return value if cased else exp.Lower(this=value)

    if all(isinstance(part, str) for part in parts):  # no wildcard: equality
        literal = exp.Literal.string("".join(text(str(part)) for part in parts))
        return lambda v: exp.EQ(this=side(v), expression=literal)
    pattern = "".join(
        text(part).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        if isinstance(part, str)
        else "%"
        if part == ir.STAR
        else "_"
        for part in parts
    )
    return lambda v: exp.Escape(
        this=exp.Like(this=side(v), expression=exp.Literal.string(pattern)), expression=exp.Literal.string("\\")
    )


_OCTET = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_DOTTED_QUAD = rf"^{_OCTET}(\.{_OCTET}){{3}}$"


def _cidr(value: str) -> Callable[[exp.Expr], exp.Expr]:
    try:
        network = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise _IngestOnly(f"cidr {value!r} (not a network)") from None
    if network.version != 4:
        raise _IngestOnly(f"cidr {value} (IPv6: not expressible on DuckDB)")
    low, high = int(network.network_address), int(network.broadcast_address)

    def test(v: exp.Expr) -> exp.Expr:
        octets = [
            exp.TryCast(this=exp.func("split_part", v, exp.Literal.string("."), exp.Literal.number(i)),
                        to=exp.DataType.build("bigint"))
            for i in (1, 2, 3, 4)
        ]  # fmt: skip
        number: exp.Expr = octets[3]
        for shift, octet in zip((8, 16, 24), reversed(octets[:3]), strict=True):
            number = exp.Add(this=number, expression=exp.Mul(this=octet, expression=exp.Literal.number(1 << shift)))
        return exp.and_(
            exp.RegexpLike(this=v, expression=exp.Literal.string(_DOTTED_QUAD)),
            exp.Between(this=number, low=exp.Literal.number(low), high=exp.Literal.number(high)),
        )

    return test


# ---------------------------------------------------------------- queries


def _window(source: Source, window: Window) -> list[exp.Expr]:
    """Partition pruning the way the named queries bound since/until (dt, then hour at the edges),
    then the exact time bounds and the cluster."""
    since, until = window.since.astimezone(UTC), window.until.astimezone(UTC)
    dt, hour, time = _col("dt"), _col("hour"), _col(source.time)
    first, last = exp.Literal.string(since.strftime("%Y-%m-%d")), exp.Literal.string(until.strftime("%Y-%m-%d"))
    conditions: list[exp.Expr] = [
        exp.Between(this=dt, low=first, high=last),
        exp.or_(exp.GT(this=dt, expression=first), exp.GTE(this=hour, expression=exp.Literal.number(since.hour))),
        exp.or_(exp.LT(this=dt, expression=last), exp.LTE(this=hour, expression=exp.Literal.number(until.hour))),
        exp.GTE(this=time, expression=_timestamp(since)),
        exp.LT(this=time, expression=_timestamp(until)),
    ]
    if window.cluster:
        conditions.append(exp.EQ(this=_col("cluster"), expression=exp.Literal.string(window.cluster)))
    return conditions


def _timestamp(moment: datetime) -> exp.Expr:
    # Milliseconds: the precision Athena's timestamp literal takes on every engine version.
    text = timestamps.format_millis(moment)[:-1].replace("T", " ")
    return exp.cast(exp.Literal.string(text), "timestamp")


def _matches(rule: ir.Rule, window: Window) -> tuple[exp.Select | None, list[str], list[str]]:
    """The deduplicated matching events of ``rule`` (one row per event, the first ingested stage),
    every column of the table plus ``_m<i>`` flags for its positive fields; or the reasons not."""
    compiler = _Compiler(rule.logsource)
    condition = compiler.node(rule.condition)
    if compiler.missing:
        return None, compiler.missing, []
    source = SOURCES[rule.logsource]
    fields = list(compiler.positive)
    flags = [
        exp.alias_(_fold(exp.or_, compiler.positive[name], exp.false()), f"_m{i}") for i, name in enumerate(fields)
    ]
    first = exp.Window(
        this=exp.RowNumber(),
        partition_by=[_col("cluster"), _col(source.event)],
        order=exp.Order(expressions=[exp.Ordered(this=_col(source.first)), exp.Ordered(this=_col(source.tiebreak))]),
    )
    where = [*_window(source, window), condition]
    if rule.logsource == "audit":  # the stages the ingest engine evaluates
        where.append(
            exp.func(
                "coalesce",
                exp.paren(exp.NEQ(this=_col("stage"), expression=exp.Literal.string("RequestReceived"))),
                exp.true(),
            )
        )
    inner = exp.select(exp.Star(), *flags, exp.alias_(first, "_first")).from_(source.table).where(exp.and_(*where))
    return exp.select(exp.Star()).from_(inner.subquery("m")).where("_first = 1"), [], fields


def compile_rule(rule: ir.Rule, window: Window, *, limit: int | None = None) -> Hunt:
    """``rule`` as a query returning finding-shaped rows (``FINDING_COLUMN_NAMES``, then ``total``,
    then ``_m<i>``/``_v<i>`` per matched field), ordered by time; ``limit`` caps the rows, not ``total``."""
    matches, missing, fields = _matches(rule, window)
    if matches is None:
        return Hunt(rule.id, rule.title, rule.level, rule.logsource, None, tuple(missing))
    source = SOURCES[rule.logsource]
    literals = {"rule_id": rule.id, "title": rule.title, "level": rule.level}
    columns: list[exp.Expr] = []
    for name in FINDING_COLUMN_NAMES:
        if name in literals:
            columns.append(exp.alias_(exp.Literal.string(literals[name]), name))
        elif name == "details":
            columns.append(exp.alias_(exp.cast(exp.null(), "varchar"), name))
        else:
            columns.append(exp.alias_(source.finding[name], name))
    columns.append(exp.alias_(exp.Window(this=exp.Count(this=exp.Star())), "total"))
    mapping = FIELD_COLUMNS[rule.logsource]
    for i, name in enumerate(fields):
        columns += [exp.alias_(_col(f"_m{i}"), f"_m{i}"), exp.alias_(_col(mapping[name]), f"_v{i}")]
    query = exp.select(*columns).from_(matches.subquery("e")).order_by("at", "audit_id")
    if limit is not None:
        query = query.limit(limit)
    return Hunt(rule.id, rule.title, rule.level, rule.logsource, query, (), tuple(fields))


def compile_correlation(
    correlation: ir.Correlation, rules: Iterable[ir.Rule], window: Window, *, limit: int | None = None
) -> Hunt:
    """A correlation over its base rules' matches, counted per group in epoch-aligned windows of its
    timespan; a row per (cluster, group, window) whose count passes the condition."""
    known = {key: rule for rule in rules for key in (rule.id, rule.name) if key}
    bases = [known.get(ref) for ref in correlation.rules]
    missing = [f"rule {ref} (not loaded)" for ref, base in zip(correlation.rules, bases, strict=True) if base is None]
    logsources = {base.logsource for base in bases if base is not None}
    logsource = next(iter(logsources)) if len(logsources) == 1 else "audit"
    if len(logsources) > 1:
        missing.append("base rules over both audit and events")
    counted = [*correlation.group_by, *([correlation.field] if correlation.field else [])]
    missing += [name for name in counted if name not in FIELD_COLUMNS[logsource]]
    selects: list[exp.Select] = []
    for base in bases:
        if base is None:
            continue
        matches, base_missing, _ = _matches(base, window)
        missing += [f"{what} (in {base.id})" for what in base_missing]
        if matches is not None and not missing:
            selects.append(matches)
    if missing:
        return Hunt(correlation.id, correlation.title, correlation.level, logsource, None, tuple(missing))
    source = SOURCES[logsource]
    mapping, types = FIELD_COLUMNS[logsource], _TYPES[logsource]

    def value(name: str) -> exp.Expr:
        column = _col(mapping[name])  # a list counts as its elements joined by "," (Match.fields)
        if types[mapping[name]].startswith("list<"):
            return exp.func("array_join", column, exp.Literal.string(","))
        return _text(column, types[mapping[name]])

    picked = [
        exp.select(
            _col("cluster"), exp.alias_(_col(source.event), "event"), exp.alias_(_col(source.time), "at"),
            exp.alias_(_col(source.first), "ingested_at"),
            *(exp.alias_(value(name), f"_g{i}") for i, name in enumerate(correlation.group_by)),
            exp.alias_(value(correlation.field) if correlation.field else exp.null(), "_value"),
        ).from_(select.subquery(f"b{n}"))
        for n, select in enumerate(selects)
    ]  # fmt: skip
    union: exp.Query = picked[0]
    for more in picked[1:]:
        union = exp.union(union, more, distinct=False)
    span = correlation.timespan_seconds
    bucket = exp.func("floor", exp.Div(this=exp.func("to_unixtime", _col("at")), expression=exp.Literal.number(span)))
    groups = [_col(f"_g{i}") for i in range(len(correlation.group_by))]
    if correlation.type == "value_count":
        count: exp.Expr = exp.Count(this=exp.Distinct(expressions=[_col("_value")]))
    else:
        count = exp.Count(this=exp.Distinct(expressions=[_col("event")]))
    comparison, threshold = correlation.condition
    operator = {"eq": exp.EQ, "lt": exp.LT, "lte": exp.LTE, "gt": exp.GT, "gte": exp.GTE}[comparison]
    # The identity column when the correlation groups by user (every row of a group has it).
    identity: exp.Expr = exp.null()
    if "user.username" in correlation.group_by:
        identity = exp.Max(this=_col(f"_g{correlation.group_by.index('user.username')}"))
    columns: dict[str, exp.Expr] = {
        "rule_id": exp.Literal.string(correlation.id),
        "title": exp.Literal.string(correlation.title),
        "level": exp.Literal.string(correlation.level),
        "cluster": _col("cluster"),
        "audit_id": exp.func("min_by", _col("event"), _col("at")),
        "at": exp.Min(this=_col("at")),
        "identity": identity,
        "verb": exp.null(),
        "resource": exp.null(),
        "namespace": exp.null(),
        "name": exp.null(),
        "source_ips": exp.null(),
        "user_agent": exp.null(),
        "details": exp.cast(exp.null(), "varchar"),
        "ingested_at": exp.Max(this=_col("ingested_at")),
    }
    query = (
        exp.select(
            *(exp.alias_(columns[name], name) for name in FINDING_COLUMN_NAMES),
            exp.alias_(exp.Window(this=exp.Count(this=exp.Star())), "total"),
            exp.alias_(count, "_count"), exp.alias_(exp.Max(this=_col("at")), "_last"),
            *(exp.alias_(group, f"_v{i}") for i, group in enumerate(groups)),
        )
        .from_(union.subquery("c"))
        .group_by(_col("cluster"), *groups, bucket)
        .having(operator(this=count.copy(), expression=exp.Literal.number(threshold)))
        .order_by("at", "audit_id")
    )  # fmt: skip
    if limit is not None:
        query = query.limit(limit)
    return Hunt(
        correlation.id,
        correlation.title,
        correlation.level,
        logsource,
        query,
        (),
        correlation.group_by,
        correlation.group_by,
    )


def compile_rules(rules: ir.RuleSet, window: Window, *, limit: int | None = None) -> list[Hunt]:
    """Every rule that makes findings of its own (``generate``), then every correlation."""
    hunts = [compile_rule(rule, window, limit=limit) for rule in rules.rules if rule.generate]
    hunts += [compile_correlation(corr, rules.rules, window, limit=limit) for corr in rules.correlations]
    return hunts


# ---------------------------------------------------------------- running


def run_hunt(hunt: Hunt, engine: Engine) -> Outcome:
    if hunt.query is None:
        return Outcome(hunt)
    try:
        result = engine.run(hunt.sql("trino"))
    except Exception as exc:  # one rule's failure is reported beside the others' results
        return Outcome(hunt, error=" ".join(str(exc).split())[:300])
    outcome = Outcome(hunt)
    for row in result.rows:
        values = dict(zip(result.columns, row, strict=True))
        outcome.total = int(values["total"])
        finding = {name: values[name] for name in FINDING_COLUMN_NAMES}
        finding["source_ips"] = _array(finding["source_ips"])
        finding["details"] = json.dumps(_details(hunt, values), sort_keys=True, default=str)
        outcome.rows.append(finding)
    return outcome


def run_hunts(hunts: Sequence[Hunt], engine: Engine, *, parallel: int = 1) -> list[Outcome]:
    """Every hunt, in order; ``parallel`` queries at a time (Athena: a few; DuckDB's one
    connection: 1)."""
    if parallel <= 1:
        return [run_hunt(hunt, engine) for hunt in hunts]
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        return list(pool.map(lambda hunt: run_hunt(hunt, engine), hunts))


def _shown_group(name: str, value: Any) -> Any:
    """A correlation's group value as hunt prints it: a requestURI without its query string."""
    return value.split("?", 1)[0] if name == "requestURI" and isinstance(value, str) else value


def _details(hunt: Hunt, values: Mapping[str, Any]) -> dict[str, Any]:
    if hunt.correlation is not None:
        group = {name: _shown_group(name, values[f"_v{i}"]) for i, name in enumerate(hunt.correlation)}
        last = values["_last"]
        if isinstance(last, datetime):  # DuckDB: a naive UTC datetime; Athena: already text
            last = timestamps.format_millis(last.replace(tzinfo=UTC))
        return {"count": int(values["_count"]), "group": group, "last": last}
    shown: dict[str, Any] = {}
    for i, name in enumerate(hunt.fields):
        if values[f"_m{i}"] in (True, "true"):
            value = values[f"_v{i}"]
            if name == "requestURI" and isinstance(value, str):
                value = value.split("?", 1)[0]  # the query string may carry tokens; the ingest engine drops it too
            shown[name] = _array(value) if isinstance(value, str) and value.startswith("[") else value
    return {"fields": shown}


def _array(value: Any) -> Any:
    """Athena returns an array as text (``[a, b]``); DuckDB as a list."""
    if isinstance(value, str) and value.startswith("[") and value.endswith("]"):
        inner = value[1:-1]
        return [item.strip() for item in inner.split(",")] if inner else []
    return value
