"""The webhook Lambda handler, invoked in-process against moto in server mode (real HTTP to S3,
DynamoDB and SSM): the whole corpus, duplicated deliveries, every bad input, storage failures."""

from __future__ import annotations

import base64
import copy
import json
import sys
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

import pytest

from auditlake.clusters.registry import DynamoRegistry, new_token, token_hash
from auditlake.clusters.webhook_kubeconfig import asset
from auditlake.demo.replay import batches, eventlist
from auditlake.demo.synth import PLANTED_SECRET_VALUE, Synth
from auditlake.http_api import MAX_BODY_BYTES
from auditlake.stores.s3 import S3Store
from tests.helpers import (
    COMPLETE_AUDIT_FILES,
    AwsStack,
    LambdaContext,
    complete_events,
    corpus_path,
    fixture,
    landed,
    load_function,
    nested,
)

Invoke = Callable[..., tuple[int, dict[str, Any]]]


def load_app(monkeypatch: pytest.MonkeyPatch, aws: AwsStack, **env: str) -> ModuleType:
    values = {
        "AUDITLAKE_RAW_BUCKET": aws.bucket,
        "AUDITLAKE_STATE_TABLE": aws.table,
        **env,
    }
    return load_function(monkeypatch, "webhook", values)


def invoker(app: ModuleType) -> Invoke:
    def invoke(body: bytes, token: str | None, *, binary: bool = False) -> tuple[int, dict[str, Any]]:
        event = copy.deepcopy(fixture("http_api_post.json"))
        if token is not None:
            event["headers"]["authorization"] = f"Bearer {token}"
        if binary:
            event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode(), True
        else:
            event["body"] = body.decode("utf-8")
        reply = app.lambda_handler(event, LambdaContext())
        return reply["statusCode"], json.loads(reply["body"])

    return invoke


def register(aws: AwsStack, name: str) -> str:
    token = new_token()
    DynamoRegistry(aws.dynamodb, aws.table).add_cluster(
        name, token_hash(token), created_at=datetime.now(UTC).isoformat()
    )
    return token


def objects(aws: AwsStack, prefix: str = "") -> dict[str, bytes]:
    store = S3Store(aws.s3, aws.bucket)
    return {key: store.get(key) for key in store.list(prefix)}


def landing_state(aws: AwsStack) -> tuple[list[str], list[dict[str, Any]]]:
    """Object keys and records, minus ``ingested_at`` (a redelivery is truthfully stamped anew)."""
    records = [{k: v for k, v in r.items() if k != "ingested_at"} for r in landed(aws)]
    return sorted(objects(aws)), records


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, aws: AwsStack) -> ModuleType:
    return load_app(monkeypatch, aws)


def test_every_complete_corpus_event_lands_once_per_key(aws: AwsStack, app: ModuleType) -> None:
    invoke = invoker(app)
    expected: Counter[tuple[str, str, str]] = Counter()
    deliveries: list[tuple[bytes, str]] = []
    for number, relative in enumerate(COMPLETE_AUDIT_FILES):
        cluster = f"corpus-{number}"
        token = register(aws, cluster)
        events = complete_events(relative)
        deliveries += [(eventlist(batch), token) for batch in batches(events)]
        for event in events:
            if any(k in event for k in ("requestReceivedTimestamp", "stageTimestamp", "timestamp")):
                expected[(cluster, event["auditID"], event["stage"])] += 1
    for body, token in deliveries:
        status, reply = invoke(body, token)
        assert status == 200, reply
    first = landing_state(aws)
    got = Counter((r["cluster"], r["audit_id"], r["stage"]) for r in landed(aws))
    # Each (cluster, auditID, stage) lands as often as it was sent - no loss, no amplification.
    # (Falco's and Panther's hand-made fixtures reuse keys; the compactor keeps one per key.)
    assert got == expected
    # kube-apiserver retries whole batches: a second delivery of everything changes no object.
    for body, token in deliveries:
        assert invoke(body, token)[0] == 200
    assert landing_state(aws) == first


def test_a_redelivered_batch_adds_nothing(aws: AwsStack, app: ModuleType) -> None:
    invoke = invoker(app)
    token = register(aws, "retry")
    body = eventlist(next(batches(complete_events("audit/falcosecurity__falco__trace_files_k8s_audit.jsonl"))))
    assert invoke(body, token)[0] == 200
    first = landing_state(aws)
    assert invoke(body, token)[0] == 200
    assert landing_state(aws) == first


def test_unauthorised(aws: AwsStack, app: ModuleType) -> None:
    invoke = invoker(app)
    body = eventlist(next(batches(complete_events("audit/liggitt__audit2rbac__demo_v1.jsonl"))))
    assert invoke(body, None) == (401, {"message": "Unauthorized"})
    assert invoke(body, "alk_not-registered") == (401, {"message": "Unauthorized"})
    assert objects(aws) == {}


def _bad(case: dict[str, Any]) -> tuple[bytes, bool]:
    if "body" in case:
        return str(case["body"]).encode(), False
    if "body_base64" in case:
        return base64.b64decode(case["body_base64"]), True
    if "corpus" in case:
        return corpus_path(case["corpus"]).read_bytes(), False
    return nested(case["nesting"]), False


