"""The deployed webhook handler (functions/webhook/app.py, against moto) invoked with the payload 2.0
event API Gateway builds, at the sizes where Lambda's invocation limit decides what the sender sees:
the largest invocation Lambda accepts must carry the 413 and the truncation advice back, and a body
at the limit must be stored."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from auditlake.clusters.registry import DynamoRegistry, new_token, token_hash
from auditlake.http_api import (
    LAMBDA_MAX_REQUEST_BYTES,
    MAX_BODY_BYTES,
    TRUNCATE_FLAGS,
    http_api_event,
    invocation_bytes,
)
from auditlake.landing import decode_lines
from auditlake.stores.s3 import S3Store
from tests.envelope import largest_fitting, realistic_body
from tests.helpers import AwsStack, LambdaContext, load_function, raw_keys_of


@pytest.fixture
def invoke(monkeypatch: pytest.MonkeyPatch, aws: AwsStack) -> Any:
    app = load_function(monkeypatch, "webhook", {"AUDITLAKE_RAW_BUCKET": aws.bucket,
                                                  "AUDITLAKE_STATE_TABLE": aws.table})  # fmt: skip

    def call(event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        assert invocation_bytes(event) < LAMBDA_MAX_REQUEST_BYTES  # what Lambda would refuse never runs
        reply = app.lambda_handler(event, LambdaContext())
        return reply["statusCode"], json.loads(reply["body"])

    return call


def register(aws: AwsStack) -> str:
    token = new_token()
    DynamoRegistry(aws.dynamodb, aws.table).add_cluster(
        "big", token_hash(token), created_at=datetime.now(UTC).isoformat()
    )
    return token


@pytest.mark.parametrize("base64_encoded", [False, True], ids=["text", "base64"])
def test_the_largest_invocation_lambda_accepts_answers_413_with_the_advice(
    aws: AwsStack, invoke: Any, base64_encoded: bool
) -> None:
    token = register(aws)
    size = largest_fitting(realistic_body, MAX_BODY_BYTES, LAMBDA_MAX_REQUEST_BYTES, base64_encoded=base64_encoded)
    status, reply = invoke(http_api_event(realistic_body(size), token=token, base64_encoded=base64_encoded))
    assert status == 413
    assert reply == {
        "message": f"batch of {size} bytes exceeds the {MAX_BODY_BYTES}-byte limit",
        "fix": f"run kube-apiserver with {TRUNCATE_FLAGS}",
    }
    assert list(S3Store(aws.s3, aws.bucket).list("")) == []


def test_a_body_at_the_limit_is_stored(aws: AwsStack, invoke: Any) -> None:
    token = register(aws)
    body = realistic_body(MAX_BODY_BYTES)
    status, reply = invoke(http_api_event(body, token=token))
    assert status == 200, reply
    store = S3Store(aws.s3, aws.bucket)
    (key,) = raw_keys_of(store, "audit", "big")
    assert len(decode_lines(store.get(key))) == reply["accepted"] > 4000
