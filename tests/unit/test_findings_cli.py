"""``auditlake findings`` on a local lake: one JSON array of objects, --level at or above, --rule and
--cluster, the raw findings visible before compaction, and a compacted and a raw copy counted once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from auditlake.cli import main
from auditlake.local_lake import LocalLake
from auditlake.model import FINDING_COLUMN_NAMES
from auditlake.query.findings import FindingsFilter, findings_sql
from tests.helpers import findings_fixture, land_findings

WINDOW = ["--since", "2026-03-01T00:00:00Z", "--until", "2026-03-03T00:00:00Z"]


def _json(lake: Path, *args: str) -> Any:
    result = CliRunner().invoke(main, ["findings", "--lake", str(lake), *WINDOW, "--format", "json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _compact(lake: Path) -> None:
    result = CliRunner().invoke(main, ["compact", "--lake", str(lake)])
    assert result.exit_code == 0, result.output


def test_json_is_one_array_of_findings_with_every_column(tmp_path: Path) -> None:
    land_findings(tmp_path, findings_fixture())
    found = _json(tmp_path)  # before any compaction: the raw findings
    assert isinstance(found, list) and len(found) == 5
    assert all(set(item) == set(FINDING_COLUMN_NAMES) for item in found)
    assert [item["audit_id"] for item in found] == ["a-0001", "a-0002", "a-0003", "a-0004", "a-0005"]  # by time
    secret = found[1]
    assert (secret["rule_id"], secret["level"], secret["cluster"]) == (
        "2b6f0c1e-3d9a-4f7b-8e21-6c0d9a7e4f02", "critical", "prod",
    )  # fmt: skip
    assert secret["at"] == "2026-03-01T10:20:00.000Z" and secret["source_ips"] == ["10.0.0.8", "10.0.0.9"]
    assert secret["details"] == {"fields": {"requestObject.data": "<key matched>"}, "keys": ["aws_secret_access_key"]}
    assert found[2]["source_ips"] == [] and found[3]["name"] is None  # columns a finding leaves out


def test_level_means_at_or_above_and_rule_and_cluster_narrow(tmp_path: Path) -> None:
    land_findings(tmp_path, findings_fixture())
    assert [f["level"] for f in _json(tmp_path, "--level", "high")] == ["high", "critical", "high"]
    assert [f["level"] for f in _json(tmp_path, "--level", "medium")] == ["high", "critical", "medium", "high"]
    assert len(_json(tmp_path, "--level", "informational")) == 5
    exec_rule = "8f0f9a43-0c0b-4d8e-9d3e-2a7c1f4b5e01"
    assert [f["audit_id"] for f in _json(tmp_path, "--rule", exec_rule)] == ["a-0001", "a-0005"]
    assert [f["audit_id"] for f in _json(tmp_path, "--cluster", "staging")] == ["a-0003"]
    assert _json(tmp_path, "--rule", "no-such-rule") == []
    # until is excluded, since included
    narrow = CliRunner().invoke(main, ["findings", "--lake", str(tmp_path), "--since", "2026-03-01T10:20:00Z",
                                       "--until", "2026-03-01T12:00:00Z", "--format", "json"])  # fmt: skip
    assert [f["audit_id"] for f in json.loads(narrow.stdout)] == ["a-0002", "a-0003"]


def test_a_compacted_and_a_raw_copy_count_once(tmp_path: Path) -> None:
    records = findings_fixture()
    land_findings(tmp_path, records[:3], batch="one")
    _compact(tmp_path)
    assert list(LocalLake(tmp_path).archive().list("findings/"))
    # The raw objects stay after compaction, and a redelivery lands the same findings again, beside new ones.
    land_findings(tmp_path, records[1:], batch="two")
    found = _json(tmp_path)
    assert [f["audit_id"] for f in found] == ["a-0001", "a-0002", "a-0003", "a-0004", "a-0005"]
    _compact(tmp_path)
    assert _json(tmp_path) == found  # all archived now: the same answer


def test_table_and_csv_and_usage(tmp_path: Path) -> None:
    land_findings(tmp_path, findings_fixture())
    csv_out = CliRunner().invoke(main, ["findings", "--lake", str(tmp_path), *WINDOW, "--format", "csv"])
    lines = csv_out.stdout.strip().splitlines()
    assert lines[0].split(",") == list(FINDING_COLUMN_NAMES) and len(lines) == 6
    table = CliRunner().invoke(main, ["findings", "--lake", str(tmp_path), *WINDOW, "--level", "critical"])
    assert table.exit_code == 0 and "Credentials in a ConfigMap" in table.stdout and "Pod exec" not in table.stdout
    both = CliRunner().invoke(main, ["findings", "--lake", str(tmp_path), "--stack", "s"])
    assert both.exit_code == 2 and "exactly one of --lake, --stack" in both.output
    bad = CliRunner().invoke(main, ["findings", "--lake", str(tmp_path), "--since", "yesterday-ish"])
    assert bad.exit_code == 2 and "since" in bad.output
    empty = CliRunner().invoke(main, ["findings", "--lake", str(tmp_path / "none"), "--format", "json"])
    assert empty.exit_code == 1 and "no lake" in empty.output


def test_the_athena_text_is_the_local_text_over_the_table() -> None:
    where = FindingsFilter.parse("2026-03-01T00:00:00Z", "90d", level="high", rule_id="r", cluster="c")
    sql = findings_sql("findings")
    assert sql.count("?") == len(where.values()) and "FROM findings\n" in sql
    assert where.values()[8:] == [3, "r", "r", "c", "c"]  # rank of high, then the rule and the cluster
    assert FindingsFilter.parse("2026-03-01T00:00:00Z", None).values()[8:] == [-1, "", "", "", ""]


def test_summary_counts_raw_and_archived_findings(tmp_path: Path) -> None:
    from auditlake.query.summary import summarise

    records = findings_fixture()
    land_findings(tmp_path, records[:3], batch="one")
    local = LocalLake(tmp_path)
    before = summarise(local.store(), archive=local.archive())
    assert (before.findings_raw, before.findings_archived) == (3, 0)
    assert before.finding_levels == {"high": 1, "critical": 1, "medium": 1}
    _compact(tmp_path)
    land_findings(tmp_path, records[2:], batch="two")  # one of them again
    after = summarise(local.store(), archive=local.archive())
    assert (after.findings_raw, after.findings_archived) == (6, 3)
    shown = CliRunner().invoke(main, ["summary", "--lake", str(tmp_path), "--json"])
    findings = json.loads(shown.stdout)["findings"]  # each row once: the archive's, and the raw ones not compacted
    assert shown.exit_code == 0 and (findings["archived_rows"], findings["raw_rows_pending"]) == (3, 3)
