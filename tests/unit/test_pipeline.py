"""The pipeline policy applied to events: downgrade, drop, omitted stages, managed fields."""

from __future__ import annotations

import json
from typing import Any

from auditlake.audit.parse import EnvelopeError
from auditlake.audit.pipeline import AuditPipeline, BatchResult, PipelineConfig, quarantine_item, refused_items
from auditlake.audit.policy import policy_from_dict
from tests.helpers import as_row, complete_events

TS = "2026-11-21T00:00:00.000000Z"


def policy(*rules: dict[str, Any], **top: Any) -> PipelineConfig:
    return PipelineConfig(
        policy_from_dict({"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": list(rules), **top})
    )


def run(events: list[dict[str, Any]], config: PipelineConfig) -> BatchResult:
    return AuditPipeline(config).process(events, cluster="c", source="webhook", ingested_at=TS)


def pod_event(level: str = "RequestResponse", stage: str = "ResponseComplete", **extra: Any) -> dict[str, Any]:
    managed = [{"manager": "kubectl", "operation": "Update"}]
    return {
        "auditID": "a1",
        "stage": stage,
        "level": level,
        "verb": "create",
        "requestURI": "/api/v1/namespaces/default/pods",
        "user": {"username": "alice", "groups": ["devs", "system:authenticated"]},
        "objectRef": {"resource": "pods", "namespace": "default", "name": "web-1", "apiVersion": "v1"},
        "responseStatus": {"code": 201},
        "requestReceivedTimestamp": TS,
        "requestObject": {"kind": "Pod", "metadata": {"name": "web-1", "managedFields": managed}},
        "responseObject": {"kind": "PodList", "items": [{"metadata": {"name": "web-1", "managedFields": managed}}]},
        **extra,
    }


def only(result: BatchResult) -> dict[str, Any]:
    (line,) = result.lines
    return as_row(line)


def test_no_policy_keeps_every_event_as_received() -> None:
    events = complete_events("audit/liggitt__audit2rbac__demo_v1beta1_original.jsonl")
    result = run(events, PipelineConfig())
    assert (result.accepted, result.filtered) == (757, 0)


def test_metadata_rule_drops_both_bodies() -> None:
    record = only(run([pod_event()], policy({"level": "Metadata"})))
    assert (record["level"], record["received_level"]) == ("Metadata", "RequestResponse")
    assert (record["request_object"], record["response_object"]) == (None, None)
    assert record["redactions"] == []  # a policy downgrade is not a redaction


def test_request_rule_drops_the_response_only() -> None:
    record = only(run([pod_event()], policy({"level": "Request"})))
    assert record["request_object"] is not None and record["response_object"] is None


def test_a_rule_never_upgrades_what_the_cluster_sent() -> None:
    record = only(run([pod_event(level="Metadata")], policy({"level": "RequestResponse"})))
    assert record["level"] == "Metadata"


def test_level_none_and_omitted_stages_drop_the_event() -> None:
    config = policy({"level": "None", "users": ["alice"]}, {"level": "Metadata"}, omitStages=["RequestReceived"])
    result = run([pod_event(), pod_event(stage="RequestReceived", user={"username": "bob"})], config)
    assert (result.accepted, result.filtered) == (0, 2)


def test_omit_managed_fields_strips_objects_and_list_items() -> None:
    record = only(run([pod_event()], policy({"level": "RequestResponse", "omitManagedFields": True})))
    assert "managedFields" not in record["request_object"] + record["response_object"]
    kept = only(run([pod_event()], policy({"level": "RequestResponse"})))
    assert "managedFields" in kept["request_object"] and "managedFields" in kept["response_object"]


def test_users_are_matched_against_the_authenticated_not_the_impersonated_user() -> None:
    events = complete_events("audit/liggitt__audit2rbac__demo_v1.jsonl")  # system:admin impersonating bob
    assert run(events, policy({"level": "None", "users": ["bob"]}, {"level": "Metadata"})).filtered == 0
    assert run(events, policy({"level": "None", "users": ["system:admin"]}, {"level": "Metadata"})).filtered == 37


def test_failed_authentication_has_no_user_for_user_rules() -> None:
    anonymous_401 = pod_event(user={}, stage="ResponseStarted", responseStatus={"code": 401})
    config = policy({"level": "None", "userGroups": ["system:unauthenticated", "devs"]}, {"level": "Metadata"})
    assert run([anonymous_401], config).accepted == 1


def test_create_is_not_matched_by_resource_names_backfilled_from_the_body() -> None:
    rule = {"level": "None", "resources": [{"group": "", "resources": ["pods"], "resourceNames": ["web-1"]}]}
    assert run([pod_event()], policy(rule, {"level": "Metadata"})).accepted == 1
    patch = pod_event(verb="patch", requestURI="/api/v1/namespaces/default/pods/web-1")
    assert run([patch], policy(rule, {"level": "Metadata"})).filtered == 1


