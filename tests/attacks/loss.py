"""Helpers of the loss attacks (issue 11.6-11.11) that an input file cannot express: raw objects
written by hand (cut, empty, several frames), quarantine read back, the archive's rows."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from auditlake.jsonio import dumps
from auditlake.landing import Landing
from auditlake.stores.local import LocalStore
from tests.attacks.delivery import CLUSTER, cli

LANDED = datetime(2026, 11, 21, 12, tzinfo=UTC)  # a fixed hour: nothing depends on today


def record(n: int, received: str = "2026-11-21T12:00:00.000000Z") -> dict[str, Any]:
    """A normalised audit record, as ingest lands it (one per raw line)."""
    return {"cluster": CLUSTER, "source": "webhook", "audit_id": f"d{n:07d}-0000-0000-0000-000000000011",
            "stage": "ResponseComplete", "level": "Metadata", "verb": "get", "user_name": "alice",
            "request_received_at": received, "stage_at": received, "redactions": [],
            "ingested_at": "2026-11-21T12:00:01.000000Z"}  # fmt: skip


def lines(*records: dict[str, Any]) -> bytes:
    return b"".join(dumps(r) + b"\n" for r in records)


def land(lake: Path, data: bytes, batch: str = "attack", at: datetime = LANDED) -> str:
    """``data`` stored as it is under a raw landing key."""
    key = Landing(LocalStore(lake), "audit").raw_key(CLUSTER, at, batch)
    LocalStore(lake).put(key, data, "application/x-ndjson")
    return key


def compact(lake: Path) -> str:
    result = cli("compact", "--lake", str(lake))
    assert result.exit_code == 0, result.output + result.stderr
    return str(result.output + result.stderr)


def manifests(lake: Path) -> dict[str, dict[str, Any]]:
    store = LocalStore(lake)
    return {k: json.loads(store.get(k)) for k in store.list("quarantine/") if k.endswith(".json")}


def archived(lake: Path, kind: str = "audit") -> pa.Table:
    files = sorted((lake / "archive" / kind).rglob("*.parquet"))
    return pa.concat_tables([pq.read_table(f) for f in files]) if files else pa.table({})
