"""``auditlake hunt`` on DuckDB selects exactly the events the ingest engine matches.

The lake is built the way every ingest builds it (FileIngest, then the compactor) from
tests/fixtures/hunt/audit.jsonl. Each leaf op is checked twice: against the audit ids a person
wrote down, and against ``reference`` — a plain evaluation of the same IR over the same events as
``detect/ir.py`` defines it (stages the ingest engine sees; any list element; absent fields) —
which a Hypothesis property then compares with the SQL over random trees of those leaves. Where
the real engine exists (``detect.engine.RuleEngine``) its matches must be the hunt's too.
"""

from __future__ import annotations

import ipaddress
import json
import re
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
import sqlglot
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auditlake.archive.compactor import Compactor
from auditlake.audit.pipeline import AuditPipeline, PipelineConfig
from auditlake.cli import main
from auditlake.detect import ir
from auditlake.ingest.files import FileIngest
from auditlake.local_lake import LocalLake
from auditlake.model import FINDING_COLUMN_NAMES
from auditlake.query import hunt
from auditlake.query.named import AthenaEngine, LocalEngine
from tests.helpers import ROOT, AwsStack, corpus_path, read_jsonl

FIXTURE = ROOT / "tests" / "fixtures" / "hunt" / "audit.jsonl"
EVENTS = read_jsonl(FIXTURE)
WINDOW = hunt.Window(datetime(2025, 3, 10, tzinfo=UTC), datetime(2025, 3, 12, tzinfo=UTC))

# (leaf, the audit ids it matches). a7 is only a RequestReceived stage: never matched.
CASES: list[tuple[ir.Leaf, set[str]]] = [
    (ir.Leaf("user.username", "glob", ("carol",)), {"a3"}),
    (ir.Leaf("user.username", "glob", ("carol",), cased=True), set()),
    (ir.Leaf("user.username", "glob", ("Carol",), cased=True), {"a3"}),
    (ir.Leaf("userAgent", "glob", ("kubectl/", ir.STAR)), {"a1", "a3", "a6"}),
    (ir.Leaf("objectRef.name", "glob", ("a", ir.ONE, "b")), {"a6"}),
    (ir.Leaf("objectRef.name", "glob", (ir.STAR, "pass%_", ir.STAR)), {"a2"}),  # % and _ are data
    (ir.Leaf("objectRef.name", "glob", ("db'pass", ir.STAR)), {"a2", "a8"}),  # a quote is data
    (ir.Leaf("objectRef.name", "glob", ("db'pass%_x",)), {"a2"}),
    (ir.Leaf("user.groups", "glob", ("dev-team",)), {"a1", "a6"}),  # any element, folded
    (ir.Leaf("responseStatus.code", "glob", ("40", ir.STAR)), {"a2", "a9", "a10", "a11"}),  # a number as text
    (ir.Leaf("requestURI", "re", r"exec\?command="), {"a3"}),
    (ir.Leaf("requestURI", "re", "^/API/V1/NAMESPACES/KUBE-SYSTEM"), {"a2", "a8", "a9", "a10"}),
    (ir.Leaf("requestURI", "re", "^/API/V1/NAMESPACES/KUBE-SYSTEM", cased=True), set()),
    (ir.Leaf("user.groups", "re", "^system:mas"), {"a5"}),
    (ir.Leaf("sourceIPs", "cidr", "10.0.0.0/8"), {"a1", "a4", "a6", "a11"}),  # not 010.1.2.3
    (ir.Leaf("sourceIPs", "cidr", "192.168.1.4/31"), {"a2"}),
    (ir.Leaf("responseStatus.code", "num", ("eq", 403)), {"a2", "a9", "a10", "a11"}),
    (ir.Leaf("responseStatus.code", "num", ("gte", 500)), {"a5"}),
    (ir.Leaf("responseStatus.code", "num", ("lt", 200)), {"a3"}),
    (ir.Leaf("objectRef.namespace", "null", None), {"a4", "a5"}),
    (ir.Leaf("userAgent", "null", None), {"a5", "a11"}),
    (ir.Leaf("objectRef.subresource", "exists", True), {"a3"}),
    (ir.Leaf("objectRef.apiGroup", "exists", False), {"a1", "a2", "a3", "a4", "a8", "a9", "a10", "a11"}),
    (ir.Leaf('annotations."authorization.k8s.io/decision"', "glob", ("forbid",)), {"a2"}),
    (ir.Leaf("level", "glob", ("request",)), {"a1"}),  # the level the event arrived with
    (ir.Leaf("objectRef.resource", "bool", True), set()),
]
ALL_IDS = {f"a{n}" for n in range(1, 12)} - {"a7"}


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    local = LocalLake(tmp_path_factory.mktemp("lake"))
    store = local.store()
    FileIngest(AuditPipeline(PipelineConfig()), local.landing(), "k").jsonl(FIXTURE)
    report = Compactor(store, local.archives(), local.locks()).compact(list(store.list("raw/")))
    assert not report.failed and report.rows_written == len(EVENTS)
    return local.root


