"""Normalisation keeps every field of every real event: mapped to a column or kept in ``extra``."""

from __future__ import annotations

import json
from typing import Any

import pytest

from auditlake import timestamps
from auditlake.audit.pipeline import AuditPipeline, PipelineConfig
from auditlake.audit.redact import RedactionConfig
from auditlake.landing import Invalid
from tests.helpers import COMPLETE_AUDIT_FILES, as_row, complete_events

_SCALARS = {"verb": "verb", "request_uri": "requestURI", "user_agent": "userAgent", "source_ips": "sourceIPs"}
_USER = {"name": "username", "uid": "uid", "groups": "groups"}
_REF = {
    "resource": "resource",
    "subresource": "subresource",
    "namespace": "namespace",
    "name": "name",
    "api_group": "apiGroup",
    "api_version": "apiVersion",
    "uid": "uid",
    "resource_version": "resourceVersion",
}


def reconstruct(record: dict[str, Any]) -> dict[str, Any]:
    """Rebuild the audit event from a record alone; equal to the input iff nothing was lost."""
    event: dict[str, Any] = {"auditID": record["audit_id"], "stage": record["stage"], "level": record["received_level"]}
    for column, key in _SCALARS.items():
        if record[column] is not None:
            event[key] = record[column]
    for prefix, key in (("user", "user"), ("impersonated_user", "impersonatedUser")):
        user = {k: record[f"{prefix}_{c}"] for c, k in _USER.items() if record[f"{prefix}_{c}"] is not None}
        if record[f"{prefix}_extra"] is not None:
            user["extra"] = json.loads(record[f"{prefix}_extra"])
        if user:
            event[key] = user
    ref = {k: record[f"object_{c}"] for c, k in _REF.items() if record[f"object_{c}"] is not None}
    if ref:
        event["objectRef"] = ref
    status = {
        k: record[f"response_{k}"] for k in ("status", "reason", "message") if record[f"response_{k}"] is not None
    }
    if record["response_code"] is not None:
        status["code"] = record["response_code"]
    if record["response_details"] is not None:
        status["details"] = json.loads(record["response_details"])
    if status:
        event["responseStatus"] = status
    event["requestReceivedTimestamp"] = record["request_received_at"]
    if record["stage_at"] is not None:
        event["stageTimestamp"] = record["stage_at"]
    for column, key in (
        ("annotations", "annotations"),
        ("request_object", "requestObject"),
        ("response_object", "responseObject"),
    ):
        if record[column] is not None:
            event[key] = json.loads(record[column])
    for key, value in json.loads(record["extra"] or "{}").items():
        parent, _, child = key.partition(".")
        if child:
            event.setdefault(parent, {})[child] = value
        else:
            event[key] = value
    return event


def comparable(event: dict[str, Any]) -> dict[str, Any]:
    """The input as the archive represents it: implied kind/apiVersion dropped, times canonical."""
    out = {k: v for k, v in event.items() if k != "kind" and not (k == "apiVersion" and v == "audit.k8s.io/v1")}
    for key in ("requestReceivedTimestamp", "stageTimestamp"):
        if key in out:
            out[key] = timestamps.canonical(out[key])
    status = out.get("responseStatus")
    if isinstance(status, dict) and status.get("metadata") == {}:
        out["responseStatus"] = {k: v for k, v in status.items() if k != "metadata"}
    if out.get("annotations") == {}:
        del out["annotations"]
    return out


@pytest.mark.parametrize("relative", COMPLETE_AUDIT_FILES)
def test_every_corpus_event_is_normalised_without_loss(relative: str) -> None:
    events = complete_events(relative)
    pipeline = AuditPipeline(PipelineConfig(None, RedactionConfig(())))
    result = pipeline.process(events, cluster="c", source="file", ingested_at="2026-11-21T00:00:00.000000Z")
    quarantined = {f.index for f in result.failures}
    kept = [e for i, e in enumerate(events) if i not in quarantined]
    assert len(result.lines) == len(kept)
    for event, line in zip(kept, result.lines, strict=True):
        record = as_row(line)
        rebuilt = reconstruct(record)
        expected = comparable(event)
        if "requestReceivedTimestamp" not in expected:  # v1beta1: placed in time by a fallback field
            rebuilt.pop("requestReceivedTimestamp")
        if record.get("redactions"):  # nested Secrets are stubbed even with no resource rule
            for key in ("requestObject", "responseObject"):
                rebuilt.pop(key, None), expected.pop(key, None)
        assert rebuilt == expected


