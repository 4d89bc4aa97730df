"""Lakes for the report's tests, built as the demo pipeline builds one, with times relative to now:
synthetic traffic with the planted incidents (demo/synth.py), its Kubernetes Events, the findings
fixture moved into the window, optionally compacted and sealed (a digest), and extra audit events a
test adds (hostile names)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from auditlake.archive.compactor import Compactor
from auditlake.audit.pipeline import AuditPipeline, PipelineConfig
from auditlake.demo import synth
from auditlake.events.files import ingest_events
from auditlake.ingest.files import FileIngest
from auditlake.jsonio import dumps
from auditlake.local_lake import LocalLake
from auditlake.timestamps import format_utc
from auditlake.trust.digest import Digester
from tests.helpers import findings_fixture, land_findings

CLUSTER = "demo"


def build(
    root: Path,
    *,
    now: datetime,
    minutes: float = 20,
    rate: float = 5,
    extra: Sequence[dict[str, Any]] = (),
    compact: bool = True,
    seal: bool = True,
) -> LocalLake:
    """A lake at ``root``: ``minutes`` of traffic ending 5 minutes before ``now``, plus ``extra`` audit events."""
    lake = LocalLake(root)
    generator = synth.Synth(minutes=minutes, rate=rate, seed=11, start=now - timedelta(minutes=minutes + 5))
    inputs = root / "inputs-test"
    inputs.mkdir(parents=True, exist_ok=True)
    audit, events = inputs / "audit.jsonl", inputs / "events.jsonl"
    audit.write_bytes(b"".join(dumps(e) + b"\n" for e in [*generator.events(), *extra]))
    events.write_bytes(b"".join(dumps(e) + b"\n" for e in generator.kube_events()))
    FileIngest(AuditPipeline(PipelineConfig()), lake.landing(), CLUSTER).jsonl(audit)
    ingest_events(events, lake.landing("events"), CLUSTER)
    land_findings(root, shifted_findings(now - timedelta(minutes=15)))
    if compact:
        store = lake.store()
        Compactor(store, lake.archives(), lake.locks(), ledger=lake.ledger()).compact(sorted(store.list("raw/")))
    if seal:
        until = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
        start = until - timedelta(days=1)
        Digester(lake.ledger(), lake.archives(), lake.chain_head(), lake.signer()).seal(
            until, start=start, hourly=False, now=until
        )
    return lake


def shifted_findings(at: datetime) -> list[dict[str, Any]]:
    """The findings fixture's records, their times moved to start at ``at`` (same spacing)."""
    records = findings_fixture()
    first = min(datetime.fromisoformat(r["at"].replace("Z", "+00:00")) for r in records)
    out = []
    for record in records:
        moved = dict(record)
        for key in ("at", "ingested_at"):
            moment = datetime.fromisoformat(record[key].replace("Z", "+00:00"))
            moved[key] = format_utc(at + (moment - first) / 100)  # the fixture spans a day: keep it in minutes
        out.append(moved)
    return out


def audit_event(
    user: str,
    *,
    at: datetime,
    verb: str = "get",
    resource: str = "secrets",
    namespace: str = "prod",
    name: str = "db-pass",
    code: int = 200,
    audit_id: str,
    user_agent: str = "kubectl/v1.31",
) -> dict[str, Any]:
    """One ResponseComplete audit event (audit.k8s.io/v1) with the given identity and object."""
    stamp = format_utc(at)
    return {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": audit_id,
        "stage": "ResponseComplete",
        "requestURI": f"/api/v1/namespaces/{namespace}/{resource}/{name}",
        "verb": verb,
        "user": {"username": user, "groups": ["system:authenticated"]},
        "sourceIPs": ["192.0.2.99"],
        "userAgent": user_agent,
        "objectRef": {"resource": resource, "namespace": namespace, "name": name, "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": code},
        "requestReceivedTimestamp": stamp,
        "stageTimestamp": stamp,
        "annotations": {"authorization.k8s.io/decision": "forbid" if code == 403 else "allow"},
    }
