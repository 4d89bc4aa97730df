"""The webhook's body limit against the invocation Lambda really receives: the body inside API
Gateway's payload 2.0 event, escaped or base64-encoded. A body up to the limit must reach the
function (and be taken), one just over it must reach it too (and get the 413 with the advice), and
the advice must keep kube-apiserver's batches under the limit whatever they escape to."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from auditlake.audit.pipeline import AuditPipeline, PipelineConfig
from auditlake.clusters.registry import StaticTokens, token_hash
from auditlake.clusters.webhook_kubeconfig import apiserver_flags
from auditlake.demo.replay import eventlist
from auditlake.http_api import (
    BATCH_MAX_EVENTS,
    ENVELOPE_BUDGET,
    EVENTLIST_SLACK,
    LAMBDA_MAX_REQUEST_BYTES,
    MAX_BODY_BYTES,
    TRUNCATE_FLAGS,
    TRUNCATE_MAX_EVENT_BYTES,
    fits_lambda,
    http_api_event,
    invocation_bytes,
)
from auditlake.ingest.webhook import AuditWebhook
from auditlake.landing import Landing
from auditlake.stores.local import LocalStore
from tests.envelope import corpus_items, largest_fitting, padded_item, realistic_body, worst_body
from tests.helpers import fixture

TOKEN = "alk_" + "x" * 43


def webhook(tmp_path: Path) -> AuditWebhook:
    return AuditWebhook(StaticTokens({token_hash(TOKEN): "prod"}), AuditPipeline(PipelineConfig()),
                        Landing(LocalStore(tmp_path)))  # fmt: skip


def answer(hook: AuditWebhook, event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """What the function answers to this invocation (functions/webhook/app.py passes these fields)."""
    reply = hook.handle_http_api(event["headers"]["authorization"], event["body"],
                                 base64_encoded=event["isBase64Encoded"])  # fmt: skip
    return reply["statusCode"], json.loads(reply["body"])


def shape(value: Any) -> Any:
    return {k: shape(v) for k, v in value.items()} if isinstance(value, dict) else type(value).__name__


def test_the_envelope_is_the_http_api_event_the_function_is_tested_with() -> None:
    body = realistic_body(50_000)
    built = http_api_event(body, token=TOKEN)
    recorded = fixture("http_api_post.json")
    # Same fields, same types, as the recorded payload 2.0 event (headers: kube-apiserver's own and
    # those API Gateway adds, a superset of the recorded ones).
    assert {k: v for k, v in shape(built).items() if k != "headers"} == {
        k: v for k, v in shape(recorded).items() if k != "headers"
    }
    assert set(recorded["headers"]) <= set(built["headers"])
    assert built["headers"]["authorization"] == f"Bearer {TOKEN}"
    assert built["body"].encode() == body and built["isBase64Encoded"] is False
    binary = http_api_event(body, base64_encoded=True)
    assert base64.b64decode(binary["body"]) == body and binary["isBase64Encoded"] is True
    # Measured as Lambda counts the request: compact JSON, the body's quotes escaped once more.
    assert invocation_bytes(built) == len(json.dumps(built, separators=(",", ":"), ensure_ascii=False).encode())
    assert invocation_bytes(built) - len(body) < ENVELOPE_BUDGET


def test_the_budget_bounds_what_surrounds_the_body() -> None:
    overhead = invocation_bytes(http_api_event(b""))
    assert 800 < overhead < 2_000  # a real kube-apiserver request: about 1 KB besides its body
    # Near the most HTTP API lets through (10,240 bytes of request line and header values), all of it
    # escaping to 2x, the user agent twice (headers and requestContext.http).
    crowded = {"user-agent": '"' * 5000, **{f"x-h{i}": '"' * 1000 for i in range(5)}}
    assert invocation_bytes(http_api_event(b"", headers=crowded)) - overhead < ENVELOPE_BUDGET


@pytest.mark.parametrize("make", [realistic_body, worst_body], ids=["corpus", "all-quotes"])
def test_a_body_at_the_limit_reaches_the_function_and_is_taken(tmp_path: Path, make: Any) -> None:
    body = make(MAX_BODY_BYTES)
    event = http_api_event(body, token=TOKEN)
    assert fits_lambda(event) and fits_lambda(event, ascii_only=True)
    status, reply = answer(webhook(tmp_path), event)
    assert status == 200, reply
    assert reply["accepted"] >= 1


@pytest.mark.parametrize(
    ("make", "base64_encoded", "at_least"),
    [
        (realistic_body, False, 5_300_000),  # real batches grow ~15% escaped
        (realistic_body, True, 4_660_000),  # base64: 4/3
        (worst_body, False, MAX_BODY_BYTES + 100_000),  # every byte doubled
    ],
    ids=["corpus", "corpus-base64", "all-quotes"],
)
def test_the_largest_body_that_reaches_the_function_gets_the_413_and_the_advice(
    tmp_path: Path, make: Any, base64_encoded: bool, at_least: int
) -> None:
    size = largest_fitting(make, MAX_BODY_BYTES, LAMBDA_MAX_REQUEST_BYTES, base64_encoded=base64_encoded)
    assert size >= at_least
    event = http_api_event(make(size), token=TOKEN, base64_encoded=base64_encoded)
    assert invocation_bytes(event) < LAMBDA_MAX_REQUEST_BYTES
    assert invocation_bytes(http_api_event(make(size + 1), base64_encoded=base64_encoded)) >= LAMBDA_MAX_REQUEST_BYTES
    status, reply = answer(webhook(tmp_path), event)
    assert status == 413
    assert reply["message"] == f"batch of {size} bytes exceeds the {MAX_BODY_BYTES}-byte limit"
    assert reply["fix"] == f"run kube-apiserver with {TRUNCATE_FLAGS}"
    assert list(tmp_path.rglob("*.*")) == []  # nothing stored


def test_just_over_the_limit_reaches_the_function_whatever_the_content(tmp_path: Path) -> None:
    for make in (realistic_body, worst_body):
        event = http_api_event(make(MAX_BODY_BYTES + 1), token=TOKEN)
        assert fits_lambda(event)
        assert answer(webhook(tmp_path), event)[0] == 413


def test_the_advice_keeps_every_batch_under_the_limit_whatever_it_escapes_to() -> None:
    flags = dict(flag.removeprefix("--").split("=", 1) for flag in apiserver_flags())
    events, event_bytes = (
        int(flags["audit-webhook-batch-max-size"]),
        int(flags["audit-webhook-truncate-max-event-size"]),
    )
    assert (events, event_bytes) == (BATCH_MAX_EVENTS, TRUNCATE_MAX_EVENT_BYTES)
    # kube-apiserver's largest POST: the most events, each as large as truncation lets it be.
    for filler in ("x", '"'):
        largest = eventlist([padded_item(event_bytes, filler)] * events)
        assert len(largest) - events * event_bytes <= EVENTLIST_SLACK
        assert len(largest) <= MAX_BODY_BYTES
        assert fits_lambda(http_api_event(largest), ascii_only=True)
    # A full batch of real events (the largest of them, repeated) is far smaller still.
    biggest = max(corpus_items(), key=len)
    assert len(biggest) < event_bytes
    assert fits_lambda(http_api_event(eventlist([biggest] * events)), ascii_only=True)
    # kube-apiserver refuses a max batch size not above the max event size.
    assert int(flags["audit-webhook-truncate-max-batch-size"]) > event_bytes


def test_the_413_arrives_without_decoding_a_base64_body(tmp_path: Path) -> None:
    hook = webhook(tmp_path)
    for size in (MAX_BODY_BYTES + 1, MAX_BODY_BYTES + 2, MAX_BODY_BYTES + 3):
        status, reply = answer(hook, http_api_event(b"\0" * size, token=TOKEN, base64_encoded=True))
        assert (status, reply["message"]) == (413, f"batch of {size} bytes exceeds the {MAX_BODY_BYTES}-byte limit")
    status, _ = answer(hook, http_api_event(realistic_body(MAX_BODY_BYTES), token=TOKEN, base64_encoded=True))
    assert status == 200
