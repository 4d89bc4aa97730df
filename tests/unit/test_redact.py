"""Secret material never reaches storage, whatever level the cluster's policy used."""

from __future__ import annotations

import json
from typing import Any

import pytest

from auditlake.audit.pipeline import AuditPipeline, BatchResult, PipelineConfig
from auditlake.audit.redact import RedactionConfig, ResourceSpec, resource_of_uri, safe_reason, shown
from auditlake.demo.synth import PLANTED_SECRET_VALUE, Synth
from tests.helpers import as_row, complete_events

FALCO = "audit/falcosecurity__falco__trace_files_k8s_audit.jsonl"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
AT = "2026-11-21T00:00:00.000000Z"


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


def test_hostile_nesting_is_redacted_where_reachable_and_stubbed_beyond() -> None:
    deep: Any = {"kind": "Secret", "data": {"p": "c2VjcmV0"}}
    for _ in range(230):
        deep = {"kind": "Wrapper", "inner": deep}
    near = {"kind": "Wrapper", "a": {"kind": "Secret", "data": {"p": "bmVhci1zZWNyZXQ="}}, "deep": deep}
    result = run([event("objects", near, group="example.com")])
    assert result.failures == []
    (record,) = records(result)
    assert "c2VjcmV0" not in record["request_object"] and "bmVhci1zZWNyZXQ=" not in record["request_object"]
    assert "[nested too deep]" in record["request_object"]
    assert "requestObject.a" in record["redactions"]
    assert all(len(path) <= 300 for path in record["redactions"])


def test_last_applied_configuration_is_a_body_too() -> None:
    manifest = {"kind": "Secret", "metadata": {"name": "s"}, "stringData": {"p": "last-applied-value"}}
    applied = json.dumps({"kind": "Object", "spec": {"forProvider": {"manifest": manifest}}})
    body = {"kind": "Object", "metadata": {"annotations": {LAST_APPLIED: applied}}}
    (record,) = records(run([event("objects", body, group="kubernetes.crossplane.io")]))
    assert "last-applied-value" not in record["request_object"]
    annotation = json.loads(json.loads(record["request_object"])["metadata"]["annotations"][LAST_APPLIED])
    assert annotation["spec"]["forProvider"]["manifest"]["redacted"] is True
    assert f"requestObject.metadata.annotations.{LAST_APPLIED}.spec.forProvider.manifest" in record["redactions"]


def test_a_string_that_looks_like_json_naming_a_secret_but_does_not_parse_is_dropped() -> None:
    body = {"kind": "Object", "note": '{"kind":"Secret","data":{"p":"broken-value"'}
    (record,) = records(run([event("objects", body, group="example.com")]))
    assert json.loads(record["request_object"])["note"] == "[redacted]"


@pytest.mark.parametrize(
    "patch",
    [
        {"spec": {"forProvider": {"manifest": {"stringData": {"password": "patch-value"}}}}},
        {"spec": {"forProvider": {"manifest": {"data": {"password": "patch-value"}}}}},
        [{"op": "add", "path": "/spec/forProvider/manifest/stringData", "value": {"password": "patch-value"}}],
        [{"op": "replace", "path": "/spec/forProvider/manifest/data/password", "value": "patch-value"}],
        [{"op": "add", "path": "/spec/forProvider/manifest", "value": {"data": {"password": "patch-value"}}}],
    ],
)
def test_patches_aimed_at_an_embedded_secret_lose_its_data(patch: Any) -> None:
    patching = event("objects", patch, group="kubernetes.crossplane.io")
    patching["verb"] = "patch"
    patching["responseObject"] = None
    (record,) = records(run([patching]))
    assert "patch-value" not in record["request_object"] and record["redactions"]


def test_data_outside_patches_is_kept_but_string_data_never() -> None:
    body = {"kind": "Widget", "data": {"colour": "blue"}, "spec": {"stringData": {"p": "sd-value"}}}
    (record,) = records(run([event("widgets", body, group="example.com")]))
    stored = json.loads(record["request_object"])
    assert stored["data"] == {"colour": "blue"} and stored["spec"]["stringData"] == "[redacted]"


@pytest.mark.parametrize("kind", ["secret", "SECRET", "sEcReTlIsT"])
def test_secret_kind_is_matched_in_any_case(kind: str) -> None:
    body = {"kind": "List", "items": [{"kind": kind, "data": {"p": "Y2FzZS12YWx1ZQ=="}}]}
    (record,) = records(run([event("objects", body, group="example.com")]))
    assert "Y2FzZS12YWx1ZQ==" not in record["request_object"]