@pytest.mark.parametrize("case", fixture("bad_bodies.json"), ids=lambda c: c["name"])
def test_bad_bodies_get_400_and_are_quarantined_redacted_or_unchanged(
    aws: AwsStack, app: ModuleType, case: dict[str, Any]
) -> None:
    token = register(aws, "bad")
    body, binary = _bad(case)
    status, reply = invoker(app)(body, token, binary=binary)
    assert status == 400 and case["reason"] in reply["message"]
    stored = objects(aws, "quarantine/audit/bad/")
    payloads = [data for key, data in stored.items() if key.endswith(".body")]
    # Byte for byte only when it is not JSON even to Go; what parses (bytes that are not UTF-8 read as
    # U+FFFD, as Go reads them) is kept as redacted items in the manifest.
    assert payloads == ([body] if case["name"] in {"invalid-json", "nan-constant"} else [])
    assert objects(aws, "raw/") == {}


def test_body_over_the_limit_gets_413(aws: AwsStack, app: ModuleType) -> None:
    """Just over the webhook's limit, where Lambda still accepts the invocation (the envelope's
    arithmetic and the largest such body: test_webhook_envelope_lambda.py)."""
    token = register(aws, "big")
    event = complete_events("audit/liggitt__audit2rbac__demo_v1.jsonl")[0]
    body = eventlist([json.dumps({**event, "pad": "x" * MAX_BODY_BYTES}).encode()])
    status, reply = invoker(app)(body, token)
    assert status == 413 and "--audit-webhook-truncate-max-batch-size" in reply["fix"]


def test_storage_failure_answers_503_and_the_retry_is_stored(aws: AwsStack, monkeypatch: pytest.MonkeyPatch) -> None:
    token = register(aws, "flaky")
    app = load_app(monkeypatch, aws, AUDITLAKE_RAW_BUCKET="not-created-yet")
    body = eventlist(next(batches(complete_events("audit/liggitt__audit2rbac__demo_v1.jsonl"))))
    assert invoker(app)(body, token) == (503, {"message": "storage unavailable, retry"})
    aws.s3.create_bucket(Bucket="not-created-yet")
    status, reply = invoker(app)(body, token)
    assert status == 200 and reply["accepted"] == 37


def test_metrics_and_logs(aws: AwsStack, app: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    # Powertools keeps one handler per service for the process; point it at this test's stdout.
    app.logger.logger_handler.setStream(sys.stdout)
    token = register(aws, "observed")
    events = list(Synth(minutes=2, rate=20, seed=1).events())
    assert PLANTED_SECRET_VALUE in json.dumps(events)
    for batch in batches(events):
        assert invoker(app)(eventlist(batch), token)[0] == 200
    output = capsys.readouterr()
    logs = output.out + output.err
    emf = [json.loads(line) for line in output.out.splitlines() if '"_aws"' in line]
    assert emf and all(doc["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "auditlake-test" for doc in emf)
    assert metric_total(emf, "EventsAccepted") == len(events)
    assert metric_total(emf, "Forbidden403Seen") == 15
    assert metric_total(emf, "EventsRedacted") > 0
    entries = [json.loads(line) for line in output.out.splitlines() if line.startswith('{"level"')]
    stored = [e for e in entries if e["message"] == "batch stored"]
    assert len(stored) == len(emf) and stored[0]["cluster"] == "observed" and stored[0]["correlation_id"]
    # Bodies and credentials never reach the logs.
    for forbidden in (PLANTED_SECRET_VALUE, token, "requestObject", "kube-root-ca.crt"):
        assert forbidden not in logs


def metric_total(emf: list[dict[str, Any]], name: str) -> float:
    """EMF values are a number or a list of numbers."""
    values = [doc[name] for doc in emf if name in doc]
    return sum(sum(v) if isinstance(v, list) else v for v in values)


def test_only_the_token_hash_is_stored(aws: AwsStack) -> None:
    token = register(aws, "hashed")
    items = aws.dynamodb.scan(TableName=aws.table)["Items"]
    dump = json.dumps(items)
    assert token not in dump and token_hash(token) in dump


def test_pipeline_policy_from_ssm(aws: AwsStack, monkeypatch: pytest.MonkeyPatch) -> None:
    aws.ssm.put_parameter(Name="/auditlake/policy", Type="String", Tier="Advanced", Value=asset("audit-policy.yaml"))
    app = load_app(monkeypatch, aws, AUDITLAKE_POLICY_PARAMETER="/auditlake/policy")
    token = register(aws, "filtered")
    events = list(Synth(minutes=2, rate=20, seed=2).events())
    filtered = 0
    for batch in batches(events):
        status, reply = invoker(app)(eventlist(batch), token)
        assert status == 200
        filtered += reply["filtered"]
    records = list(landed(aws))
    assert filtered > len(events) / 2 and len(records) == len(events) - filtered
    assert not [r for r in records if r["stage"] == "RequestReceived"]
    assert not [r for r in records if r["object_resource"] == "leases"]
