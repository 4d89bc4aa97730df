"""Findings as a data class downstream of the raw landing, on a local lake: compacted into their own
archive exactly once by (cluster, rule_id, audit_id), sealed by the digests and verified, a tampered
findings file found; retention recorded for findings/."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds

from auditlake.archive.compactor import Compactor
from auditlake.local_lake import LocalLake
from auditlake.model import FINDING_COLUMN_NAMES
from auditlake.settings import Settings
from auditlake.trust.digest import Digester, verify
from auditlake.trust.retention import Recorded, describe, stack_retention
from tests.helpers import findings_fixture, land_findings


def _compact(lake: Path) -> Any:
    local = LocalLake(lake)
    store = local.store()
    return Compactor(store, local.archives(), local.locks(), ledger=local.ledger()).compact(
        list(store.list("raw/findings/"))
    )


def _archived(lake: Path) -> list[dict[str, Any]]:
    folder = LocalLake(lake).archive_dir / "findings"
    return ds.dataset(folder, format="parquet", partitioning="hive").to_table().to_pylist() if folder.exists() else []


def test_findings_compact_into_their_own_archive_once_per_key(tmp_path: Path) -> None:
    records = findings_fixture()
    land_findings(tmp_path, records, batch="first")
    # Redelivered (the same batch landed again under another id) and a second rule on one event.
    other_rule = {**records[0], "rule_id": "0a0a0a0a-0000-4000-8000-000000000001", "title": "Other"}
    land_findings(tmp_path, [*records[:2], other_rule], batch="again")

    report = _compact(tmp_path)
    rows = _archived(tmp_path)
    assert report.rows_read == 8 and report.rows_written == 6 and report.duplicates == 2
    assert sorted((r["cluster"], r["rule_id"], r["audit_id"]) for r in rows) == sorted(
        {(r["cluster"], r["rule_id"], r["audit_id"]) for r in [*records, other_rule]}
    )
    assert set(FINDING_COLUMN_NAMES) <= set(rows[0])
    # Partitioned by the finding's time, under findings/ of the archive, beside (never in) audit/.
    keys = sorted(LocalLake(tmp_path).archive().list("findings/"))
    assert keys and all(k.startswith(("findings/dt=2026-03-01/hour=", "findings/dt=2026-03-02/hour=09/")) for k in keys)
    assert not list(LocalLake(tmp_path).archive().list("audit/"))
    exec_row = next(r for r in rows if r["audit_id"] == "a-0001" and r["title"] == "Pod exec")
    assert exec_row["source_ips"] == ["10.0.0.7"] and exec_row["at"] == datetime(2026, 3, 1, 10, 15)

    again = _compact(tmp_path)  # run again over the same raw objects: nothing new
    assert (again.rows_written, len(_archived(tmp_path))) == (0, 6)


def test_digest_seals_findings_files_and_verify_finds_one_tampered(tmp_path: Path) -> None:
    land_findings(tmp_path, findings_fixture())
    _compact(tmp_path)
    local = LocalLake(tmp_path)
    files = sorted(local.archive().list("findings/"))
    assert files
    now = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    sealed = Digester(local.ledger(), local.archives(), local.chain_head(), local.signer()).seal(
        now, start=now - timedelta(hours=1), hourly=False
    )
    assert sealed.objects == len(files)

    def check() -> Any:
        return verify(local.archives(), local.signer(create=False), head=local.chain_head(), ledger=local.ledger(),
                      now=now + timedelta(seconds=1))  # fmt: skip

    assert check().ok and check().objects == len(files)
    path = local.archive_dir / files[0]
    path.write_bytes(path.read_bytes()[:-1] + b"\0")
    findings = check().findings
    assert [(f.kind, f.key) for f in findings] == [("altered", files[0])]


def test_findings_retention_is_recorded_for_findings_files() -> None:
    settings = Settings.from_env({"AUDITLAKE_FINDINGS_RETENTION_DAYS": "400", "AUDITLAKE_EVENTS_RETENTION_DAYS": "90"})
    recorded = stack_retention(settings.audit_retention_days, settings.events_retention_days,
                               settings.findings_retention_days)  # fmt: skip
    assert recorded == {"events/": 90, "findings/": 400}
    assert describe(recorded) == "events/ 90 days, findings/ 400 days"
    written = datetime(2026, 1, 15, 10, 30, tzinfo=UTC)
    retained = Recorded([(1, written + timedelta(hours=1), recorded)])
    key = "findings/dt=2026-01-15/hour=10/prod-x.parquet"
    assert retained.expiry(key, written, written + timedelta(days=400)) is None  # due at the next midnight
    assert retained.expiry(key, written, datetime(2027, 2, 20, tzinfo=UTC)) == 1
    assert retained.expiry("events/x.parquet", written, written + timedelta(days=91)) == 1
