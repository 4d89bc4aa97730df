"""functions/events_poller against moto (S3, DynamoDB, Secrets Manager) and the fake API server:
the schedule fans out, each invocation polls one cluster with its token from Secrets Manager,
the checkpoint and lease live in the state table."""

from __future__ import annotations

import base64
import logging
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

import boto3
import pytest
import trustme

from auditlake.clusters.registry import DynamoRegistry, PollConfig
from auditlake.events.api import KubeApi, KubeError
from auditlake.events.auth import EksCredentials
from auditlake.events.leases import LocalLeases
from auditlake.events.poller import EventsPoller
from auditlake.jsonio import loads
from auditlake.landing import Landing, decode_lines
from auditlake.stores.local import LocalStore
from auditlake.stores.s3 import S3Store
from tests.fakes.kube import FakeKube
from tests.helpers import AwsStack, LambdaContext, corpus_kube_events, load_function, raw_keys_of

NOW = datetime.now(UTC).isoformat()


@pytest.fixture
def seeded(fake_kube: FakeKube) -> FakeKube:
    for event in corpus_kube_events()[:20]:
        fake_kube.add(event)
    return fake_kube


def register(aws: AwsStack, fake: FakeKube, name: str = "prod", *, token: str = "reader-token",
             ca: bytes | None = None, insecure: bool = False) -> str:  # fmt: skip
    secret = boto3.client("secretsmanager").create_secret(Name=f"auditlake/{name}-{aws.table}", SecretString=token)
    config = PollConfig(
        "static", server=fake.url, ca_pem=(ca or fake.ca.cert_pem.bytes()).decode(), token_secret=secret["ARN"],
        insecure_skip_tls_verify=insecure,
    )  # fmt: skip
    DynamoRegistry(aws.dynamodb, aws.table).set_polling(name, config, created_at=NOW)
    return str(secret["ARN"])


