"""The EKS forwarder Lambda, invoked in-process against moto in server mode: the corpus' real
subscription payload, EKS-shaped audit events, other streams, control, truncated and invalid
messages, the pipeline policy, storage failure and redelivery."""

from __future__ import annotations

import hashlib
import json
from types import ModuleType
from typing import Any

import pytest

from auditlake.stores import StoreError
from auditlake.stores.s3 import S3Store
from tests.helpers import (
    API_STREAM,
    AwsStack,
    LambdaContext,
    awslogs_event,
    corpus_path,
    eks_messages,
    landed,
    load_function,
    raw_keys_of,
    subscription_document,
)

REAL_PAYLOAD = "eks-cloudwatch/aws__aws-lambda-go__events_testdata__cloudwatch-logs-event.json"
REAL_DECODED = "eks-cloudwatch/aws__aws-lambda-go__events_testdata__cloudwatch-logs-event.DECODED.json"


def load_app(monkeypatch: pytest.MonkeyPatch, aws: AwsStack, **env: str) -> ModuleType:
    values = {
        "AUDITLAKE_RAW_BUCKET": aws.bucket,
        **env,
    }
    return load_function(monkeypatch, "cloudwatch", values)


def invoke(app: ModuleType, document: dict[str, Any]) -> dict[str, int]:
    result: dict[str, int] = app.lambda_handler(awslogs_event(document), LambdaContext())
    return result


def quarantined(aws: AwsStack, cluster: str) -> list[dict[str, Any]]:
    store = S3Store(aws.s3, aws.bucket)
    return [json.loads(store.get(k)) for k in store.list(f"quarantine/audit/{cluster}/") if k.endswith(".json")]


def test_real_payload_decodes_and_is_quarantined_whole(monkeypatch: pytest.MonkeyPatch, aws: AwsStack) -> None:
    """aws-lambda-go's fixture: decodes to exactly the corpus' DECODED bytes; its log group is not an
    EKS cluster's, so nothing is archived and the whole delivery waits in quarantine: it parses, so
    as its log events' messages (redacted as quarantined items are), never as bytes."""
    app = load_app(monkeypatch, aws)
    event = json.loads(corpus_path(REAL_PAYLOAD).read_text())
    result = app.lambda_handler(event, LambdaContext())
    assert result["quarantined"] == 1 and result["accepted"] == 0
    assert list(landed(aws)) == []
    (manifest,) = quarantined(aws, "_unrouted")
    assert "testLogGroup" in manifest["reason"] and manifest["log_group"] == "testLogGroup"
    decoded = corpus_path(REAL_DECODED).read_bytes()
    assert manifest["payload_sha256"] == hashlib.sha256(decoded).hexdigest() and "payload_key" not in manifest
    log_events = json.loads(decoded)["logEvents"]
    assert [item["origin"]["event_id"] for item in manifest["items"]] == [e["id"] for e in log_events]


def test_eks_events_land_with_cluster_from_log_group(monkeypatch: pytest.MonkeyPatch, aws: AwsStack) -> None:
    app = load_app(monkeypatch, aws)
    result = invoke(app, subscription_document(eks_messages(), log_group="/aws/eks/Prod_EU/cluster"))
    assert result == {**result, "events": 5, "accepted": 5, "quarantined": 0, "redacted": 1, "forbidden": 1}
    rows = {row["audit_id"][:8]: row for row in landed(aws)}
    assert {row["cluster"] for row in rows.values()} == {"prod-eu"}  # EKS allows what a DNS label does not
    assert {row["source"] for row in rows.values()} == {"cloudwatch"}
    admin = rows["5b0e8f6c"]
    extra = json.loads(admin["user_extra"])
    assert extra["arn"] == ["arn:aws:sts::123456789012:assumed-role/EKSAdmin/alice@example.com"]
    assert extra["sessionName"] == ["alice@example.com"] and admin["user_uid"].startswith("aws-iam-authenticator:")
    assert (admin["verb"], admin["object_resource"], admin["object_name"]) == ("delete", "secrets", "db-pass")
    service_account = json.loads(rows["c41f0b2e"]["user_extra"])
    assert service_account["authentication.kubernetes.io/pod-name"] == ["aws-node-7xk2p"]
    assert rows["9d3c1a77"]["response_code"] == 403
    # EKS's own policy logged this configmap with its body; the pipeline's redaction removed it.
    configmap = rows["2f6b9c1d"]
    assert configmap["response_object"] is None and configmap["redactions"]
    assert not any("s3cr3t-planted" in json.dumps(row) for row in rows.values())


