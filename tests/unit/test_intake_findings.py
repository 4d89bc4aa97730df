"""Findings land with their batch on every ingest path (webhook, CloudWatch forwarder, file import,
Events file import, the Events poller): raw/findings/ under the batch's id, after the raw object and
before the quarantine and the post-store hook, so the 2xx comes after they are stored; no stored
byte holds the planted key's value."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from bench.polling import seed_checkpoint

from auditlake.audit.pipeline import AuditPipeline, PipelineConfig
from auditlake.clusters.registry import StaticTokens, token_hash
from auditlake.detect.matches import Match
from auditlake.events.files import ingest_events
from auditlake.events.leases import LocalLeases
from auditlake.events.poller import EventsPoller
from auditlake.ingest.cloudwatch import EksAuditForwarder, decode_document
from auditlake.ingest.files import FileIngest
from auditlake.ingest.intake import Batch, finding_lines, land
from auditlake.ingest.webhook import AuditWebhook
from auditlake.landing import Landing, decode_lines
from auditlake.metrics import BATCH_METRICS
from auditlake.model import FindingRecord
from auditlake.stores import StoreError
from auditlake.stores.local import LocalStore
from tests.fakes.detector import AUDIT_RULE, EVENTS_RULE, FakeDetector
from tests.fakes.kube_client import Recording
from tests.helpers import eventlist_body, subscription_document

FIXTURES = Path("tests/fixtures/detect")
KEY = b"AKIAIOSFODNN7EXAMPLE"
TOKEN = "alk_test-token"
NOW = datetime(2026, 11, 21, 5, 30, tzinfo=UTC)


def planted() -> dict[str, Any]:
    event: dict[str, Any] = json.loads((FIXTURES / "configmap-aws-key.json").read_text())
    return event


def harmless() -> dict[str, Any]:
    event = planted()
    event["auditID"] = "00000000-0000-4000-8000-000000000099"
    event["objectRef"]["resource"] = "services"
    event.pop("requestObject")
    event.pop("responseObject")
    return event


class Recorder(LocalStore):
    """Keeps the order of writes; fails every write whose key starts with ``fail``."""

    def __init__(self, root: Path, fail: str = "") -> None:
        super().__init__(root)
        self.keys: list[str] = []
        self.fail = fail

    def put(self, key: str, data: bytes, content_type: str = "", *, create_only: bool = False) -> None:
        if self.fail and key.startswith(self.fail):
            raise StoreError("S3 is having a bad minute")
        self.keys.append(key)
        super().put(key, data, content_type, create_only=create_only)


class SpyWatch:
    def __init__(self, store: Recorder) -> None:
        self.store = store
        self.calls: list[list[str]] = []

    def stored(self, cluster: str, denials: list[Any], metrics: Any = None) -> list[dict[str, Any]]:
        self.calls.append(list(self.store.keys))  # what was stored when the hook ran
        return []


def findings(store: LocalStore) -> list[dict[str, Any]]:
    return [orjson.loads(line) for key in store.list("raw/findings/") for line in decode_lines(store.get(key))]


def every_byte(root: Path) -> bytes:
    """Every stored object, raw ones decompressed."""
    out = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        out.append(b"\n".join(decode_lines(data)) if path.name.endswith(".ndjson.zst") else data)
    return b"\n".join(out)


def webhook(store: LocalStore, watch: Any = None) -> AuditWebhook:
    return AuditWebhook(
        StaticTokens({token_hash(TOKEN): "prod"}),
        AuditPipeline(PipelineConfig(), FakeDetector()),
        Landing(store),
        clock=lambda: NOW,
        watch=watch,
    )


def test_the_webhook_stores_findings_with_the_batch_in_order(tmp_path: Path) -> None:
    store = Recorder(tmp_path)
    watch = SpyWatch(store)
    bad = harmless() | {"auditID": "bad-1", "stageTimestamp": "never"}
    reply = webhook(store, watch).handle(f"Bearer {TOKEN}", eventlist_body([planted(), harmless(), bad]))
    assert reply.status == 200 and reply.body["findings"] == 1 and reply.body["accepted"] == 2
    (raw, found, manifest) = store.keys
    batch = reply.body["batch"]
    assert raw == f"raw/audit/2026/11/21/05/prod/{batch}.ndjson.zst"
    assert found == f"raw/findings/2026/11/21/05/prod/{batch}.ndjson.zst"
    assert manifest.startswith("quarantine/audit/prod/")
    assert watch.calls == [[raw, found, manifest]]  # the hook runs once all three are stored
    (finding,) = findings(store)
    assert (finding["rule_id"], finding["audit_id"], finding["name"]) == (
        AUDIT_RULE,
        planted()["auditID"],
        "billing-env",
    )
    assert json.loads(finding["details"]) == {"fields": {"requestObject.data.aws_access_key_id": "<matched>"}}
    assert KEY not in every_byte(tmp_path)


def test_a_retry_rewrites_the_same_findings_object(tmp_path: Path) -> None:
    store = Recorder(tmp_path)
    hook = webhook(store)
    body = eventlist_body([planted()])
    for _ in range(2):
        assert hook.handle(f"Bearer {TOKEN}", body).status == 200
    assert len(list(store.list("raw/findings/"))) == 1 and len(findings(store)) == 1


@pytest.mark.parametrize("failing", ["raw/audit/", "raw/findings/"])
def test_a_store_that_fails_on_raw_or_findings_answers_503_and_acknowledges_nothing(
    tmp_path: Path, failing: str
) -> None:
    store = Recorder(tmp_path, fail=failing)
    watch = SpyWatch(store)
    reply = webhook(store, watch).handle(f"Bearer {TOKEN}", eventlist_body([planted()]))
    assert reply.status == 503
    assert watch.calls == []  # no page names a finding the lake does not hold
    assert not any(key.startswith(failing) for key in store.keys)


def test_the_forwarder_stores_findings(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    forwarder = EksAuditForwarder(AuditPipeline(PipelineConfig(), FakeDetector()), Landing(store), clock=lambda: NOW)
    document = subscription_document([json.dumps(planted()), json.dumps(harmless())])
    stats = forwarder.forward(decode_document(json.dumps(document).encode()))
    assert (stats.accepted, stats.findings) == (2, 1)
    assert [f["rule_id"] for f in findings(store)] == [AUDIT_RULE]
    assert "/prod/" in next(iter(store.list("raw/findings/")))
    assert KEY not in every_byte(tmp_path)


@pytest.mark.parametrize("shape", ["jsonl", "eventlist"])
def test_file_ingest_stores_findings(tmp_path: Path, shape: str) -> None:
    source = tmp_path / "in" / f"audit.{shape}"
    source.parent.mkdir()
    items = [planted(), harmless()]
    source.write_bytes(b"\n".join(orjson.dumps(i) for i in items) if shape == "jsonl" else eventlist_body(items))
    lake = tmp_path / "lake"
    importer = FileIngest(
        AuditPipeline(PipelineConfig(), FakeDetector()), Landing(LocalStore(lake)), "prod", clock=lambda: NOW
    )
    stats = importer.jsonl(source) if shape == "jsonl" else importer.eventlist(source)
    assert (stats.accepted, stats.findings) == (2, 1)
    assert [f["audit_id"] for f in findings(LocalStore(lake))] == [planted()["auditID"]]
    assert KEY not in every_byte(lake)


def test_events_file_import_stores_findings(tmp_path: Path) -> None:
    event = json.loads((FIXTURES / "event-backoff.json").read_text())
    quiet = json.loads((FIXTURES / "event-backoff.json").read_text()) | {"reason": "Pulled"}
    quiet["metadata"] = quiet["metadata"] | {"uid": "quiet-1"}
    broken = event | {"metadata": {"uid": "broken-1"}}  # no resourceVersion: quarantined, not evaluated
    source = tmp_path / "events.json"
    source.write_text(json.dumps({"kind": "List", "items": [event, quiet, broken]}))
    lake = tmp_path / "lake"
    detector = FakeDetector()
    stats = ingest_events(source, Landing(LocalStore(lake), "events"), "prod", clock=lambda: NOW, detector=detector)
    assert (stats.accepted, stats.quarantined, stats.findings) == (2, 1, 1)
    assert [(f["rule_id"], f["audit_id"]) for f in findings(LocalStore(lake))] == [
        (EVENTS_RULE, event["metadata"]["uid"])
    ]


def test_the_poller_stores_findings(tmp_path: Path) -> None:
    event = json.loads((FIXTURES / "event-backoff.json").read_text())
    leases = LocalLeases(tmp_path / "leases")
    seed_checkpoint(leases)
    lines = [orjson.dumps({"type": "ADDED", "object": event})]
    store = LocalStore(tmp_path / "lake")
    poller = EventsPoller(
        Recording(watches=[lines]), Landing(store, "events"), leases, "bench", holder="t", detector=FakeDetector()
    )
    stats = poller.poll(30, keep_watching=False)
    assert (stats.emitted, stats.findings) == (1, 1)
    (finding,) = findings(store)
    assert (finding["rule_id"], finding["cluster"], finding["resource"]) == (EVENTS_RULE, "bench", "Pod")


def test_only_matches_that_generate_are_stored_and_counted(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    record = FindingRecord(
        rule_id="r", title="t", level="low", cluster="prod", audit_id="a", at="2026-11-21T05:00:00.000000Z"
    )
    base = Match("forbidden-request", "forbidden-request", "low", False, record, {"user.username": "x"})
    shown = Match("r", None, "low", True, record, {})
    assert [orjson.loads(line)["rule_id"] for line in finding_lines([base, shown])] == ["r"]

    class Metrics:
        def __init__(self) -> None:
            self.values: dict[str, float] = {}

        def add_metric(self, name: str, unit: str, value: float) -> None:
            self.values[name] = value

    metrics = Metrics()
    stats = land(Landing(store), Batch("prod", NOW, "b1", "test"), [b'{"x":1}'], matches=[base, shown], metrics=metrics)
    assert stats.findings == 1 and metrics.values["Findings"] == 1
    assert ("findings", "Findings") in BATCH_METRICS
    assert [f["rule_id"] for f in findings(store)] == ["r"]


def test_no_match_no_findings_object(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    reply = webhook(store).handle(f"Bearer {TOKEN}", eventlist_body([harmless()]))
    assert reply.status == 200 and reply.body["findings"] == 0
    assert list(store.list("raw/findings/")) == []