def test_every_column_holds_its_own_field() -> None:
    """The record is built positionally: every field gets a distinct value, every column must hold it."""
    event = {
        "auditID": "audit-id",
        "stage": "Panic",
        "level": "Request",
        "verb": "verb-value",
        "requestURI": "/uri",
        "user": {"username": "user-name", "uid": "user-uid", "groups": ["user-group"], "extra": {"k": ["user-extra"]}},
        "impersonatedUser": {
            "username": "imp-name",
            "uid": "imp-uid",
            "groups": ["imp-group"],
            "extra": {"k": ["imp"]},
        },
        "sourceIPs": ["10.9.9.9"],
        "userAgent": "agent",
        "objectRef": {
            "resource": "res",
            "subresource": "sub",
            "namespace": "ns",
            "name": "obj",
            "apiGroup": "grp",
            "apiVersion": "ver",
            "uid": "obj-uid",
            "resourceVersion": "rv",
        },
        "responseStatus": {"code": 418, "status": "st", "reason": "rsn", "message": "msg", "details": {"d": 1}},
        "requestReceivedTimestamp": "2026-01-01T00:00:01.000000Z",
        "stageTimestamp": "2026-01-01T00:00:02.000000Z",
        "annotations": {"authorization.k8s.io/decision": "dec", "authorization.k8s.io/reason": "why"},
        "requestObject": {"body": 1},
        "timestamp": "2026-01-01T00:00:03Z",
    }
    result = AuditPipeline(PipelineConfig(None, RedactionConfig(()))).process(
        [event], cluster="clu", source="src", ingested_at="2026-01-01T00:00:04.000000Z"
    )
    (row,) = [as_row(line) for line in result.lines]
    assert row == {
        "cluster": "clu",
        "source": "src",
        "audit_id": "audit-id",
        "stage": "Panic",
        "level": "Request",
        "received_level": "Request",
        "verb": "verb-value",
        "request_uri": "/uri",
        "user_name": "user-name",
        "user_uid": "user-uid",
        "user_groups": ["user-group"],
        "user_extra": '{"k":["user-extra"]}',
        "impersonated_user_name": "imp-name",
        "impersonated_user_uid": "imp-uid",
        "impersonated_user_groups": ["imp-group"],
        "impersonated_user_extra": '{"k":["imp"]}',
        "source_ips": ["10.9.9.9"],
        "user_agent": "agent",
        "object_resource": "res",
        "object_subresource": "sub",
        "object_namespace": "ns",
        "object_name": "obj",
        "object_api_group": "grp",
        "object_api_version": "ver",
        "object_uid": "obj-uid",
        "object_resource_version": "rv",
        "response_code": 418,
        "response_status": "st",
        "response_reason": "rsn",
        "response_message": "msg",
        "response_details": '{"d":1}',
        "request_received_at": "2026-01-01T00:00:01.000000Z",
        "stage_at": "2026-01-01T00:00:02.000000Z",
        "authz_decision": "dec",
        "authz_reason": "why",
        "annotations": '{"authorization.k8s.io/decision":"dec","authorization.k8s.io/reason":"why"}',
        "request_object": '{"body":1}',
        "response_object": None,
        "redactions": [],
        "extra": '{"timestamp":"2026-01-01T00:00:03Z"}',
        "ingested_at": "2026-01-01T00:00:04.000000Z",
    }


def test_event_timestamps_are_stored_in_canonical_form() -> None:
    record = _record(
        _event(requestReceivedTimestamp="2021-03-08 18:06:42.512619Z", stageTimestamp="2021-03-08 18:06:43Z")
    )
    assert record["request_received_at"] == "2021-03-08T18:06:42.512619Z"
    assert record["stage_at"] == "2021-03-08T18:06:43.000000Z"


def test_only_events_without_any_timestamp_are_quarantined_from_the_corpus() -> None:
    reasons = []
    for relative in COMPLETE_AUDIT_FILES:
        result = AuditPipeline(PipelineConfig()).process(
            complete_events(relative), cluster="c", source="file", ingested_at="2026-11-21T00:00:00.000000Z"
        )
        reasons += [f.reason for f in result.failures]
    # Panther's rule-test fixtures include three events with no time at all; the archive cannot place them.
    assert len(reasons) == 3 and all(r.startswith("no timestamp") for r in reasons)


def _event(**overrides: Any) -> dict[str, Any]:
    base = complete_events("audit/openshift__openshift-docs__audit-log-basic-viewing.jsonl")[1]
    return {**base, **overrides}


def _record(event: dict[str, Any]) -> dict[str, Any]:
    result = AuditPipeline(PipelineConfig(None, RedactionConfig(()))).process(
        [event], cluster="c", source="webhook", ingested_at="x"
    )
    if result.failures:
        raise Invalid(result.failures[0].reason)
    (line,) = result.lines
    return as_row(line)


