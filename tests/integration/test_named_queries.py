"""Every named query answers correctly on a lake built from synthetic traffic (with its planted
incidents and Events) and real corpus samples, through the same SQL file Athena runs (DuckDB here)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from auditlake.archive.compactor import Compactor
from auditlake.audit.pipeline import AuditPipeline, PipelineConfig
from auditlake.demo import synth
from auditlake.events.files import ingest_events
from auditlake.ingest.cloudwatch import EksAuditForwarder, decode_document
from auditlake.ingest.files import FileIngest
from auditlake.jsonio import dumps
from auditlake.local_lake import LocalLake
from auditlake.query import named as query
from tests.helpers import EVENTS, corpus_path, eks_messages, read_jsonl, subscription_document

START = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
WINDOW = {"since": "2026-11-20T09:00:00Z", "until": "2026-11-20T12:00:00Z", "cluster": "demo"}
EVER = {"since": "2015-01-01T00:00:00Z", "until": "2026-11-21T00:00:00Z"}
CORPUS = {
    "falco": "audit/falcosecurity__falco__trace_files_k8s_audit.jsonl",
    "a2r": "audit/liggitt__audit2rbac__demo_v1.jsonl",
    "openshift": "audit/openshift__openshift-docs__audit-log-basic-viewing.jsonl",
    "panther": "audit/panther-labs__panther-analysis__eks_k8s_rule_tests__complete_events.jsonl",
}
GENERATOR = synth.Synth(minutes=60, rate=10, seed=7, start=START)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[query.LocalEngine]:
    lake = LocalLake(tmp_path_factory.mktemp("lake"))
    store = lake.store()
    audit = tmp_path_factory.mktemp("in") / "synth.jsonl"
    audit.write_bytes(b"".join(dumps(e) + b"\n" for e in GENERATOR.events()))
    events = audit.with_name("events.jsonl")
    events.write_bytes(b"".join(dumps(e) + b"\n" for e in GENERATOR.kube_events()))
    pipeline = AuditPipeline(PipelineConfig())
    FileIngest(pipeline, lake.landing(), "demo").jsonl(audit)
    ingest_events(events, lake.landing("events"), "demo")
    for cluster, relative in CORPUS.items():
        FileIngest(pipeline, lake.landing(), cluster).jsonl(corpus_path(relative))
    FileIngest(pipeline, lake.landing(), "fixtures").eventlist(EVENTS / "pod_create_host_pid_ipc.json")
    eks = EksAuditForwarder(pipeline, lake.landing())  # as the CloudWatch subscription lands them
    assert eks.forward(decode_document(dumps(subscription_document(eks_messages())))).accepted == 5
    report = Compactor(store, lake.archives(), lake.locks()).compact(list(store.list("raw/")))
    assert not report.failed and not report.quarantined
    yield query.LocalEngine(lake.archive_dir)


def run(engine: query.LocalEngine, query_name: str, /, **params: Any) -> list[dict[str, Any]]:
    named = query.load(query_name)
    result = engine.run(named.sql, named.bind({k: str(v) for k, v in params.items()}))
    return [dict(zip(result.columns, row, strict=True)) for row in result.rows]


def test_secret_changes_finds_the_planted_delete(engine: query.LocalEngine) -> None:
    namespace, name = synth.INCIDENT_SECRET
    rows = run(engine, "secret_changes", name=name, namespace=namespace, **WINDOW)
    assert [(r["verb"], r["identity"], r["source_ips"], r["response_code"]) for r in rows] == [
        ("delete", synth.INCIDENT_DELETER, "198.51.100.77", 200)
    ]
    assert run(engine, "secret_changes", name=name, namespace="default", **WINDOW) == []


def test_forbidden_bursts_at_and_over_the_threshold(engine: query.LocalEngine) -> None:
    (burst,) = run(engine, "forbidden_bursts", **WINDOW)
    assert (burst["identity"], burst["max_per_minute"], burst["denied_in_range"]) == (synth.INCIDENT_DENIED, 15, 15)
    assert burst["source_ips"] == ["10.244.2.66"] and burst["resources"] == ["secrets"]
    assert sorted(burst["verbs"]) == ["get", "list"]
    assert [r["identity"] for r in run(engine, "forbidden_bursts", threshold=15, **WINDOW)] == [synth.INCIDENT_DENIED]
    assert run(engine, "forbidden_bursts", threshold=16, **WINDOW) == []


def test_pod_exec(engine: query.LocalEngine) -> None:
    rows = run(engine, "pod_exec", **WINDOW)
    assert [(r["action"], r["identity"], r["namespace"], r["response_code"]) for r in rows] == [
        ("exec", synth.INCIDENT_EXEC, "prod", 101)
    ]
    falco = run(engine, "pod_exec", **EVER, cluster="falco")
    assert {r["action"] for r in falco} == {"exec", "attach"}


def test_secret_reads_leave_out_the_control_plane(engine: query.LocalEngine) -> None:
    rows = run(engine, "secret_reads", **WINDOW)
    assert {r["identity"] for r in rows} == {synth.INCIDENT_DELETER, synth.INCIDENT_DENIED}
    assert {r["response_code"] for r in rows if r["identity"] == synth.INCIDENT_DENIED} == {403}
    reads = run(engine, "secret_reads", **EVER, cluster="a2r")  # system:admin impersonating users
    expected = {
        (e["auditID"], e["impersonatedUser"]["username"])
        for e in read_jsonl(corpus_path(CORPUS["a2r"]))
        if e.get("objectRef", {}).get("resource") == "secrets" and e["verb"] in ("get", "list", "watch")
    }
    assert expected and {(r["audit_id"], r["impersonating"]) for r in reads} == expected


def test_rbac_escalation_in_falcos_samples(engine: query.LocalEngine) -> None:
    rows = run(engine, "rbac_escalation", **EVER, cluster="falco")
    findings = {(r["resource"], r["name"], r["finding"]) for r in rows}
    assert ("clusterrolebindings", "some-reader-binding", "binds cluster-admin") in findings
    assert any(f == "role with wildcards" for _, _, f in findings)
    # The synthetic traffic's one escalation is the planted one (a rule finds it at ingest too).
    planted = run(engine, "rbac_escalation", **WINDOW)
    assert [(r["identity"], r["resource"], r["name"], r["finding"]) for r in planted] == [
        (synth.INCIDENT_ESCALATOR, "clusterrolebindings", "dave-admin", "binds cluster-admin")
    ]


def test_anonymous_allowed_ignores_health_probes(engine: query.LocalEngine) -> None:
    assert run(engine, "anonymous_allowed", **WINDOW) == []  # synth's anonymous requests are all probes
    rows = run(engine, "anonymous_allowed", **EVER, cluster="falco")
    assert ("create", "namespaces", "foo") in {(r["verb"], r["resource"], r["name"]) for r in rows}
    panther = run(engine, "anonymous_allowed", **EVER, cluster="panther")
    assert panther and all(not r["request_uri"].startswith(("/healthz", "/version")) for r in panther)


def test_privileged_pods(engine: query.LocalEngine) -> None:
    rows = run(engine, "privileged_pods", **EVER, cluster="falco")
    for flag in ("privileged", "host_path", "host_network"):
        assert any(r[flag] for r in rows), flag
    assert not any(r["host_pid"] or r["host_ipc"] for r in rows)  # none in Falco's samples
    (debugger,) = run(engine, "privileged_pods", **{**WINDOW, "cluster": "fixtures"})
    assert (debugger["pod"], debugger["host_pid"], debugger["host_ipc"], debugger["privileged"]) == (
        "debugger",
        True,
        True,
        False,
    )
    # The synthetic traffic's one privileged pod is the planted one (host PID, a host root mount).
    planted = run(engine, "privileged_pods", **WINDOW)
    assert [(r["namespace"], r["pod"], r["privileged"], r["host_pid"], r["host_path"]) for r in planted] == [
        (*synth.INCIDENT_PRIVILEGED, True, True, True)
    ]


def test_pod_evictions_deletions(engine: query.LocalEngine) -> None:
    rows = run(engine, "pod_evictions_deletions", **WINDOW)
    assert [(r["action"], r["identity"], r["namespace"], r["pod"]) for r in rows] == [
        ("evict", synth.INCIDENT_EVICTOR, "default", GENERATOR.pods["default"][1])
    ]


def test_node_membership_joins_audit_and_events(engine: query.LocalEngine) -> None:
    rows = run(engine, "node_membership", **WINDOW)
    assert [(r["source"], r["node"], r["what"]) for r in rows] == [
        ("audit", synth.JOINING_NODE, "create"),
        ("event", synth.JOINING_NODE, "RegisteredNode"),
        ("event", synth.JOINING_NODE, "NodeReady"),
    ]


def test_identity_timeline_is_in_order(engine: query.LocalEngine) -> None:
    rows = run(engine, "identity_timeline", identity=synth.INCIDENT_DELETER, **WINDOW)
    assert [(r["verb"], r["resource"], r["name"]) for r in rows] == [("get", "secrets", "db-pass"),
                                                                   ("delete", "secrets", "db-pass")]  # fmt: skip
    assert rows[0]["at"] < rows[1]["at"]
    acted_as = run(engine, "identity_timeline", identity="bob", **EVER, cluster="a2r")
    assert acted_as and {r["identity"] for r in acted_as} == {"system:admin"}


def test_object_history_with_events(engine: query.LocalEngine) -> None:
    victim = GENERATOR.pods["default"][1]
    rows = run(engine, "object_history", resource="pods", namespace="default", name=victim, **WINDOW)
    audit = [r for r in rows if r["source"] == "audit"]
    assert [(r["what"], r["who"]) for r in audit] == [("create eviction", synth.INCIDENT_EVICTOR)]
    killing = [r for r in rows if r["source"] == "event" and r["what"].startswith("Killing")]
    assert len(killing) == 1 and killing[0]["at"] > audit[0]["at"]


def test_impersonation(engine: query.LocalEngine) -> None:
    rows = run(engine, "impersonation", **EVER, cluster="a2r")
    expected = [e for e in read_jsonl(corpus_path(CORPUS["a2r"])) if e.get("impersonatedUser")]
    assert len(rows) == len(expected) and {r["identity"] for r in rows} == {"system:admin"}
    assert {r["acting_as"] for r in rows} >= {"bob"}
    assert run(engine, "impersonation", **WINDOW) == []


def test_aws_principal_by_role_session_or_access_key(engine: query.LocalEngine) -> None:
    eks = {"since": "2026-11-20T10:00:00Z", "until": "2026-11-20T11:00:00Z", "cluster": "prod"}
    (delete,) = run(engine, "aws_principal", principal="alice@example.com", **eks)  # the session name
    assert (delete["verb"], delete["resource"], delete["namespace"], delete["name"]) == (
        "delete",
        "secrets",
        "payments",
        "db-pass",
    )
    assert (
        delete["iam_principal"] == "arn:aws:iam::123456789012:role/EKSAdmin"
        and delete["identity"] == "kubernetes-admin"
    )
    by_role = run(engine, "aws_principal", principal="arn:aws:iam::123456789012:role/Developer", **eks)
    assert [(r["verb"], r["response_code"], r["session_name"]) for r in by_role] == [("list", 403, "bob")]
    by_key = run(engine, "aws_principal", principal="ASIAEXAMPLEKEY3", **eks)  # a node's instance role
    assert [r["identity"] for r in by_key] == ["system:node:ip-10-0-1-23.eu-west-1.compute.internal"]
    assert run(engine, "aws_principal", principal="aws-node-7xk2p", **eks) == []  # pod names are not principals


def test_time_range_and_cluster_filters(engine: query.LocalEngine) -> None:
    early = {**WINDOW, "until": (START + timedelta(minutes=10)).isoformat()}
    assert run(engine, "pod_evictions_deletions", **early) == []  # the eviction is at 80% of the hour
    assert run(engine, "pod_exec", **{**WINDOW, "cluster": "falco"}) == []


def test_parameters_are_checked() -> None:
    with pytest.raises(query.QueryError, match="needs --param name"):
        query.load("object_history").bind({"resource": "pods", "namespace": "prod"})
    with pytest.raises(query.QueryError, match="no parameter"):
        query.load("pod_exec").bind({"nme": "x"})
    with pytest.raises(query.QueryError, match="whole number"):
        query.load("forbidden_bursts").bind({"threshold": "ten"})
    with pytest.raises(query.QueryError, match="not an ISO 8601"):
        query.load("pod_exec").bind({"since": "yesterday"})
    named = query.load("pod_exec")
    bound = dict(zip(named.placeholders, named.bind({}, now=START), strict=True))
    assert (bound["since"], bound["until"]) == ("2026-11-19T10:00:00.000Z", "2026-11-20T10:00:00.000Z")  # last 24 h
