"""query/hunt.py without a lake: the SQL it writes parses as Athena's dialect, names only archive
columns, carries values as literals (quotes, ``%`` and ``_`` escaped), and a rule the archive cannot
answer is reported ingest-only with the fields that make it so."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlglot
from sqlglot import exp

from auditlake.detect import ir
from auditlake.model import AUDIT_COLUMN_NAMES, EVENT_COLUMN_NAMES, FINDING_COLUMN_NAMES
from auditlake.query import hunt

WINDOW = hunt.Window(datetime(2025, 3, 10, 6, tzinfo=UTC), datetime(2025, 3, 12, 18, tzinfo=UTC), "prod")
LEAVES = [
    ir.Leaf("verb", "glob", ("create",)),
    ir.Leaf("user.username", "glob", ("system:", ir.STAR), cased=True),
    ir.Leaf("user.groups", "glob", (ir.STAR, "masters")),
    ir.Leaf("requestURI", "re", r"/exec\?"),
    ir.Leaf("sourceIPs", "cidr", "10.0.0.0/8"),
    ir.Leaf("responseStatus.code", "num", ("gte", 400)),
    ir.Leaf("objectRef.name", "num", ("lt", 3)),
    ir.Leaf("objectRef.namespace", "null", None),
    ir.Leaf("objectRef.subresource", "exists", True),
    ir.Leaf("impersonatedUser.username", "exists", False),
    ir.Leaf("userAgent", "bool", True),
    ir.Leaf('annotations."authorization.k8s.io/decision"', "glob", ("allow",)),
    ir.Leaf("level", "glob", ("RequestResponse",)),
]
# What a query may name besides the table's columns: the partitions, its own aliases, the lambda.
OWN = {"dt", "hour", "x", "_first", "event", "at", "ingested_at", "_value", "_count", "_last", "total"}


def rule(condition: ir.Node, logsource: str = "audit") -> ir.Rule:
    return ir.Rule("r-1", "a rule", "high", logsource, condition)


def columns_named(sql: str) -> set[str]:
    names = {column.name for column in sqlglot.parse_one(sql, read="trino").find_all(exp.Column)}
    return {name for name in names if not name.startswith(("_m", "_v", "_g"))} - OWN


def test_every_leaf_op_compiles_to_trino_that_names_only_archive_columns() -> None:
    compiled = hunt.compile_rule(rule(ir.AnyOf(tuple(LEAVES))), WINDOW, limit=10)
    assert compiled.ingest_only == () and compiled.query is not None
    sql = compiled.sql("trino")
    tree = sqlglot.parse_one(sql, read="trino")
    assert [t.name for t in tree.find_all(exp.Table)] == ["audit"]
    assert columns_named(sql) <= set(AUDIT_COLUMN_NAMES) | set(FINDING_COLUMN_NAMES)
    # The result is finding-shaped: the finding columns first, in the contract's order.
    assert [e.alias_or_name for e in tree.expressions][: len(FINDING_COLUMN_NAMES)] == list(FINDING_COLUMN_NAMES)
    # Partition pruning on dt/hour and the exact bounds, the cluster, and no RequestReceived.
    for text in ("dt BETWEEN '2025-03-10' AND '2025-03-12'", "hour >= 6", "hour <= 18",
                 "CAST('2025-03-10 06:00:00.000' AS TIMESTAMP)", "cluster = 'prod'", "'RequestReceived'"):  # fmt: skip
        assert text in sql
    assert "LIMIT 10" in sql
    # The same tree reaches DuckDB through the transpiler the named queries use.
    duck = sqlglot.transpile(sql, read="trino", write="duckdb")[0]
    assert "LIST_FILTER" in duck and "REGEXP_MATCHES" in duck


def test_events_rules_read_the_events_table() -> None:
    condition = ir.All((ir.Leaf("reason", "glob", ("BackOff",)), ir.Leaf("regarding.kind", "glob", ("Pod",))))
    sql = hunt.compile_rule(rule(condition, "events"), WINDOW).sql()
    tree = sqlglot.parse_one(sql, read="trino")
    assert [t.name for t in tree.find_all(exp.Table)] == ["events"]
    assert columns_named(sql) <= set(EVENT_COLUMN_NAMES) | set(FINDING_COLUMN_NAMES)
    assert "event_time >= CAST(" in sql and "PARTITION BY cluster, uid" in sql


def test_values_are_literals_with_quotes_and_like_wildcards_escaped() -> None:
    value = "db'pass%_x\\"
    sql = hunt.compile_rule(rule(ir.Leaf("objectRef.name", "glob", (ir.STAR, value), cased=True)), WINDOW).sql()
    like = next(sqlglot.parse_one(sql, read="trino").find_all(exp.Escape))
    assert like.expression.name == "\\"
    assert like.this.expression.name == "%db'pass\\%\\_x\\\\"  # the parsed literal: the quote is data
    assert "'%db''pass\\%\\_x\\\\'" in sql  # in the text: the quote doubled
    equality = hunt.compile_rule(rule(ir.Leaf("objectRef.name", "glob", ("A'b%",))), WINDOW).sql()
    assert "LOWER(object_name) = 'a''b%'" in equality  # no wildcard: = on the folded value, nothing escaped


@pytest.mark.parametrize(
    ("condition", "needs"),
    [
        (ir.Leaf("requestObject.spec.containers.securityContext.privileged", "bool", True),
         ("requestObject.spec.containers.securityContext.privileged",)),
        (ir.All((ir.Leaf("verb", "glob", ("create",)), ir.Not(ir.Leaf("responseObject.data", "exists", True)),
                 ir.Leaf("requestObject.data", "re", "AKIA"))), ("responseObject.data", "requestObject.data")),
        (ir.Leaf(None, "glob", (ir.STAR, "password", ir.STAR)), ("a keyword search (any field, bodies included)",)),
        (ir.Leaf("sourceIPs", "cidr", "fe80::/10"), ("cidr fe80::/10 (IPv6: not expressible on DuckDB)",)),
    ],
)  # fmt: skip
def test_a_rule_the_archive_cannot_answer_is_ingest_only(condition: ir.Node, needs: tuple[str, ...]) -> None:
    compiled = hunt.compile_rule(rule(condition), WINDOW)
    assert compiled.query is None and compiled.ingest_only == needs
    assert compiled.reason.startswith(f"ingest-only: needs {needs[0]}")
    with pytest.raises(ValueError, match="ingest-only"):
        compiled.sql()


def test_body_fields_are_named_as_not_archived() -> None:
    compiled = hunt.compile_rule(rule(ir.Leaf("requestObject.data", "exists", True)), WINDOW)
    assert compiled.reason == "ingest-only: needs requestObject.data (bodies are not archived)"
    unknown = hunt.compile_rule(rule(ir.Leaf("hostPath", "glob", ("/",))), WINDOW)
    assert unknown.reason == "ingest-only: needs hostPath (not in the archive's columns)"


def test_correlations_compile_when_their_rules_and_fields_map() -> None:
    base = ir.Rule("b-1", "403", "low", "audit", ir.Leaf("responseStatus.code", "num", ("eq", 403)), name="forbidden")
    burst = ir.Correlation("c-1", "burst", "high", "event_count", ("forbidden",), ("user.username",), 60, ("gte", 10))
    compiled = hunt.compile_correlation(burst, [base], WINDOW)
    sql = compiled.sql()
    assert compiled.correlation == ("user.username",)
    assert "HAVING COUNT(DISTINCT event) >= 10" in " ".join(sql.split())
    assert "FLOOR(CAST(TO_UNIXTIME(at) AS DOUBLE) / 60)" in sql  # epoch-aligned windows of the timespan
    assert columns_named(sql) <= set(AUDIT_COLUMN_NAMES) | set(FINDING_COLUMN_NAMES)
    by_body = ir.Correlation("c-2", "x", "high", "value_count", ("b-1",), ("user.username",), 60, ("gte", 3),
                             field="requestObject.metadata.name")  # fmt: skip
    assert hunt.compile_correlation(by_body, [base], WINDOW).ingest_only == ("requestObject.metadata.name",)
    missing = ir.Correlation("c-3", "x", "high", "event_count", ("nope",), (), 60, ("gte", 3))
    assert hunt.compile_correlation(missing, [base], WINDOW).ingest_only == ("rule nope (not loaded)",)
    body_base = ir.Rule("b-2", "cm", "low", "audit", ir.Leaf("requestObject.data", "exists", True))
    over_body = ir.Correlation("c-4", "x", "high", "event_count", ("b-2",), (), 60, ("gte", 3))
    assert hunt.compile_correlation(over_body, [body_base], WINDOW).ingest_only == ("requestObject.data (in b-2)",)


def test_compile_rules_skips_base_only_rules_and_keeps_correlations() -> None:
    base = ir.Rule("b-1", "403", "low", "audit", ir.Leaf("responseStatus.code", "num", ("eq", 403)), generate=False)
    shown = ir.Rule("r-2", "exec", "high", "audit", ir.Leaf("objectRef.subresource", "glob", ("exec",)))
    burst = ir.Correlation("c-1", "burst", "high", "event_count", ("b-1",), ("user.username",), 60, ("gte", 10))
    hunts = hunt.compile_rules(ir.RuleSet((base, shown), (burst,)), WINDOW)
    assert [h.rule_id for h in hunts] == ["r-2", "c-1"]