def test_fields_of_a_real_event() -> None:
    record = _record(_event())
    assert (
        record["user_name"]
        == "system:serviceaccount:openshift-kube-scheduler-operator:openshift-kube-scheduler-operator"
    )
    assert record["authz_decision"] == "allow"
    assert "cluster-admin" in record["authz_reason"]
    assert json.loads(record["annotations"])["authentication.k8s.io/legacy-token"].startswith("system:serviceaccount")
    assert record["object_resource"] == "serviceaccounts" and record["object_namespace"] == "openshift-kube-scheduler"
    assert record["response_code"] == 200 and record["request_received_at"] == "2021-03-08T18:06:42.512619Z"


def test_impersonation_and_403_fields() -> None:
    event = complete_events("audit/liggitt__audit2rbac__demo_v1.jsonl")[0]
    record = _record(event)
    assert (record["user_name"], record["impersonated_user_name"]) == ("system:admin", "bob")
    assert record["impersonated_user_groups"] == ["system:authenticated"]
    assert (record["response_code"], record["response_reason"]) == (403, "Forbidden")
    assert json.loads(record["response_details"]) == {"kind": "pods"}
    # v1beta1-era fields this version does not map are kept, not dropped.
    assert json.loads(record["extra"]) == {
        "metadata": {"creationTimestamp": "2017-09-11T19:55:05Z"},
        "timestamp": "2017-09-11T19:55:05Z",
    }


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("2021-03-08T18:06:42.512619Z", "2021-03-08T18:06:42.512619Z"),
        ("2022-05-18T20:30:39.826954819+08:00", "2022-05-18T12:30:39.826954Z"),
        ("2022-11-29 00:09:04.38", "2022-11-29T00:09:04.380000Z"),
        ("2024-11-13 18:34:10.595141000", "2024-11-13T18:34:10.595141Z"),
        ("2017-09-11T19:55:05Z", "2017-09-11T19:55:05.000000Z"),
        ("2020-01-01T00:00:00-0130", "2020-01-01T01:30:00.000000Z"),
    ],
)
def test_timestamps_are_canonical_utc_microseconds(raw: str, canonical: str) -> None:
    assert timestamps.canonical(raw) == canonical


@pytest.mark.parametrize("raw", ["2021-02-30T00:00:00.000000Z", "yesterday", "", 1700000000, "2021-13-01T00:00:00Z"])
def test_invalid_timestamps_are_rejected(raw: Any) -> None:
    with pytest.raises(ValueError):
        timestamps.canonical(raw)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"responseStatus": {"code": "200"}}, "got `str` - at `$.responseStatus.code`"),
        ({"responseStatus": {"code": 2**40}}, "Expected `int` <= 2147483647 - at `$.responseStatus.code`"),
        ({"user": {"username": "a", "groups": "admins"}}, "got `str` - at `$.user.groups`"),
        ({"sourceIPs": "10.0.0.1"}, "got `str` - at `$.sourceIPs`"),
        ({"annotations": {"a": 1}}, "Expected `str`, got `int` - at `$.annotations[...]`"),
        ({"objectRef": ["pods"]}, "got `array` - at `$.objectRef`"),
        ({"verb": 7}, "got `int` - at `$.verb`"),
        ({"stageTimestamp": "soon"}, "stageTimestamp: not an RFC 3339 timestamp"),
    ],
)
def test_wrong_types_are_refused_with_the_path(overrides: dict[str, Any], reason: str) -> None:
    with pytest.raises(Invalid) as caught:
        _record(_event(**overrides))
    assert reason in str(caught.value)


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ({"kind": "Pod", "auditID": "a", "stage": "ResponseComplete", "level": "Metadata"}, "'Pod' - at `$.kind`"),
        ({"apiVersion": "v1", "auditID": "a", "stage": "ResponseComplete", "level": "Metadata"}, "apiVersion must be"),
        ({"auditID": "", "stage": "ResponseComplete", "level": "Metadata"}, "length >= 1 - at `$.auditID`"),
        ({"auditID": "a", "stage": "Done", "level": "Metadata"}, "'Done' - at `$.stage`"),
        ({"auditID": "a", "stage": "Panic", "level": "None"}, "'None' - at `$.level`"),
        ({"stage": "Panic", "level": "Metadata"}, "missing required field `auditID`"),
    ],
)
def test_identity_checks(event: dict[str, Any], reason: str) -> None:
    with pytest.raises(Invalid) as caught:
        _record({**event, "requestReceivedTimestamp": "2026-11-21T00:00:00.000000Z"})
    assert reason in str(caught.value)