def test_other_streams_and_control_messages_store_nothing(monkeypatch: pytest.MonkeyPatch, aws: AwsStack) -> None:
    app = load_app(monkeypatch, aws)
    skipped = invoke(
        app, subscription_document(["I1120 10:00:00.000000 1 controller.go:1] started"], stream=API_STREAM)
    )
    assert skipped["skipped"] == 1 and skipped["accepted"] == 0
    control = {
        "messageType": "CONTROL_MESSAGE",
        "owner": "CloudwatchLogs",
        "logGroup": "",
        "logStream": "",
        "subscriptionFilters": [],
        "logEvents": [{"id": "", "timestamp": 1525983444232, "message": "CWL CONTROL MESSAGE: Checking health"}],
    }
    assert invoke(app, control)["control"] == 1
    store = S3Store(aws.s3, aws.bucket)
    assert list(store.list("")) == []


def test_truncated_and_invalid_messages_are_quarantined_with_their_ids(
    monkeypatch: pytest.MonkeyPatch, aws: AwsStack
) -> None:
    app = load_app(monkeypatch, aws)
    good = eks_messages()[:2]
    big_secret = json.loads(eks_messages()[0])
    big_secret["level"] = "RequestResponse"
    big_secret["requestObject"] = {"kind": "Secret", "data": {"password": "aHVudGVyMg=="}, "padding": "x" * 5000}
    truncated = json.dumps(big_secret, separators=(",", ":"))[:2000] + "[Truncated...]"
    document = subscription_document([good[0], truncated, "not json at all", '{"kind":"Event","auditID":7}', good[1]])
    result = invoke(app, document)
    assert (result["accepted"], result["quarantined"], result["truncated"]) == (2, 3, 1)
    (manifest,) = quarantined(aws, "prod")
    assert manifest["log_group"] == "/aws/eks/prod/cluster"
    items = {item["index"]: item for item in manifest["items"]}
    assert set(items) == {1, 2, 3}
    cut = items[1]
    assert cut["auditID"] == "5b0e8f6c-1e2a-4d7b-9a51-0c4f2b1d9e01" and cut["stage"] == "ResponseComplete"
    assert cut["origin"]["log_stream"].startswith("kube-apiserver-audit-")
    assert cut["origin"]["event_id"] == document["logEvents"][1]["id"]
    assert "truncated" in cut["reason"] and "requestObject" not in cut["line"] and "aHVudGVyMg" not in cut["line"]
    assert cut["line"].startswith('{"kind":"Event"')
    assert items[2]["line"] == "not json at all" and "invalid JSON" in items[2]["reason"]
    assert items[3]["origin"]["event_id"] == document["logEvents"][3]["id"]


def test_pipeline_policy_makes_up_for_eks_fixed_policy(monkeypatch: pytest.MonkeyPatch, aws: AwsStack) -> None:
    """EKS logs what its own policy says; the pipeline policy drops node heartbeats and keeps the rest."""
    policy = """
apiVersion: audit.k8s.io/v1
kind: Policy
rules:
  - level: None
    userGroups: ["system:nodes"]
    verbs: ["patch"]
    resources: [{group: "", resources: ["nodes/status"]}]
  - level: Metadata
"""
    aws.ssm.put_parameter(Name="/auditlake/test/policy", Value=policy, Type="String", Overwrite=True)
    app = load_app(monkeypatch, aws, AUDITLAKE_POLICY_PARAMETER="/auditlake/test/policy")
    result = invoke(app, subscription_document(eks_messages()))
    assert (result["accepted"], result["filtered"]) == (4, 1)
    rows = list(landed(aws))
    assert all(row["level"] == "Metadata" and row["request_object"] is None for row in rows)
    assert "e8a2d4f1-0c3b-4e5a-8f7d-9b6c5a4e3d04" not in {row["audit_id"] for row in rows}


def test_storage_failure_raises_and_the_redelivery_lands_once(monkeypatch: pytest.MonkeyPatch, aws: AwsStack) -> None:
    app = load_app(monkeypatch, aws)
    document = subscription_document(eks_messages())
    aws.s3.delete_bucket(Bucket=aws.bucket)
    with pytest.raises(StoreError):  # Lambda retries the asynchronous invocation
        invoke(app, document)
    aws.s3.create_bucket(Bucket=aws.bucket)
    invoke(app, document)
    invoke(app, document)  # CloudWatch delivered it twice: the same object, rewritten
    keys = raw_keys_of(S3Store(aws.s3, aws.bucket), "audit", "prod")
    assert len(keys) == 1
    assert len(list(landed(aws))) == 5


def test_unreadable_payload_is_quarantined_not_retried(monkeypatch: pytest.MonkeyPatch, aws: AwsStack) -> None:
    app = load_app(monkeypatch, aws)
    result = app.lambda_handler({"awslogs": {"data": "bm90IGd6aXA="}}, LambdaContext())
    assert result["quarantined"] == 1
    (manifest,) = quarantined(aws, "_unrouted")
    assert "base64(gzip)" in manifest["reason"]
