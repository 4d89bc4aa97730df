"""11.9: the compactor's quarantine manifest was written at the webhook's key
(``quarantine/<kind>/<cluster>/.../<batch>.json``) and replaced it, destroying the only copy of a
malformed item. Quarantine writes are create-only, under names of their own."""

from __future__ import annotations

import json
from pathlib import Path

from auditlake.cli.options import build_pipeline
from auditlake.clusters.registry import StaticTokens, token_hash
from auditlake.ingest.webhook import AuditWebhook
from auditlake.landing import Landing
from auditlake.model import SOURCE_WEBHOOK
from auditlake.stores.local import LocalStore
from tests.attacks.delivery import CLUSTER, TOKEN
from tests.attacks.loss import compact, manifests


def item(n: int, verb: object = "get") -> dict[str, object]:
    return {"level": "Metadata", "auditID": f"e{n:07d}-0000-0000-0000-000000000011", "stage": "ResponseComplete",
            "requestURI": "/api/v1/pods", "verb": verb, "user": {"username": "alice"},
            "requestReceivedTimestamp": "2026-11-21T12:00:00.000000Z",
            "stageTimestamp": "2026-11-21T12:00:00.000000Z"}  # fmt: skip


def test_the_compactor_never_replaces_what_the_webhook_quarantined(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    store = LocalStore(lake)
    webhook = AuditWebhook(StaticTokens({token_hash(TOKEN): CLUSTER}), build_pipeline(None, True, ()),
                           Landing(store, "audit"), source=SOURCE_WEBHOOK)  # fmt: skip
    body = json.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1",
                       "items": [item(1), item(2, verb=["malformed"]), item(3)]}).encode()  # fmt: skip
    assert webhook.handle(f"Bearer {TOKEN}", body).status == 200
    assert webhook.handle(f"Bearer {TOKEN}", body).status == 200  # the sender's retry: the same quarantine, kept once
    ((ingest_key, ingest_manifest),) = manifests(lake).items()
    kept = store.get(ingest_key)
    (raw_key,) = store.list("raw/")
    store.put(raw_key, store.get(raw_key)[:-7])  # the raw object of that same batch, cut: the compactor quarantines it
    compact(lake)
    after = manifests(lake)
    assert store.get(ingest_key) == kept and len(ingest_manifest["items"]) == 1  # the malformed item survives
    ((compact_key, compact_manifest),) = ((k, m) for k, m in after.items() if k != ingest_key)
    assert compact_key.startswith(ingest_key.removesuffix(".json") + ".compact-")
    assert compact_manifest["raw_key"] == raw_key