def test_a_duplicated_kind_key_counts_as_secret_if_any_value_is() -> None:
    body = b'{"kind":"List","items":[{"kind":"Secret","data":{"p":"ZHVwLXZhbHVl"},"kind":"ConfigMap"}]}'
    raw = json.dumps(event("objects", None, group="example.com")).encode()
    raw = raw.replace(b'"requestObject": null', b'"requestObject": ' + body)
    (record,) = records(AuditPipeline(PipelineConfig()).items([raw], cluster="c", source="webhook", ingested_at=AT))
    assert "ZHVwLXZhbHVl" not in (record["request_object"] or "")


def test_the_resource_is_also_read_from_the_request_uri() -> None:
    no_ref = event("secrets", {"data": {"p": "dXJpLXZhbHVl"}})
    del no_ref["objectRef"]
    no_ref["requestURI"] = "/api/v1/namespaces/prod/secrets/x?fieldManager=kubectl"
    review = event("tokenreviews", {"spec": {"token": "review-token"}})  # objectRef without apiGroup
    review["requestURI"] = "/apis/authentication.k8s.io/v1/tokenreviews"
    for stored in records(run([no_ref, review])):
        assert stored["request_object"] is None and stored["redactions"] == ["requestObject", "responseObject"]


def test_resource_of_uri() -> None:
    assert resource_of_uri("/api/v1/namespaces/a/secrets/b") == ("", "secrets", "")
    assert resource_of_uri("/api/v1/namespaces/a") == ("", "namespaces", "")
    assert resource_of_uri("/api/v1/namespaces/a/serviceaccounts/b/token") == ("", "serviceaccounts", "token")
    assert resource_of_uri("/apis/kubernetes.crossplane.io/v1alpha2/objects?x=1") == (
        "kubernetes.crossplane.io",
        "objects",
        "",
    )
    assert resource_of_uri("/healthz") is None and resource_of_uri("/apis/x") is None


def test_custom_resources_can_be_redacted_whole() -> None:
    config = PipelineConfig(redaction=RedactionConfig.build(extra=["objects.kubernetes.crossplane.io"]))
    (record,) = records(run([event("objects", {"spec": {}}, group="kubernetes.crossplane.io")], config))
    assert record["request_object"] is None


def test_secrets_in_free_form_fields_are_stubbed() -> None:
    secret = {"kind": "Secret", "data": {"p": "ZnJlZS1mb3Jt"}}
    item = event("pods", None)
    item["user"] = {"username": "u", "extra": {"x": [secret]}}
    item["responseStatus"] = {"code": 409, "details": {"causes": [secret]}}
    item["vendorField"] = {"nested": secret}
    (record,) = records(run([item]))
    assert "ZnJlZS1mb3Jt" not in json.dumps(record)
    assert {"user.extra.x[0]", "responseStatus.details.causes[0]", "extra.vendorField.nested"} <= set(
        record["redactions"]
    )


@pytest.mark.parametrize(
    "ref", [{"resource": "secrets", "apiGroup": 5}, "secrets", {"resource": ["secrets"]}], ids=["group", "str", "list"]
)
def test_quarantine_drops_bodies_when_the_object_ref_cannot_be_read(ref: Any) -> None:
    bad = event("secrets", {"data": {"p": "cmVmLXZhbHVl"}})
    bad["objectRef"] = ref
    (failure,) = run([bad]).failures
    assert "cmVmLXZhbHVl" not in json.dumps(failure.item) and "requestObject redacted" in failure.reason


def test_quarantine_stubs_a_deep_user_extra() -> None:
    deep: Any = {"kind": "Secret", "data": {"p": "ZGVlcC1leHRyYQ=="}}
    for _ in range(300):
        deep = {"x": deep}
    bad = event("pods", None)
    bad["user"] = {"username": "u", "extra": {"k": deep}}
    del bad["stage"]
    (failure,) = run([bad]).failures
    assert failure.raw is None and "ZGVlcC1leHRyYQ==" not in json.dumps(failure.item)


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


SECRET_JSON = '{"apiVersion":"v1","kind":"Secret","metadata":{"name":"s"},"stringData":{"p":"VALUE-R1"}}'


def annotated(annotations: dict[str, str], **body: Any) -> dict[str, Any]:
    obj = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "annotations": annotations}}
    return event("deployments", {**obj, **body}, group="apps")


@pytest.mark.parametrize(
    "text",
    [
        '{"apiVersion":"v1","kind":\n"Secret","metadata":{"name":"s"},"data":{"p":"VkFMVUUtUjE="}}',
        '{"apiVersion":"v1","kind"\t:\r\n "Secret","data":{"p":"VkFMVUUtUjE="}}',
        "  \n" + SECRET_JSON,
        json.dumps({"kind": "List", "items": [{"note": SECRET_JSON.replace('"kind":', '"kind":\n')}]}),
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\nstringData:\n  p: VALUE-R1\n",
        "denied: " + SECRET_JSON,
    ],
    ids=["escaped-newline", "escaped-tab-cr", "leading-whitespace", "nested-twice", "yaml", "text-then-json"],
)
def test_secrets_in_strings_are_found_whatever_the_spelling(text: str) -> None:
    [row] = records(run([annotated({"x": text})]))
    stored = json.dumps(row)
    assert "VALUE-R1" not in stored and "VkFMVUUtUjE" not in stored, stored
    assert row["redactions"]


