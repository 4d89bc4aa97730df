"""The webhook's answers, as kube-apiserver (which retries every error, then drops) sees them."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from auditlake.audit.pipeline import REPLACED_NOTE, AuditPipeline, PipelineConfig
from auditlake.clusters.registry import RegistryError, StaticTokens, token_hash
from auditlake.ingest.webhook import AuditWebhook
from auditlake.jsonio import REPLACED
from auditlake.landing import Landing, decode_lines
from auditlake.stores import StoreError
from auditlake.stores.local import LocalStore
from tests.helpers import as_row, complete_events, corpus_path, eventlist_body, fixture, nested

TOKEN = "alk_test-token"
NOW = datetime(2026, 11, 21, 5, 30, tzinfo=UTC)


class FlakyStore(LocalStore):
    """Fails the first ``failures`` writes, like S3 having a bad minute."""

    def __init__(self, root: Path, failures: int = 1, match: str = "") -> None:
        super().__init__(root)
        self.failures = failures
        self.match = match

    def put(
        self, key: str, data: bytes, content_type: str = "application/octet-stream", *, create_only: bool = False
    ) -> None:
        if self.failures and self.match in key:
            self.failures -= 1
            raise StoreError("S3 is having a bad minute")
        super().put(key, data, content_type, create_only=create_only)


class Metrics:
    def __init__(self) -> None:
        self.values: dict[str, float] = {}

    def add_metric(self, name: str, unit: str, value: float) -> None:
        self.values[name] = self.values.get(name, 0) + value


def make(store: LocalStore, metrics: Metrics | None = None) -> AuditWebhook:
    return AuditWebhook(
        StaticTokens({token_hash(TOKEN): "prod-eu"}),
        AuditPipeline(PipelineConfig()),
        Landing(store),
        clock=lambda: NOW,
        metrics=metrics,
    )


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path)


def keys(store: LocalStore, prefix: str = "") -> list[str]:
    return list(store.list(prefix))


def records(store: LocalStore) -> Iterator[dict[str, Any]]:
    for key in keys(store, "raw/"):
        for line in decode_lines(store.get(key)):
            yield as_row(line)


GOOD = eventlist_body(complete_events("audit/liggitt__audit2rbac__demo_v1.jsonl"))


@pytest.mark.parametrize("authorization", [None, "", "Bearer", "Basic dXNlcjpwYXNz", "Bearer wrong", f"Token {TOKEN}"])
def test_unauthorised_requests_get_401_and_store_nothing(store: LocalStore, authorization: str | None) -> None:
    reply = make(store).handle(authorization, GOOD)
    assert reply.status == 401
    assert reply.body == {"message": "Unauthorized"}  # no detail about why
    assert keys(store) == []


def test_valid_batch_is_stored_under_the_tokens_cluster(store: LocalStore) -> None:
    metrics = Metrics()
    reply = make(store, metrics).handle(f"Bearer {TOKEN}", GOOD)
    assert reply.status == 200
    assert reply.body["accepted"] == 37 and reply.body["quarantined"] == 0
    assert reply.body["forbidden"] == 11
    (key,) = keys(store, "raw/")
    assert key.startswith("raw/audit/2026/11/21/05/prod-eu/") and key.endswith(".ndjson.zst")
    assert {r["cluster"] for r in records(store)} == {"prod-eu"}
    assert metrics.values["EventsAccepted"] == 37 and metrics.values["Forbidden403Seen"] == 11
    assert metrics.values["BatchBytes"] == len(GOOD)


def test_a_duplicated_batch_is_harmless(store: LocalStore) -> None:
    webhook = make(store)
    first = webhook.handle(f"Bearer {TOKEN}", GOOD)
    landed = {k: store.get(k) for k in keys(store)}
    second = webhook.handle(f"Bearer {TOKEN}", GOOD)
    assert first.body == second.body
    # Same key, same bytes: the retry rewrote the object instead of adding a copy.
    assert {k: store.get(k) for k in keys(store)} == landed


def test_empty_eventlist_is_accepted_without_writing(store: LocalStore) -> None:
    for body in (b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":null}', eventlist_body([])):
        assert make(store).handle(f"Bearer {TOKEN}", body).body["accepted"] == 0
    assert keys(store) == []


def _bad_body(case: dict[str, Any]) -> bytes:
    if "body" in case:
        return str(case["body"]).encode()
    if "body_base64" in case:
        return base64.b64decode(case["body_base64"])
    if "corpus" in case:
        return corpus_path(case["corpus"]).read_bytes()
    return nested(case["nesting"])


NOT_JSON = {"invalid-json", "nan-constant"}  # bytes not UTF-8 are read as Go reads them (U+FFFD)


@pytest.mark.parametrize("case", fixture("bad_bodies.json"), ids=lambda c: c["name"])
def test_not_an_eventlist_gets_400_and_is_quarantined_redacted_or_unchanged(
    store: LocalStore, case: dict[str, Any]
) -> None:
    body = _bad_body(case)
    reply = make(store).handle(f"Bearer {TOKEN}", body)
    assert reply.status == 400
    assert case["reason"] in reply.body["message"]
    assert keys(store, "raw/") == []
    (manifest_key,) = [k for k in keys(store, "quarantine/") if k.endswith(".json")]
    manifest = json.loads(store.get(manifest_key))
    assert case["reason"] in manifest["reason"]
    assert manifest["cluster"] == "prod-eu" and manifest["payload_bytes"] == len(body)
    bodies = [k for k in keys(store, "quarantine/") if k.endswith(".body")]
    if case["name"] in NOT_JSON:  # not JSON even to Go: cannot be inspected, kept byte for byte
        assert [store.get(k) for k in bodies] == [body]
    else:  # it parses: kept as redacted items, never as bytes
        assert bodies == [] and manifest["items"]


def test_a_refused_body_that_parses_keeps_no_secret(store: LocalStore) -> None:
    secret = {"kind": "Secret", "data": {"p": "cmVmdXNlZC1ib2R5"}}
    body = json.dumps({"kind": "Event", "auditID": "x", "objectRef": {"resource": "secrets"}, "requestObject": secret})
    assert make(store).handle(f"Bearer {TOKEN}", body.encode()).status == 400
    assert all(b"cmVmdXNlZC1ib2R5" not in store.get(k) for k in keys(store, "quarantine/"))


def test_one_item_beyond_the_parsers_limit_is_split_from_its_batch(store: LocalStore) -> None:
    good = complete_events("audit/openshift__openshift-docs__audit-log-basic-viewing.jsonl")
    deep = b'{"auditID":"deep-one","stage":"ResponseComplete","user":{"extra":{"k":' + b"[" * 1100 + b"]" * 1100
    deep += b'}},"requestObject":{"kind":"Secret","data":{"p":"ZGVlcC1iYXRjaA=="}}}'
    items = [json.dumps(item).encode() for item in good]
    body = b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[' + b",".join([*items, deep]) + b"]}"
    reply = make(store).handle(f"Bearer {TOKEN}", body)
    assert reply.status == 200 and (reply.body["accepted"], reply.body["quarantined"]) == (len(good), 1)
    (manifest_key,) = [k for k in keys(store, "quarantine/") if k.endswith(".json")]
    (item,) = json.loads(store.get(manifest_key))["items"]
    assert item["auditID"] == "deep-one" and "requestObject" not in item["item"]
    assert all(b"ZGVlcC1iYXRjaA==" not in store.get(k) for k in keys(store, "quarantine/"))


def test_the_reason_echoes_client_values_bounded(store: LocalStore) -> None:
    body = json.dumps({"kind": "x" * 100_000, "items": []}).encode()
    reply = make(store).handle(f"Bearer {TOKEN}", body)
    assert reply.status == 400 and len(reply.body["message"]) < 120


def test_bad_items_are_quarantined_and_good_ones_stored(store: LocalStore) -> None:
    good = complete_events("audit/openshift__openshift-docs__audit-log-basic-viewing.jsonl")
    bad_time = {**good[0], "requestReceivedTimestamp": "yesterday"}
    items = [*good, {"auditID": "no-stage"}, "not an object", bad_time]
    body = json.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": items}).encode()
    reply = make(store).handle(f"Bearer {TOKEN}", body)
    assert reply.status == 200
    assert (reply.body["accepted"], reply.body["quarantined"]) == (4, 3)
    (manifest_key,) = [k for k in keys(store, "quarantine/") if k.endswith(".json")]
    manifest = json.loads(store.get(manifest_key))
    reasons = {item["index"]: item["reason"] for item in manifest["items"]}
    assert reasons[4] == "Object missing required field `level`"
    assert "not an audit event object" in reasons[5]
    assert reasons[6].startswith("requestReceivedTimestamp: not an RFC 3339 timestamp")
    assert manifest["items"][2]["auditID"] == good[0]["auditID"]
    assert manifest["items"][2]["item"] == bad_time  # the item itself is kept for inspection


def test_body_over_the_limit_gets_413_with_the_fix(store: LocalStore) -> None:
    webhook = make(store)
    webhook.max_body_bytes = 1000
    reply = webhook.handle(f"Bearer {TOKEN}", GOOD)
    assert reply.status == 413
    assert "--audit-webhook-truncate-enabled=true" in reply.body["fix"]
    assert webhook.handle_oversize("Bearer nope", 10**9).status == 401  # the token is checked first
    assert keys(store) == []


@pytest.mark.parametrize("match", ["raw/", "quarantine/"])
def test_storage_failure_answers_503_then_the_retry_lands_once(tmp_path: Path, match: str) -> None:
    store = FlakyStore(tmp_path, failures=1, match=match)
    body = eventlist_body([*complete_events("audit/liggitt__audit2rbac__demo_v1.jsonl"), {"auditID": "bad"}])
    webhook = make(store)
    assert webhook.handle(f"Bearer {TOKEN}", body).status == 503
    assert webhook.handle(f"Bearer {TOKEN}", body).status == 200
    assert len(keys(store, "raw/")) == 1
    assert len([r for r in records(store)]) == 37


def test_registry_failure_answers_503(store: LocalStore) -> None:
    class DownRegistry:
        def cluster_for(self, token_sha256: str) -> str | None:
            raise RegistryError("DynamoDB unavailable")

    webhook = AuditWebhook(DownRegistry(), AuditPipeline(PipelineConfig()), Landing(store))
    assert webhook.handle(f"Bearer {TOKEN}", GOOD).status == 503


def test_unexpected_error_quarantines_the_body_and_answers_500(store: LocalStore) -> None:
    class Broken(AuditPipeline):
        def eventlist(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("bug")

    webhook = AuditWebhook(StaticTokens({token_hash(TOKEN): "c"}), Broken(PipelineConfig()), Landing(store))
    assert webhook.handle(f"Bearer {TOKEN}", GOOD).status == 500
    (body_key,) = [k for k in keys(store, "quarantine/") if k.endswith(".body")]
    assert store.get(body_key) == GOOD


OPENSHIFT = "audit/openshift__openshift-docs__audit-log-basic-viewing.jsonl"


def _compact_body(items: list[bytes], tail: bytes = b"") -> bytes:
    return b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[' + b",".join(items) + b"]" + tail + b"}"


@pytest.mark.parametrize(
    "bad",
    [b'{"metadata":{"labels":{"x":"\\ud800"}}}', b'{"metadata":{"labels":{"x":"\xff\xfe"}}}'],
    ids=["lone-surrogate-escape", "not-utf8"],
)
def test_an_item_go_reads_is_stored_as_go_reads_it(store: LocalStore, bad: bytes) -> None:
    """Go's JSON takes both in a patch body (kube-apiserver copies patch bytes into the event), as
    U+FFFD; msgspec does not: the body is split into its items, that one is read as Go reads it and
    stored, redacted, saying what was replaced."""
    good = [json.dumps(item, separators=(",", ":")).encode() for item in complete_events(OPENSHIFT)]
    item = json.loads(good[0])
    secret = {"kind": "Secret", "data": {"p": "dW5yZWFkYWJsZS1pdGVt"}}
    item.update(
        auditID="unreadable-1", verb="patch", level="RequestResponse", requestObject="BAD", responseObject=secret
    )
    text = json.dumps(item, separators=(",", ":")).encode().replace(b'"BAD"', bad)
    reply = make(store).handle(f"Bearer {TOKEN}", _compact_body([*good, text]))
    assert reply.status == 200 and (reply.body["accepted"], reply.body["quarantined"]) == (len(good) + 1, 0)
    [record] = [r for r in records(store) if r["audit_id"] == "unreadable-1"]
    replaced = "\ufffd" * (2 if b"\xff" in bad else 1)
    assert json.loads(record["request_object"]) == {"metadata": {"labels": {"x": replaced}}}
    assert json.loads(record["extra"]) == {REPLACED_NOTE: REPLACED}
    assert record["redactions"] == ["responseObject"]
    assert all(b"dW5yZWFkYWJsZS1pdGVt" not in store.get(k) for k in keys(store))


@pytest.mark.parametrize(
    "tail",
    [b',"items":[]', b',"item\\u0073":[]', b', "items" : []'],
    ids=["repeated", "escaped", "with-whitespace"],
)
def test_a_second_items_key_is_refused_with_every_item_kept_redacted(store: LocalStore, tail: bytes) -> None:
    """JSON readers disagree which list a repeated key means (Go's and ours keep the last): never a
    200 that silently archives one list; a 400, every item of every list kept redacted."""
    items = [json.dumps(item).encode() for item in complete_events(OPENSHIFT)[:2]]
    reply = make(store).handle(f"Bearer {TOKEN}", _compact_body(items, tail))
    assert reply.status == 400 and "more than one top-level items key" in reply.body["message"]
    (manifest_key,) = [k for k in keys(store, "quarantine/") if k.endswith(".json")]
    assert len(json.loads(store.get(manifest_key))["items"]) == 2
    assert keys(store, "raw/") == []


def test_items_keys_inside_bodies_and_envelope_are_not_a_second_list(store: LocalStore) -> None:
    """A list response's body holds "items"; so may the envelope's metadata; a pretty-printed body
    takes the scanner's way: none of them is refused."""
    events = complete_events(OPENSHIFT)[:2]
    events[0]["responseObject"] = {"kind": "PodList", "items": [{"metadata": {"name": "p"}}]}
    body = json.loads(eventlist_body(events))
    body["metadata"] = {"items": ["x"]}
    for text in (json.dumps(body, separators=(",", ":")).encode(), json.dumps(body, indent=2).encode()):
        reply = make(store).handle(f"Bearer {TOKEN}", text)
        assert reply.status == 200 and reply.body["accepted"] == 2, reply.body


def test_a_refused_envelope_s_kind_is_not_repeated_in_the_reply_or_the_log(
    store: LocalStore, caplog: pytest.LogCaptureFixture
) -> None:
    """The reply, the log line and the reason name the field, not a value that could be a secret
    (the refused body itself is kept, redacted, in the manifest's items)."""
    kind = "s3cr3t-value-that-is-longer-than-a-name"
    reply = make(store).handle(f"Bearer {TOKEN}", json.dumps({"kind": kind, "items": []}).encode())
    assert reply.status == 400 and reply.body["message"] == "expected kind EventList, got <39 characters>"
    assert kind not in caplog.text
