"""Deliver an attack case into a fresh local lake the way a user's input arrives, then compact it."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from auditlake.cli import main
from auditlake.cli.options import build_pipeline
from auditlake.clusters.registry import StaticTokens, token_hash
from auditlake.ingest.webhook import AuditWebhook
from auditlake.landing import Landing, encode_lines
from auditlake.model import SOURCE_WEBHOOK
from auditlake.stores.local import LocalStore
from tests.attacks.corpus import Case

CLUSTER = "attacked"
TOKEN = "attack-corpus-token"


@dataclass
class Outcome:
    lake: Path
    kind: str = "audit"  # the archive the case's input lands in
    status: int | None = None
    output: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(self.output)

    def archived_ids(self) -> list[str]:
        """The audit IDs archived (Events: their uids)."""
        sql = "SELECT audit_id AS id FROM audit" if self.kind == "audit" else "SELECT uid AS id FROM events"
        result = cli("query", "--lake", str(self.lake), "--sql", sql, "--format", "json")
        self.output.append(result.output + result.stderr)
        assert result.exit_code == 0, result.stderr
        return [json.loads(line)["id"] for line in result.output.splitlines() if line.strip()]

    def quarantined(self) -> int:
        """Quarantined items: each manifest's items, or 1 for a manifest that keeps a whole payload."""
        store = LocalStore(self.lake)
        count = 0
        for key in store.list("quarantine/"):
            if key.endswith(".json"):
                manifest = json.loads(store.get(key))
                count += len(manifest.get("items") or []) or 1
        return count


def cli(*args: str) -> Any:
    return CliRunner(mix_stderr=False).invoke(main, list(args), catch_exceptions=False)


def deliver(case: Case, lake: Path, work: Path) -> Outcome:
    outcome = Outcome(lake, kind="events" if case.via == "events" else "audit")
    if case.via == "webhook":
        webhook = AuditWebhook(
            StaticTokens({token_hash(TOKEN): CLUSTER}),
            build_pipeline(None, True, ()),
            Landing(LocalStore(lake), "audit"),
            source=SOURCE_WEBHOOK,
        )
        reply = webhook.handle(f"Bearer {TOKEN}", case.payload)
        outcome.status = reply.status
        outcome.output.append(json.dumps(reply.body))
    elif case.via in ("jsonl", "eventlist", "cloudwatch", "events"):
        path = work / f"{case.name}.input"
        path.write_bytes(case.payload)
        how = ["--kind", "events"] if case.via == "events" else ["--format", case.via]
        args = ["ingest", "--lake", str(lake), *how, str(path)]
        result = cli(*args, *([] if case.via == "cloudwatch" else ["--cluster", CLUSTER]))
        path.unlink()  # the sender's copy: only what auditlake stored stays to be scanned
        outcome.output.append(result.output + result.stderr)
        outcome.status = result.exit_code
    elif case.via == "compact":
        lines = [line for line in case.payload.split(b"\n") if line.strip()]
        key = Landing(LocalStore(lake), "audit").raw_key(CLUSTER, datetime.now(UTC), "attack")
        LocalStore(lake).put(key, encode_lines(lines), "application/x-ndjson")
    else:
        raise ValueError(f"{case.name}: unknown via {case.via!r}")
    result = cli("compact", "--lake", str(lake))
    outcome.output.append(result.output + result.stderr)
    return outcome


def log_text(records: list[logging.LogRecord]) -> str:
    return "\n".join(f"{r.getMessage()} {r.__dict__}" for r in records)