@pytest.mark.parametrize(
    "item",
    [
        '{"kind":"\\u0053ecret","kind":"ConfigMapX","metadata":{"name":"s"},"data":{"p":"VkFMVUUtUjE="}}',
        '{"\\u006bind":"Secret","kind":"ConfigMapX","metadata":{"name":"s"},"data":{"p":"VkFMVUUtUjE="}}',
    ],
    ids=["escaped-value", "escaped-key"],
)
def test_a_duplicated_kind_spelled_with_escapes_is_still_a_secret(item: str) -> None:
    body = '{"apiVersion":"v1","kind":"List","items":[' + item + "]}"
    raw = json.dumps(event("deployments", None, group="apps"))[:-1] + ', "requestObject": ' + body + "}"
    result = AuditPipeline(PipelineConfig()).items([raw.encode()], cluster="c", source="s", ingested_at=AT)
    [row] = records(result)
    assert "VkFMVUUtUjE" not in json.dumps(row) and row["redactions"] == ["requestObject.items[0]"]


def test_a_secret_named_in_a_key_is_renamed() -> None:
    [row] = records(run([event("widgets", {"kind": "Widget", "spec": {SECRET_JSON: 1, "kind: Secret here": 2}})]))
    assert "VALUE-R1" not in json.dumps(row)
    assert json.loads(row["request_object"])["spec"] == {"[redacted]": 1, "[redacted 2]": 2}


def test_authorization_columns_come_from_the_redacted_annotations() -> None:
    annotations = {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": SECRET_JSON}
    [row] = records(run([{**event("pods", None), "annotations": annotations}]))
    assert "VALUE-R1" not in json.dumps(row)
    assert row["authz_decision"] == "allow" and json.loads(row["authz_reason"])["redacted"] is True
    plain = {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": 'RBAC: allowed by "x"'}
    [row] = records(run([{**event("pods", None), "annotations": plain}]))
    assert (row["authz_decision"], row["authz_reason"]) == ("allow", 'RBAC: allowed by "x"')


def test_a_status_message_naming_a_secret_is_redacted() -> None:
    failed = {**event("pods", None), "responseStatus": {"code": 403, "message": "admission denied: " + SECRET_JSON}}
    ok = {**event("pods", None), "responseStatus": {"code": 403, "message": 'pods "x" is forbidden'}}
    first, second = records(run([failed, ok]))
    assert first["response_message"] == "[redacted]" and "responseStatus.message" in first["redactions"]
    assert second["response_message"] == 'pods "x" is forbidden'


def test_resources_and_verbs_are_compared_case_insensitively() -> None:
    config = RedactionConfig.build(extra=["SealedSecrets.Bitnami.com"])
    assert config.covers("", "Secrets", "") and config.covers("bitnami.com", "sealedsecrets", "")
    assert config.covers_event(None, None, None, "/api/v1/namespaces/p/SECRETS/db")
    patch = {**event("widgets", {"spec": {"data": {"p": "VkFMVUUtUjE="}}}), "verb": "PATCH", "responseObject": None}
    [row] = records(run([patch]))
    assert "VkFMVUUtUjE" not in json.dumps(row) and row["redactions"] == ["requestObject.spec.data"]


def test_an_event_embedded_in_a_free_form_field_is_judged_by_its_own_object_ref() -> None:
    inner = {**event("tokenreviews", {"spec": {"token": "TOKEN-R1"}}, group="authentication.k8s.io")}
    [row] = records(run([{**event("pods", None), "wrapped": {"log": inner}}]))
    assert "TOKEN-R1" not in json.dumps(row)
    assert "extra.wrapped.log.requestObject" in row["redactions"]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("v2", "'v2'"),
        ("2026-W47-6T12:00:00.000000Z", "'2026-W47-6T12:00:00.000000Z'"),
        ("2026-11-20T10:00:00ZCANARY-ts", "<29 characters>"),
        (SECRET_JSON, f"<{len(SECRET_JSON)} characters>"),
        ("my-secret-value", "<15 characters>"),
        (12, "a JSON int"),
    ],
)
def test_reasons_show_only_short_plain_values(value: Any, text: str) -> None:
    assert shown(value) == text
    if isinstance(value, str):
        assert safe_reason(f"bad: {value!r} - at `$.stage`") == f"bad: {text} - at `$.stage`"
