"""`auditlake compact` and `auditlake query`, locally and against Athena (moto records the request)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import boto3
from click.testing import CliRunner

from auditlake.cli import main
from auditlake.query.named import AthenaEngine, load
from tests.helpers import AwsStack, corpus_path


def run(*args: str) -> Any:
    return CliRunner(mix_stderr=False).invoke(main, list(args), catch_exceptions=False)


def test_compact_then_query_a_local_lake(tmp_path: Path) -> None:
    lake = str(tmp_path / "lake")
    run("ingest", str(corpus_path("audit/liggitt__audit2rbac__demo_v1.jsonl")), "--cluster", "a2r", "--lake", lake)
    first = run("compact", "--lake", lake)
    assert first.exit_code == 0 and "rows archived 37" in first.stderr
    assert run("compact", "--lake", lake).stderr.startswith("nothing new")  # idempotent
    result = run("query", "impersonation", "--lake", lake, "--param", "since=2017-01-01T00:00:00Z",
                 "--param", "until=2018-01-01T00:00:00Z", "--format", "json")  # fmt: skip
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 37 and {r["acting_as"] for r in rows} >= {"bob"}
    ad_hoc = run("query", "--sql", "SELECT count(*) AS n FROM audit WHERE cardinality(source_ips) > 0",
                 "--lake", lake, "--format", "csv")  # fmt: skip
    assert ad_hoc.stdout.splitlines() == ["n", "37"]


def test_events_ingest_and_missing_parameters(tmp_path: Path) -> None:
    lake = str(tmp_path / "lake")
    events = corpus_path("events/replicatedhq__troubleshoot__analyze_events__message-image-pull-fail.eventlist.json")
    ingested = run("ingest", str(events), "--kind", "events", "--cluster", "k", "--lake", lake)
    assert "accepted 17" in ingested.stderr
    assert run("compact", "--lake", lake).exit_code == 0
    missing = run("query", "object_history", "--lake", lake, "--param", "resource=pods", "--param", "namespace=x")
    assert missing.exit_code == 1 and "needs --param name" in missing.stderr
    listing = run("query", "--list")
    assert "forbidden_bursts (threshold=10)" in listing.stderr
    # Each description is the file's whole leading comment, a colon in the prose included.
    assert "rbac_escalation (-): Privilege grants: bindings to cluster-admin" in " ".join(listing.stderr.split())
    assert "placeholders" not in listing.stderr


def test_query_on_an_empty_lake_returns_no_rows(tmp_path: Path) -> None:
    (tmp_path / "archive").mkdir()  # a lake with nothing in it
    result = run("query", "pod_exec", "--lake", str(tmp_path), "--format", "csv")
    assert result.exit_code == 0 and result.stdout.splitlines()[1:] == []
    assert "this lake's archive holds no audit yet" in result.stderr


def test_athena_gets_the_file_and_bound_literals(aws: AwsStack) -> None:
    client = boto3.client("athena")
    client.create_work_group(
        Name="auditlake-test", Configuration={"ResultConfiguration": {"OutputLocation": "s3://r/"}}
    )
    sent: dict[str, Any] = {}
    original = client.start_query_execution

    def record(**kwargs: Any) -> Any:
        sent.update(kwargs)
        return original(**kwargs)

    client.start_query_execution = record  # type: ignore[method-assign]
    named = load("secret_changes")
    values = named.bind({"name": "db'pass", "namespace": "prod", "since": "2026-11-20T00:00:00Z"})
    result = AthenaEngine(client, "auditlake-test", "auditlake", poll_seconds=0).run(named.sql, values)
    assert sent["QueryString"] == named.sql and sent["WorkGroup"] == "auditlake-test"
    assert sent["QueryExecutionContext"] == {"Database": "auditlake"}
    assert sent["ExecutionParameters"][-4:] == ["'prod'", "'prod'", "'db''pass'", "'db''pass'"]  # quoted, doubled
    assert sent["ExecutionParameters"][0] == "'2026-11-20T00:00:00.000Z'"
    assert isinstance(result.rows, list)


def test_local_queries_read_only_the_files_the_archive_lists(tmp_path: Path) -> None:
    """A `.tmp-` forgery, a symlinked partition and a symlink named like a file were read by DuckDB's
    glob while verify did not see them: queries now read exactly the archive's listed files."""
    lake = tmp_path / "lake"
    run("ingest", str(corpus_path("audit/liggitt__audit2rbac__demo_v1.jsonl")), "--cluster", "a2r", "--lake", str(lake))
    assert run("compact", "--lake", str(lake)).exit_code == 0
    count = ["query", "--sql", "SELECT count(*) AS n FROM audit", "--lake", str(lake), "--format", "csv"]
    assert run(*count).stdout.splitlines() == ["n", "37"]
    honest = sorted((lake / "archive" / "audit").rglob("*.parquet"))[0]
    shutil.copy(honest, honest.with_name(".tmp-forged.parquet"))
    elsewhere = tmp_path / "elsewhere" / "hour=21"
    elsewhere.mkdir(parents=True)
    shutil.copy(honest, elsewhere / "c9-forged.parquet")
    (lake / "archive" / "audit" / "dt=2099-12-31").symlink_to(elsewhere.parent, target_is_directory=True)
    (honest.parent / "c9-linked.parquet").symlink_to(honest)
    assert run(*count).stdout.splitlines() == ["n", "37"]
