"""Secret material never reaches storage, whatever level the cluster's policy used."""

from __future__ import annotations

import json
from typing import Any

import pytest

from auditlake.pipeline import AuditPipeline, BatchResult, PipelineConfig
from auditlake.redact import RedactionConfig, ResourceSpec
from auditlake.synth import PLANTED_SECRET_VALUE, Synth
from tests.conftest import as_row, complete_events

FALCO = "audit/falcosecurity__falco__trace_files_k8s_audit.jsonl"


def run(events: list[Any], config: PipelineConfig | None = None) -> BatchResult:
    return AuditPipeline(config or PipelineConfig()).process(
        events, cluster="c", source="webhook", ingested_at="2026-11-21T00:00:00.000000Z"
    )


def records(result: BatchResult) -> list[dict[str, Any]]:
    return [as_row(line) for line in result.lines]


def secret_values(node: Any) -> set[str]:
    """Every value under data/stringData of every Secret or ConfigMap anywhere in ``node``."""
    found: set[str] = set()
    if isinstance(node, dict):
        if node.get("kind") in ("Secret", "ConfigMap"):
            for key in ("data", "stringData"):
                if isinstance(node.get(key), dict):
                    found |= {v for v in node[key].values() if isinstance(v, str) and len(v) > 3}
        for value in node.values():
            found |= secret_values(value)
    elif isinstance(node, list):
        for value in node:
            found |= secret_values(value)
    return found


def event(
    resource: str, body: Any, *, group: str = "", sub: str = "", level: str = "RequestResponse"
) -> dict[str, Any]:
    ref = {"resource": resource, "namespace": "prod", "name": "x", "apiVersion": "v1"}
    if group:
        ref["apiGroup"] = group
    if sub:
        ref["subresource"] = sub
    return {
        "auditID": f"id-{resource}-{sub}",
        "stage": "ResponseComplete",
        "level": level,
        "verb": "create",
        "requestURI": f"/api/v1/namespaces/prod/{resource}",
        "objectRef": ref,
        "requestReceivedTimestamp": "2026-11-21T00:00:00.000000Z",
        "responseStatus": {"code": 201},
        "requestObject": body,
        "responseObject": body,
    }


def test_falco_secret_and_configmap_bodies_are_dropped() -> None:
    events = complete_events(FALCO)
    values = secret_values(events)
    assert any("aws_secret_access_key" in v for v in values), "Falco's configmaps carry credentials"
    result = run(events)
    for record in records(result):
        if record["object_resource"] in ("secrets", "configmaps") and record["level"] != "Metadata":
            assert record["request_object"] is None and record["response_object"] is None
            assert set(record["redactions"]) <= {"requestObject", "responseObject"} and record["redactions"]
    stored = b"\n".join(result.lines).decode()
    assert not [v for v in values if v in stored]
    assert result.redacted == 9


def test_planted_secrets_of_synthetic_traffic_never_reach_a_record() -> None:
    events = list(Synth(minutes=5, rate=20, seed=3).events())
    assert PLANTED_SECRET_VALUE in json.dumps(events)
    result = run(events)
    assert result.redacted > 0
    assert PLANTED_SECRET_VALUE.encode() not in b"\n".join(result.lines)


@pytest.mark.parametrize(
    ("resource", "group", "sub"),
    [
        ("secrets", "", ""),
        ("configmaps", "", ""),
        ("tokenreviews", "authentication.k8s.io", ""),
        ("serviceaccounts", "", "token"),
    ],
)
def test_sensitive_resources_lose_their_bodies(resource: str, group: str, sub: str) -> None:
    (record,) = records(
        run([event(resource, {"kind": "Anything", "spec": {"token": "eyJhbGciOi"}}, group=group, sub=sub)])
    )
    assert (record["request_object"], record["response_object"]) == (None, None)
    assert record["redactions"] == ["requestObject", "responseObject"]
    assert record["level"] == "RequestResponse"  # the level says what the cluster sent; redactions say what we removed


def test_other_resources_keep_their_bodies() -> None:
    (record,) = records(run([event("serviceaccounts", {"kind": "ServiceAccount"})]))
    assert json.loads(record["request_object"]) == {"kind": "ServiceAccount"} and record["redactions"] == []


def test_configmaps_can_be_kept_and_more_resources_added() -> None:
    config = PipelineConfig(None, RedactionConfig.build(configmaps=False, extra=["sealedsecrets.bitnami.com"]))
    cm, sealed = records(
        run(
            [
                event("configmaps", {"kind": "ConfigMap"}),
                event("sealedsecrets", {"kind": "SealedSecret"}, group="bitnami.com"),
            ],
            config,
        )
    )
    assert cm["request_object"] is not None and cm["redactions"] == []
    assert sealed["request_object"] is None and sealed["redactions"] == ["requestObject", "responseObject"]


def test_a_secret_nested_in_another_object_is_replaced_by_a_stub() -> None:
    secret = {
        "kind": "Secret",
        "apiVersion": "v1",
        "metadata": {
            "name": "creds",
            "namespace": "prod",
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": '{"data":{"p":"aHVudGVyMg=="}}'},
        },
        "data": {"p": "aHVudGVyMg=="},
    }
    wrapper = {"kind": "Object", "spec": {"forProvider": {"manifest": secret}}}
    listing = {"kind": "List", "items": [{"kind": "ConfigMap"}, {"kind": "SecretList", "items": [secret]}]}
    body_event = event("objects", wrapper, group="kubernetes.crossplane.io")
    body_event["responseObject"] = listing
    (record,) = records(run([body_event]))
    assert record["redactions"] == ["requestObject.spec.forProvider.manifest", "responseObject.items[1]"]
    request = json.loads(record["request_object"])
    assert request["spec"]["forProvider"]["manifest"] == {
        "kind": "Secret",
        "apiVersion": "v1",
        "redacted": True,
        "metadata": {"name": "creds", "namespace": "prod"},
    }
    assert "aHVudGVyMg==" not in record["request_object"] + record["response_object"]


def test_hostile_nesting_quarantines_instead_of_crashing() -> None:
    deep: Any = {"kind": "Secret", "data": {"p": "c2VjcmV0"}}
    for _ in range(230):
        deep = {"kind": "Wrapper", "inner": deep}
    (failure,) = run([event("objects", deep, group="example.com")]).failures
    assert "deeper than 200 levels" in failure.reason and "kept as received" in failure.reason
    assert failure.item is None and failure.raw  # its original bytes, never half-redacted


def test_quarantined_items_do_not_keep_secret_bodies() -> None:
    bad = event("secrets", {"kind": "Secret", "data": {"p": "c2VjcmV0LXZhbHVl"}})
    del bad["stage"]
    (failure,) = run([bad]).failures
    assert "requestObject redacted" in failure.reason
    assert "c2VjcmV0LXZhbHVl" not in json.dumps(failure.item)


@pytest.mark.parametrize("spec", ["", "*", "secrets/*", "a b"])
def test_bad_resource_specs_are_refused(spec: str) -> None:
    with pytest.raises(ValueError, match="resource spec"):
        ResourceSpec.parse(spec)


def test_resource_spec_grammar() -> None:
    assert ResourceSpec.parse("tokenreviews.authentication.k8s.io") == ResourceSpec(
        "authentication.k8s.io", "tokenreviews", None
    )
    assert ResourceSpec.parse("serviceaccounts/token") == ResourceSpec("", "serviceaccounts", "token")
    spec = ResourceSpec.parse("secrets")
    assert (
        spec.matches("", "secrets", "")
        and spec.matches("", "secrets", "anything")
        and not spec.matches("x.io", "secrets", "")
    )