@pytest.fixture(scope="module")
def engine(lake: Path) -> Iterator[LocalEngine]:
    yield LocalEngine(LocalLake(lake).archive_dir)


def hunted(engine: LocalEngine, condition: ir.Node) -> set[str]:
    outcome = hunt.run_hunt(hunt.compile_rule(ir.Rule("r", "t", "low", "audit", condition), WINDOW), engine)
    assert outcome.error is None
    ids = [row["audit_id"] for row in outcome.rows]
    assert len(ids) == len(set(ids)) == outcome.total  # one finding per event, whatever its stages
    return set(ids)


# ---------------------------------------------------------------- the reference: ir.py's semantics


def values(event: dict[str, Any], path: str) -> list[Any]:
    if path.startswith("annotations."):
        found = [(event.get("annotations") or {}).get(path.removeprefix("annotations.").strip('"'))]
    else:
        found = [event]
        for part in path.split("."):
            found = [item.get(part) for item in found if isinstance(item, dict)]
            found = [x for item in found for x in (item if isinstance(item, list) else [item])]
    return [value for value in found if value is not None]


def leaf_holds(leaf: ir.Leaf, value: Any) -> bool:
    if leaf.op == "glob":
        pattern = "".join(re.escape(p) if isinstance(p, str) else ".*" if p == ir.STAR else "." for p in leaf.value)
        return re.fullmatch(pattern, str(value), 0 if leaf.cased else re.IGNORECASE | re.DOTALL) is not None
    if leaf.op == "re":
        return re.search(leaf.value, str(value), 0 if leaf.cased else re.IGNORECASE) is not None
    if leaf.op == "cidr":
        try:
            return ipaddress.ip_address(value) in ipaddress.ip_network(leaf.value, strict=False)
        except ValueError:
            return False
    if leaf.op == "num":
        try:
            number = float(value) if not isinstance(value, bool) else None
        except ValueError:
            return False
        comparison, threshold = leaf.value
        return number is not None and {
            "eq": number == threshold, "lt": number < threshold, "lte": number <= threshold,
            "gt": number > threshold, "gte": number >= threshold,
        }[comparison]  # fmt: skip
    if leaf.op == "bool":
        return value is leaf.value or str(value).lower() == str(leaf.value).lower()
    raise AssertionError(leaf.op)


def holds(node: ir.Node, event: dict[str, Any]) -> bool:
    if isinstance(node, ir.All):
        return all(holds(part, event) for part in node.parts)
    if isinstance(node, ir.AnyOf):
        return any(holds(part, event) for part in node.parts)
    if isinstance(node, ir.Not):
        return not holds(node.part, event)
    assert node.field is not None
    found = values(event, node.field)
    if node.op == "null":
        return not found
    if node.op == "exists":
        return bool(found) == node.value
    return any(leaf_holds(node, value) for value in found)


def reference(condition: ir.Node) -> set[str]:
    return {e["auditID"] for e in EVENTS if e["stage"] != "RequestReceived" and holds(condition, e)}


# ---------------------------------------------------------------- tests