def test_non_resource_urls_ignore_the_query_string() -> None:
    probe = {
        "auditID": "p",
        "stage": "ResponseComplete",
        "level": "Metadata",
        "verb": "get",
        "requestURI": "/healthz?verbose=1",
        "user": {"username": "system:anonymous"},
        "requestReceivedTimestamp": TS,
    }
    assert run([probe], policy({"level": "None", "nonResourceURLs": ["/healthz"]}, {"level": "Metadata"})).filtered == 1


def test_integers_beyond_64_bits_are_kept_exactly() -> None:
    big = 2**70 + 1
    event = pod_event(requestObject={"kind": "Widget", "spec": {"size": big}})
    body = json.dumps({"kind": "EventList", "items": [event]}).encode()
    record = only(AuditPipeline(PipelineConfig()).eventlist(body, cluster="c", source="webhook", ingested_at=TS))
    assert json.loads(record["request_object"])["spec"]["size"] == big


def test_forbidden_responses_are_counted() -> None:
    assert run(complete_events("audit/liggitt__audit2rbac__demo_v1.jsonl"), PipelineConfig()).forbidden == 11


def token_review(audit_id: str = "t1") -> dict[str, Any]:
    return pod_event(
        auditID=audit_id,
        requestURI="/apis/authentication.k8s.io/v1/tokenreviews",
        objectRef={"resource": "tokenreviews", "apiGroup": "authentication.k8s.io", "apiVersion": "v1"},
        requestObject={"kind": "TokenReview", "spec": {"token": "TOKEN-P1"}},
        responseObject=None,
    )


def test_quarantine_judges_every_embedded_event_by_its_own_object_ref() -> None:
    redaction = PipelineConfig().redaction
    secret_patch = pod_event(
        verb="patch",
        requestURI="/api/v1/namespaces/default/secrets/db",
        objectRef={"resource": "secrets", "namespace": "default", "name": "db"},
        requestObject={"data": {"p": "UEFUQ0gtUDE="}},
    )
    widget_patch = pod_event(verb="patch", requestObject={"spec": {"data": {"p": "V0lER0VULVAx"}}})
    wrapped = {"log": token_review(), "nested": [{"deeper": secret_patch}], "patch": json.dumps(widget_patch)}
    failure = quarantine_item(3, "missing level", json.dumps(wrapped).encode(), redaction)
    kept = json.dumps(failure.item)
    assert "TOKEN-P1" not in kept and "UEFUQ0gtUDE" not in kept and "V0lER0VULVAx" not in kept
    assert "log.requestObject redacted" in failure.reason and "nested[0].deeper.responseObject" in failure.reason
    assert failure.item["log"]["auditID"] == "t1"  # the rest of the wrapped event is kept


def test_a_refused_bare_array_is_kept_as_its_redacted_items() -> None:
    body = json.dumps([token_review("t1"), pod_event(auditID="p1")]).encode()
    failures = refused_items(body, EnvelopeError("not an EventList"), PipelineConfig().redaction)
    assert failures is not None and [f.audit_id for f in failures] == ["t1", "p1"]
    assert "TOKEN-P1" not in json.dumps([f.item for f in failures])


def test_a_fast_path_failure_is_quarantined_from_the_bytes_received() -> None:
    """The typed fast path re-encoded the event, an absent body as invalid JSON: the item was then
    treated as cut short and lost its timestamps and annotations."""
    bad = pod_event(auditID="bad", requestReceivedTimestamp="2026-W47-6T12:00:00.000000Z", annotations={"a": "b"})
    del bad["requestObject"], bad["responseObject"]
    body = json.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": [pod_event(), bad]}).encode()
    result = AuditPipeline(PipelineConfig()).eventlist(body, cluster="c", source="webhook", ingested_at=TS)
    [failure] = result.failures
    assert failure.index == 1 and failure.raw is None and "cut short" not in failure.reason
    assert failure.item == bad


def test_quarantine_reasons_and_items_never_repeat_a_long_value() -> None:
    secret = '{"kind":"Secret","stringData":{"p":"REASON-P1"}}'
    events = [
        pod_event(auditID="a", apiVersion=secret),
        pod_event(auditID="s", stage=secret),
        pod_event(auditID="t", stageTimestamp="2026-11-20T10:00:00ZREASON-P1"),
    ]
    result = AuditPipeline(PipelineConfig()).process(events, cluster="c", source="webhook", ingested_at=TS)
    assert len(result.failures) == 3
    for failure in result.failures:
        assert "REASON-P1" not in json.dumps([failure.reason, failure.item, failure.stage]), failure
        assert "characters>" in failure.reason and "not kept" in failure.reason
    short = pod_event(auditID="v", apiVersion="v2")
    [failure] = AuditPipeline(PipelineConfig()).process([short], cluster="c", source="w", ingested_at=TS).failures
    assert failure.reason == "apiVersion must be audit.k8s.io/*, got 'v2'" and failure.item["apiVersion"] == "v2"
