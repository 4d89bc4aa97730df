"""detect/engine: the index (resource/verb, response code, user) finds exactly the rules that match,
as evaluating every rule on every event would; RequestReceived is not evaluated; a base rule's
``generate`` False and the fields correlations group by travel in the Match; Events are read through
events.k8s.io/v1 names whichever version they are; a credential in a ConfigMap is found and named,
its value in no stored byte."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from auditlake.audit.schema import event_decoder
from auditlake.detect import ir
from auditlake.detect.compile import Doc, predicate
from auditlake.detect.engine import RuleEngine
from auditlake.detect.ir import STAR, All, AnyOf, Correlation, Leaf, Not, Rule, RuleSet
from auditlake.detect.rulesets import builtin_rules
from auditlake.ingest.intake import finding_lines
from auditlake.jsonio import loads

AT = "2026-11-21T05:30:00.000Z"
BASE = {"level": "RequestResponse", "auditID": "a-1", "stage": "ResponseComplete"}
AWS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEAexamplenotarealkey0123456789\n-----END RSA PRIVATE KEY-----\n"


def glob(field: str | None, *parts: Any) -> Leaf:
    return Leaf(field, "glob", tuple(parts))


def rule(rule_id: str, condition: ir.Node, *, logsource: str = "audit", name: str | None = None) -> Rule:
    return Rule(id=rule_id, title=rule_id, level="high", logsource=logsource, condition=condition, name=name)


def audit(**fields: Any) -> Any:
    return event_decoder.decode(json.dumps({**BASE, **fields}).encode())


# Beside the built-in set (pinned on resource/verb, on 403, unpinned): one of each index's kind.
EXTRA = (
    rule("by-user", All((glob("user.username", "system:anonymous"), Not(glob("verb", "get"))))),
    rule("by-users", AnyOf((glob("user.username", "Alice"), glob("user.username", "bob")))),
    rule("by-code", All((Leaf("responseStatus.code", "num", ("eq", 404)), glob("userAgent", STAR, "curl", STAR)))),
    rule("by-codes", AnyOf(tuple(Leaf("responseStatus.code", "num", ("eq", code)) for code in (401, 409)))),
    rule("unpinned", glob("userAgent", STAR, "sqlmap", STAR)),
    rule("unpinned-body", Leaf("requestObject.spec.hostNetwork", "bool", True)),
    rule("resource-only", glob("objectRef.resource", "NodES")),
    rule("verb-only", AnyOf((glob("verb", "escalate"), glob("verb", "Impersonate")))),
    rule("keyword", glob(None, STAR, "xmrig", STAR)),
)  # fmt: skip


def all_rules() -> RuleSet:
    builtin = builtin_rules()
    return RuleSet(builtin.rules + EXTRA, builtin.correlations)


EVENTS = st.fixed_dictionaries(
    {"stage": st.sampled_from(("ResponseComplete", "ResponseStarted", "RequestReceived"))},
    optional={
        "verb": st.sampled_from(("create", "get", "list", "delete", "patch", "CREATE", "escalate", "impersonate")),
        "user": st.fixed_dictionaries({}, optional={
            "username": st.sampled_from(("alice", "bob", "system:anonymous", "system:serviceaccount:kube-system:x")),
            "groups": st.lists(st.sampled_from(("system:masters", "system:unauthenticated")), max_size=2)}),
        "sourceIPs": st.lists(st.sampled_from(("10.0.0.5", "203.0.113.9")), max_size=2),
        "userAgent": st.sampled_from(("kubectl/v1.31", "curl/8.1", "sqlmap/1.7", "xmrig")),
        "objectRef": st.fixed_dictionaries({}, optional={
            "resource": st.sampled_from(("pods", "secrets", "configmaps", "clusterrolebindings", "nodes", "Pods")),
            "subresource": st.sampled_from(("exec", "attach", "portforward")),
            "namespace": st.sampled_from(("kube-system", "default", "kube-public")),
            "name": st.sampled_from(("x", "cluster-admin"))}),
        "responseStatus": st.fixed_dictionaries({}, optional={"code": st.sampled_from((200, 201, 401, 403, 404, 409))}),
        "requestObject": st.fixed_dictionaries({}, optional={
            "spec": st.fixed_dictionaries({}, optional={
                "hostNetwork": st.booleans(), "hostPID": st.booleans(),
                "containers": st.lists(st.fixed_dictionaries({"securityContext": st.fixed_dictionaries(
                    {"privileged": st.booleans()})}), max_size=2)}),
            "data": st.dictionaries(st.sampled_from(("password", "region")), st.sampled_from(("x", "eu-west-1")),
                                    max_size=2),
            "roleRef": st.fixed_dictionaries({"name": st.sampled_from(("cluster-admin", "view"))})}),
    },
)  # fmt: skip

ENGINE = RuleEngine(all_rules())
EVERY = [(r, predicate(r.condition)) for r in all_rules().rules if r.logsource == "audit"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(EVENTS, min_size=1, max_size=5))
@example([{"verb": "create", "user": {"username": "system:anonymous"}, "stage": "ResponseComplete"}])
@example([{"responseStatus": {"code": 409}, "verb": "get", "stage": "ResponseComplete"}])
def test_the_index_finds_what_evaluating_every_rule_finds(events: list[dict[str, Any]]) -> None:
    for fields in events:
        event = {**BASE, **fields}
        decoded = event_decoder.decode(json.dumps(event).encode())
        found = sorted(match.rule for match in ENGINE.audit(decoded, "prod", AT))
        if event["stage"] == "RequestReceived":
            assert found == []
            continue
        expected = sorted(r.id for r, test in EVERY if test(Doc(event)))
        assert found == expected, event


def test_each_index_is_used() -> None:
    """The property above covers the index only if rules are actually filed under each of its kinds."""
    assert ENGINE._by_user and ENGINE._by_code
    assert set(ENGINE._by_user) == {"system:anonymous", "alice", "bob"}
    assert {401, 404, 409} <= set(ENGINE._by_code)
    assert any(key == (None, None) for key in ENGINE._index)  # the unpinned ones
    assert ("nodes", None) in ENGINE._index and (None, "impersonate") in ENGINE._index


def test_request_received_is_not_evaluated() -> None:
    event = {"verb": "create", "user": {"username": "system:anonymous"}}
    assert [m.rule for m in ENGINE.audit(audit(stage="RequestReceived", **event), "prod", AT)] == []
    assert "by-user" in [m.rule for m in ENGINE.audit(audit(**event), "prod", AT)]


def test_a_base_rule_of_a_correlation_carries_generate_false_and_its_group_fields() -> None:
    event = audit(verb="get", user={"username": "mallory"}, objectRef={"resource": "secrets", "namespace": "a"},
                  responseStatus={"code": 403}, sourceIPs=["203.0.113.9"])  # fmt: skip
    matches = {m.name: m for m in ENGINE.audit(event, "prod", AT)}
    forbidden = matches["forbidden-request"]
    assert forbidden.generate is False and forbidden.level == "informational"
    assert dict(forbidden.fields) == {"user.username": "mallory"}
    assert finding_lines([forbidden]) == []  # counted, never stored
    assert forbidden.finding.details is None  # not explained either


def test_value_count_fields_and_body_groups_are_never_body_values() -> None:
    base = rule("deleted", All((glob("verb", "delete"), glob("objectRef.resource", "secrets"))), name="deleted")
    counted = Correlation(
        id="c", title="c", level="high", type="value_count", rules=("deleted",),
        group_by=("user.username", "sourceIPs"), timespan_seconds=600, condition=("gte", 5), field="objectRef.name",
    )  # fmt: skip
    leaky = Correlation(
        id="d", title="d", level="high", type="event_count", rules=("deleted",),
        group_by=("requestObject.metadata.name",), timespan_seconds=60, condition=("gte", 2),
    )  # fmt: skip
    engine = RuleEngine(RuleSet((base,), (counted, leaky)))
    event = audit(verb="delete", user={"username": "eve"}, objectRef={"resource": "secrets", "name": "db"},
                  sourceIPs=["10.0.0.5", "10.0.0.6"], requestObject={"metadata": {"name": "top-secret"}})  # fmt: skip
    (match,) = engine.audit(event, "prod", AT)
    assert dict(match.fields) == {
        "user.username": "eve",
        "sourceIPs": "10.0.0.5,10.0.0.6",
        "objectRef.name": "db",
        "requestObject.metadata.name": None,
    }
    assert match.generate is True  # a rule's own generate; only _resolve (loading) turns it off


def test_events_are_read_through_events_k8s_io_names_whichever_version() -> None:
    tests = (
        glob("regarding.kind", "Pod"),
        glob("note", STAR, "out of memory", STAR),
        glob("reportingController", "kubelet"),
    )
    oom = rule("oom", All(tests), logsource="events")
    engine = RuleEngine(RuleSet((oom,)))
    core = {
        "apiVersion": "v1", "kind": "Event", "reason": "OOMKilling",
        "metadata": {"name": "web.1", "namespace": "shop", "uid": "u-core"},
        "involvedObject": {"kind": "Pod", "name": "web", "namespace": "shop"},
        "message": "Container web ran out of memory", "source": {"component": "kubelet", "host": "node-1"},
        "lastTimestamp": "2026-11-21T05:29:00Z",
    }  # fmt: skip
    new = {
        "apiVersion": "events.k8s.io/v1", "kind": "Event", "reason": "OOMKilling",
        "metadata": {"name": "web.2", "namespace": "shop", "uid": "u-new"},
        "regarding": {"kind": "Pod", "name": "web", "namespace": "shop"},
        "note": "Container web ran out of memory", "reportingController": "kubelet", "reportingInstance": "node-1",
        "eventTime": "2026-11-21T05:29:01.000000Z",
    }  # fmt: skip
    for event, uid, at in (
        (core, "u-core", "2026-11-21T05:29:00.000000Z"),
        (new, "u-new", "2026-11-21T05:29:01.000000Z"),
    ):
        (match,) = engine.events(event, "prod", AT)
        finding = match.finding
        assert (finding.rule_id, finding.audit_id, finding.at) == ("oom", uid, at)
        assert (finding.resource, finding.namespace, finding.name, finding.identity) == (
            "Pod",
            "shop",
            "web",
            "kubelet",
        )
    assert engine.events({**core, "message": "Started container"}, "prod", AT) == []
    assert not RuleEngine(RuleSet(EXTRA)).events(core, "prod", AT)  # audit rules do not read Events
    events_only = RuleEngine(RuleSet((rule("ev", glob("verb", "create"), logsource="events"),)))
    assert not events_only.audit(audit(verb="create"), "prod", AT)  # nor Events rules audit events


def test_a_configmap_carrying_credentials_is_a_finding_without_the_values() -> None:
    data = {"aws_access_key_id": AWS_KEY_ID, "aws_secret_access_key": AWS_SECRET, "tls.key": PEM}
    configmap = {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "env", "namespace": "pay"}, "data": data}
    event = audit(
        verb="create", user={"username": "alice"}, sourceIPs=["198.51.100.7"], userAgent="kubectl/v1.31",
        requestURI="/api/v1/namespaces/pay/configmaps?token=" + AWS_KEY_ID,
        objectRef={"resource": "configmaps", "namespace": "pay", "name": "env", "apiVersion": "v1"},
        responseStatus={"code": 201}, requestObject=configmap, responseObject=configmap,
    )  # fmt: skip
    matches = [m for m in ENGINE.audit(event, "prod", AT) if m.name == "configmap-credentials"]
    assert len(matches) == 1
    stored = b"".join(finding_lines(matches))
    for secret in (AWS_KEY_ID, AWS_SECRET, "MIIEpAIBAAKCAQEA", "PRIVATE KEY"):
        assert secret.encode() not in stored
    details = loads(matches[0].finding.details)["fields"]
    assert details["requestObject.data.aws_access_key_id"] == "<matched>"
    assert details["requestObject.data.aws_secret_access_key"] == "<matched>"
    assert details["requestObject.data.tls.key"] == "<matched>"  # the PEM, by its key
    assert details["verb"] == "create"

    pem_only = audit(verb="update", objectRef={"resource": "configmaps", "namespace": "pay", "name": "certs"},
                     responseStatus={"code": 200}, requestObject={"data": {"server": PEM}})  # fmt: skip
    (match,) = [m for m in ENGINE.audit(pem_only, "prod", AT) if m.name == "configmap-credentials"]
    assert b"PRIVATE KEY" not in b"".join(finding_lines([match]))
    assert loads(match.finding.details)["fields"] == {"verb": "update", "objectRef.resource": "configmaps",
                                                       "requestObject.data.server": "<matched>"}  # fmt: skip


def test_what_the_pipeline_redacts_is_never_in_a_finding_nor_a_correlation_group() -> None:
    """A response message quoting a Secret, user extras, a body path written with a quoted root, and
    a token in requestURI's query: the rules may test them, findings and group values never hold them."""
    token = "eyJSECRETTOKEN"
    quoted = Rule(id="quoted", title="q", level="high", logsource="audit",
                  condition=Leaf('"requestObject".data.aws_secret_access_key', "exists", True))  # fmt: skip
    message = rule("message", glob("responseStatus.message", STAR, "invalid", STAR))
    extra = rule("extra", Leaf("user.extra.arn", "exists", True), name="extra")
    uri = rule("uri", glob("verb", "create"), name="uri")
    corr = Correlation(id="c", title="c", level="high", type="event_count", rules=("uri",),
                       group_by=("requestURI",), timespan_seconds=60, condition=("gte", 2))  # fmt: skip
    engine = RuleEngine(RuleSet((quoted, message, extra, uri), (corr,)))
    event = audit(
        verb="create",
        requestURI=f"/api/v1/namespaces/p/pods/x/exec?command=curl&command=-H&command=Bearer%20{token}",
        user={"username": "eve", "extra": {"arn": [f"arn:aws:sts::1:assumed-role/{token}"]}},
        objectRef={"resource": "configmaps", "namespace": "p", "name": "c"},
        responseStatus={"code": 422, "message": f"invalid: data: password: {AWS_SECRET}"},
        requestObject={"data": {"aws_secret_access_key": AWS_SECRET}},
    )
    matches = engine.audit(event, "prod", AT)
    assert {m.rule for m in matches} == {"quoted", "message", "extra", "uri"}
    stored = b"".join(finding_lines(matches)) + json.dumps([dict(m.fields) for m in matches]).encode()
    assert AWS_SECRET.encode() not in stored and token.encode() not in stored
    [grouped] = [m for m in matches if m.rule == "uri"]
    assert grouped.fields["requestURI"] == "/api/v1/namespaces/p/pods/x/exec"


def test_an_event_whose_reporter_is_not_text_still_gives_a_finding_the_archive_can_read() -> None:
    engine = RuleEngine(RuleSet((rule("backoff", glob("reason", "BackOff"), logsource="events"),)))
    event = {"metadata": {"uid": "u1"}, "reason": "BackOff", "source": {"component": {"not": "text"}}}
    [match] = engine.events(event, "prod", AT)
    assert match.finding.identity is None and match.finding.audit_id == "u1"