@pytest.mark.parametrize(("leaf", "expected"), CASES, ids=lambda c: str(c) if isinstance(c, set) else None)
def test_each_leaf_op_selects_exactly_the_matching_events(
    engine: LocalEngine, leaf: ir.Leaf, expected: set[str]
) -> None:
    assert reference(leaf) == expected  # the reference agrees with the person who wrote the case
    assert hunted(engine, leaf) == expected
    # NOT of a leaf: every other event, an absent field included (SQL's NULL must not drop it).
    assert hunted(engine, ir.Not(leaf)) == ALL_IDS - expected


def trees() -> st.SearchStrategy[ir.Node]:
    leaves = st.sampled_from([leaf for leaf, _ in CASES])
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, min_size=1, max_size=3).map(lambda parts: ir.All(tuple(parts))),
            st.lists(inner, min_size=1, max_size=3).map(lambda parts: ir.AnyOf(tuple(parts))),
            inner.map(ir.Not),
        ),
        max_leaves=6,
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(condition=trees())
def test_any_condition_selects_what_the_reference_matches(engine: LocalEngine, condition: ir.Node) -> None:
    assert hunted(engine, condition) == reference(condition)


def test_rows_are_findings_with_the_matched_fields_as_details(engine: LocalEngine) -> None:
    condition = ir.AnyOf((ir.Leaf("requestURI", "re", "exec"), ir.Leaf("user.groups", "glob", ("dev-team",))))
    outcome = hunt.run_hunt(
        hunt.compile_rule(ir.Rule("r-9", "exec or dev", "high", "audit", condition), WINDOW), engine
    )
    rows = {row["audit_id"]: row for row in outcome.rows}
    exec_row = rows["a3"]
    assert (exec_row["rule_id"], exec_row["title"], exec_row["level"], exec_row["cluster"]) == (
        "r-9",
        "exec or dev",
        "high",
        "k",
    )
    assert (exec_row["identity"], exec_row["verb"], exec_row["resource"], exec_row["namespace"], exec_row["name"]) == (
        "Carol", "create", "pods/exec", "prod", "web")  # fmt: skip
    assert exec_row["at"] == datetime(2025, 3, 10, 11, 30)
    # Only the fields whose test held; requestURI without its query string.
    assert json.loads(exec_row["details"]) == {"fields": {"requestURI": "/api/v1/namespaces/prod/pods/web/exec"}}
    assert json.loads(rows["a6"]["details"]) == {"fields": {"user.groups": ["system:authenticated", "DEV-TEAM"]}}


def test_window_and_cluster_bound_the_hunt(engine: LocalEngine) -> None:
    leaf = ir.Leaf("responseStatus.code", "num", ("eq", 403))
    rule = ir.Rule("r", "t", "low", "audit", leaf)
    narrow = hunt.Window(datetime(2025, 3, 10, 14, tzinfo=UTC), datetime(2025, 3, 10, 14, 0, 30, tzinfo=UTC))
    assert {r["audit_id"] for r in hunt.run_hunt(hunt.compile_rule(rule, narrow), engine).rows} == {"a9"}
    other = hunt.Window(WINDOW.since, WINDOW.until, "elsewhere")
    assert hunt.run_hunt(hunt.compile_rule(rule, other), engine).rows == []
    limited = hunt.run_hunt(hunt.compile_rule(rule, WINDOW, limit=1), engine)
    assert len(limited.rows) == 1 and limited.total == 4


def test_a_correlation_counts_base_matches_per_group_in_its_timespan(engine: LocalEngine) -> None:
    base = ir.Rule("b", "403", "low", "audit", ir.Leaf("responseStatus.code", "num", ("eq", 403)), name="forbidden")
    burst = ir.Correlation("c", "403 burst", "high", "event_count", ("forbidden",), ("user.username",), 60, ("gte", 2))
    outcome = hunt.run_hunt(hunt.compile_correlation(burst, [base], WINDOW), engine)
    assert outcome.error is None and len(outcome.rows) == 1  # bob: a9, a10 in 14:00-14:01; a2 hours earlier
    row = outcome.rows[0]
    assert (row["rule_id"], row["identity"], row["audit_id"]) == ("c", "bob", "a9")
    assert json.loads(row["details"]) == {
        "count": 2,
        "group": {"user.username": "bob"},
        "last": "2025-03-10T14:00:40.000Z",
    }
    names = ir.Correlation("v", "names", "high", "value_count", ("b",), ("user.username",), 86400, ("gte", 3),
                           field="objectRef.name")  # fmt: skip
    counted = hunt.run_hunt(hunt.compile_correlation(names, [base], WINDOW), engine)
    assert [(r["identity"], json.loads(r["details"])["count"]) for r in counted.rows] == [("bob", 3)]