@pytest.fixture
def poller_app(aws: AwsStack, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    return load_function(
        monkeypatch,
        "events_poller",
        {"AUDITLAKE_RAW_BUCKET": aws.bucket, "AUDITLAKE_STATE_TABLE": aws.table, "AWS_REGION": "us-east-1"},
    )


# 13 s left: 8 s to poll, of which 5 s are kept to flush, so watches of ~3 s at most.
SHORT = LambdaContext(remaining_ms=13_000)


def landed_uids(aws: AwsStack) -> list[tuple[str, str]]:
    store = S3Store(aws.s3, aws.bucket)
    rows = [loads(line) for key in raw_keys_of(store, "events", "prod") for line in decode_lines(store.get(key))]
    return [(r["uid"], r["resource_version"]) for r in rows]


def test_schedule_fans_out_one_invocation_per_cluster(aws: AwsStack, fake_kube: FakeKube,
                                                      poller_app: ModuleType) -> None:  # fmt: skip
    for name in ("prod", "staging", "edge-1"):
        register(aws, fake_kube, name)
    DynamoRegistry(aws.dynamodb, aws.table).add_cluster("webhook-only", "f" * 64, created_at=NOW)
    calls: list[dict[str, Any]] = []

    class Lambda:
        def invoke(self, **kwargs: Any) -> dict[str, Any]:
            calls.append(kwargs)
            return {"StatusCode": 202}

    poller_app.fleet.invoker = Lambda()
    answer = poller_app.lambda_handler({"source": "aws.scheduler"}, LambdaContext())
    assert answer == {"dispatched": ["edge-1", "prod", "staging"]}
    assert [loads(c["Payload"]) for c in calls] == [{"cluster": "edge-1"}, {"cluster": "prod"}, {"cluster": "staging"}]
    assert {c["InvocationType"] for c in calls} == {"Event"}  # asynchronous: nobody waits on another cluster
    assert {c["FunctionName"] for c in calls} == {LambdaContext.invoked_function_arn}


def test_the_schedule_starts_at_most_the_stack_s_fan_out_bound(aws: AwsStack, fake_kube: FakeKube,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """PollerMaxFanOut reaches the fleet: 3 clusters, a bound of 2, so two minutes poll all three."""
    for name in ("a", "b", "c"):
        register(aws, fake_kube, name)
    env = {"AUDITLAKE_RAW_BUCKET": aws.bucket, "AUDITLAKE_STATE_TABLE": aws.table, "AWS_REGION": "us-east-1",
           "AUDITLAKE_POLLER_MAX_FANOUT": "2"}  # fmt: skip
    app = load_function(monkeypatch, "events_poller", env)

    class Lambda:
        def invoke(self, **kwargs: Any) -> dict[str, Any]:
            return {"StatusCode": 202}

    app.fleet.invoker = Lambda()
    started: set[str] = set()
    for minute in ("2026-11-21T05:30:00Z", "2026-11-21T05:31:00Z"):
        answer = app.lambda_handler({"source": "aws.events", "time": minute}, LambdaContext())
        assert len(answer["dispatched"]) == 2
        started |= set(answer["dispatched"])
    assert started == {"a", "b", "c"}


def test_polls_with_a_token_from_secrets_manager_and_survives_its_rotation(
    aws: AwsStack, seeded: FakeKube, poller_app: ModuleType
) -> None:
    arn = register(aws, seeded)
    first = poller_app.lambda_handler({"cluster": "prod"}, SHORT)
    assert (first["emitted"], first["api"], first["skipped"]) == (20, "events.k8s.io/v1", None)
    lease = aws.dynamodb.get_item(TableName=aws.table, Key={"pk": {"S": "POLLER#prod"}, "sk": {"S": "LEASE"}})["Item"]
    assert loads(lease["checkpoint"]["S"].encode())["resource_version"] == str(seeded.version)
    assert "ttl" not in lease  # a checkpoint never expires

    boto3.client("secretsmanager").put_secret_value(SecretId=arn, SecretString='{"token": "rotated"}')
    seeded.tokens = {"rotated"}
    seeded.recur(corpus_kube_events()[0]["metadata"]["uid"])
    second = poller_app.lambda_handler({"cluster": "prod"}, SHORT)  # warm: the old token is cached
    assert (second["emitted"], second["state_writes"]) == (1, 3) and seeded.unauthorized == 1
    landed = landed_uids(aws)
    assert len(landed) == len(set(landed)) == 21


def test_an_unregistered_cluster_is_a_clear_error(aws: AwsStack, poller_app: ModuleType) -> None:
    with pytest.raises(ValueError, match="not registered for Events polling"):
        poller_app.lambda_handler({"cluster": "nope"}, SHORT)


def test_tls_is_verified_against_the_cluster_ca(aws: AwsStack, seeded: FakeKube, poller_app: ModuleType) -> None:
    register(aws, seeded, ca=trustme.CA().cert_pem.bytes())  # someone else's CA: a man in the middle
    with pytest.raises(KubeError, match="CERTIFICATE_VERIFY_FAILED"):
        poller_app.lambda_handler({"cluster": "prod"}, SHORT)
    assert landed_uids(aws) == []


def test_the_insecure_flag_works_and_warns_on_every_run(aws: AwsStack, seeded: FakeKube, poller_app: ModuleType,
                                                        caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    register(aws, seeded, ca=trustme.CA().cert_pem.bytes(), insecure=True)
    for _ in range(2):
        with caplog.at_level(logging.WARNING, logger="auditlake"):
            poller_app.lambda_handler({"cluster": "prod"}, SHORT)
    assert sum("TLS verification is OFF" in r.getMessage() for r in caplog.records) == 2


def test_eks_cluster_with_describe_cluster_and_an_iam_token(seeded: FakeKube, tmp_path: Any) -> None:
    seeded.tokens, seeded.accept_eks_for = set(), "prod-eks"

    class Eks:
        def describe_cluster(self, name: str) -> dict[str, Any]:
            assert name == "prod-eks"
            ca = base64.b64encode(seeded.ca.cert_pem.bytes()).decode()
            return {"cluster": {"endpoint": seeded.url, "certificateAuthority": {"data": ca}, "status": "ACTIVE"}}

    sts = boto3.client("sts", region_name="eu-west-1", endpoint_url="https://sts.eu-west-1.amazonaws.com")
    source = KubeApi(EksCredentials(Eks(), sts, "prod-eks"))
    landing = Landing(LocalStore(tmp_path), "events")
    stats = EventsPoller(source, landing, LocalLeases(tmp_path / "leases"), "prod", holder="x").poll(
        30, keep_watching=False
    )
    assert stats.emitted == 20 and seeded.unauthorized == 0