def test_hunt_matches_the_ingest_engine(engine: LocalEngine) -> None:
    import msgspec

    from auditlake.audit.schema import AuditEvent
    from auditlake.detect import engine as detect_engine

    for leaf, _ in CASES:
        rules = ir.RuleSet((ir.Rule("r", "t", "low", "audit", leaf),))
        live = detect_engine.RuleEngine(rules)
        found = {
            match.finding.audit_id
            for line in FIXTURE.read_bytes().splitlines()
            for match in live.audit(msgspec.json.decode(line, type=AuditEvent), "k", "2025-03-10T00:00:00.000000Z")
        }
        assert hunted(engine, leaf) == found, leaf


def test_cli_refuses_a_lake_that_is_not_there(tmp_path: Path) -> None:
    typo = str(tmp_path / "typo")
    result = CliRunner(mix_stderr=False).invoke(main, ["hunt", "--lake", typo, "--since", "1d"])
    assert result.exit_code != 0 and f"no lake at {typo}" in result.stderr


def test_cli_hunts_a_rules_directory_and_reports_ingest_only(lake: Path, tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "exec.yml").write_text(
        "title: Exec into a pod\nid: 0b0e1bd0-7d26-4f4e-9d89-6a9ab2a2b1a1\nstatus: test\nlevel: high\n"
        "logsource: {product: kubernetes, service: audit}\n"
        "detection:\n  sel:\n    objectRef.subresource: exec\n  condition: sel\n"
    )
    (rules / "privileged.yml").write_text(
        "title: Privileged pod\nid: 5e3d4a1c-2f0b-4c56-8a7e-1f2d3c4b5a69\nstatus: test\nlevel: high\n"
        "logsource: {product: kubernetes, service: audit}\n"
        "detection:\n  sel:\n    requestObject.spec.containers.securityContext.privileged: true\n  condition: sel\n"
    )
    result = CliRunner(mix_stderr=False).invoke(
        main,
        ["hunt", "--rules", str(rules), "--no-builtin-rules", "--lake", str(lake), "--since", "2025-03-10",
         "--until", "2025-03-12", "--format", "json"],
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [(r["rule_id"], r["audit_id"], r["at"]) for r in rows] == [
        ("0b0e1bd0-7d26-4f4e-9d89-6a9ab2a2b1a1", "a3", "2025-03-10T11:30:00.000Z")
    ]
    summary = " ".join(result.stderr.split())
    assert "Exec into a pod: 1 matches" in summary
    assert "Privileged pod: ingest-only: needs requestObject.spec.containers.securityContext.privileged" in summary
    assert "(bodies are not archived)" in summary


def test_athena_gets_one_trino_query_per_rule(aws: AwsStack) -> None:
    client = boto3.client("athena")
    client.create_work_group(Name="hunt", Configuration={"ResultConfiguration": {"OutputLocation": "s3://r/"}})
    sent: list[str] = []
    original = client.start_query_execution

    def record(**kwargs: Any) -> Any:
        sent.append(kwargs["QueryString"])
        assert "ExecutionParameters" not in kwargs  # the values are literals in the SQL
        return original(**kwargs)

    client.start_query_execution = record  # type: ignore[method-assign]
    rules = ir.RuleSet((
        ir.Rule("r-1", "exec", "high", "audit", ir.Leaf("objectRef.subresource", "glob", ("exec",))),
        ir.Rule("r-2", "o'neil", "low", "audit", ir.Leaf("user.username", "glob", ("o'neil", ir.STAR))),
        ir.Rule("r-3", "body", "low", "audit", ir.Leaf("requestObject.data", "exists", True)),
    ))  # fmt: skip
    hunts = hunt.compile_rules(rules, WINDOW)
    outcomes = hunt.run_hunts(hunts, AthenaEngine(client, "hunt", "auditlake", poll_seconds=0), parallel=2)
    assert [o.error for o in outcomes] == [None, None, None] and [o.rows for o in outcomes] == [[], [], []]
    assert sorted(sent) == sorted(h.sql("trino") for h in hunts[:2])  # the ingest-only rule sends nothing
    for sql in sent:
        sqlglot.parse_one(sql, read="trino")


def test_cli_summary_show_sql_and_exit_codes(lake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The command's plumbing with the rules handed in directly (the Sigma loader is tested above)."""
    loaded: list[tuple[list[Path], bool]] = []

    def load_rules(dirs: list[Path], *, builtin: bool = True) -> ir.RuleSet:
        loaded.append((dirs, builtin))
        return ir.RuleSet(
            (
                ir.Rule("r-403", "denied", "medium", "audit", ir.Leaf("responseStatus.code", "num", ("eq", 403))),
                ir.Rule("r-cm", "cm keys", "high", "audit", ir.Leaf("requestObject.data", "exists", True)),
            ),
            problems=(("bad.yml", "not a Kubernetes audit or Events rule"),) if not builtin else (),
        )

    monkeypatch.setitem(sys.modules, "auditlake.detect.sigma", SimpleNamespace(load_rules=load_rules))
    window = ["--since", "2025-03-10T00:00:00Z", "--until", "2025-03-12T00:00:00Z", "--lake", str(lake)]
    runner = CliRunner(mix_stderr=False)
    shown = runner.invoke(main, ["hunt", *window, "--format", "csv", "--show-sql", "--limit", "2"])
    assert shown.exit_code == 0, shown.stderr
    assert loaded == [([], True)]
    lines = shown.stdout.splitlines()
    assert lines[0].split(",") == list(FINDING_COLUMN_NAMES) and len(lines) == 3  # the limit: 2 of 4
    stderr = " ".join(shown.stderr.split())
    assert "r-403 medium denied: 4 matches (showing 2)" in stderr
    assert "r-cm high cm keys: ingest-only: needs requestObject.data (bodies are not archived)" in stderr
    assert "LIST_FILTER" not in stderr and "REGEXP_MATCHES" not in stderr and "response_code = 403" in stderr
    problems = runner.invoke(main, ["hunt", *window, "--no-builtin-rules", "--cluster", "nope"])
    assert problems.exit_code == 1 and "rule not loaded: bad.yml" in problems.stderr
    assert "r-403 medium denied: 0 matches" in " ".join(problems.stderr.split())
    both = runner.invoke(main, ["hunt", "--lake", str(lake), "--stack", "s"])
    assert both.exit_code == 2 and "give --lake DIR or --stack NAME" in both.stderr
    backwards = runner.invoke(main, ["hunt", "--lake", str(lake), "--since", "1h", "--until", "2h"])
    assert backwards.exit_code == 2 and "--since must be before --until" in backwards.stderr


def test_events_rules_hunt_the_events_archive(tmp_path: Path) -> None:
    from auditlake.events.files import ingest_events

    source = corpus_path("events/replicatedhq__troubleshoot__analyze_events__message-image-pull-fail.eventlist.json")
    items = json.loads(source.read_bytes())["items"]
    local = LocalLake(tmp_path)
    ingest_events(source, local.landing("events"), "k")
    store = local.store()
    assert not Compactor(store, local.archives(), local.locks()).compact(list(store.list("raw/"))).failed
    condition = ir.All((ir.Leaf("reason", "glob", ("failed", ir.STAR)), ir.Leaf("regarding.kind", "glob", ("pod",))))
    rule = ir.Rule("e-1", "pod failures", "medium", "events", condition)
    ever = hunt.Window(datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))
    outcome = hunt.run_hunt(hunt.compile_rule(rule, ever), LocalEngine(local.archive_dir))
    expected = {
        i["metadata"]["uid"]
        for i in items
        if i["reason"].lower().startswith("failed") and i["involvedObject"]["kind"] == "Pod"
    }
    assert outcome.error is None and expected
    assert {row["audit_id"] for row in outcome.rows} == expected
    assert {(row["resource"], row["verb"], row["source_ips"]) for row in outcome.rows} == {("Pod", None, None)}
