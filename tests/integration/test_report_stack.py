"""``auditlake report --stack`` on a deployed stack (moto server): the report's queries go to the stack's
Athena workgroup and database with the window as execution parameters, the sealed state is read from
its archive buckets with its KMS key and state table as ``verify --stack`` reads it, and the page is
written. moto runs no SQL (every Athena query answers no rows), so what is checked is the wiring: which
queries, where, with which window; the answers' shape is tests/unit/test_report.py's (Athena's text)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
from click.testing import CliRunner

from auditlake.cli import main
from auditlake.cli.stack import (
    ATHENA_WORKGROUP,
    AUDIT_ARCHIVE_BUCKET,
    DIGEST_KEY,
    EVENTS_ARCHIVE_BUCKET,
    FINDINGS_ARCHIVE_BUCKET,
    GLUE_DATABASE,
    STATE_TABLE,
)
from auditlake.report import queries
from tests.helpers import AwsStack, stack_with_outputs
from tests.integration.test_worm_digest_aws import worm  # noqa: F401 - the archive buckets and the KMS key

WORKGROUP, DATABASE = "auditlake-report-test", "auditlake_report_test"


def test_report_runs_its_queries_in_the_stacks_athena(aws: AwsStack, worm: dict[str, str], tmp_path: Path) -> None:  # noqa: F811
    athena = boto3.client("athena")
    athena.create_work_group(Name=WORKGROUP, Configuration={"ResultConfiguration": {
        "OutputLocation": f"s3://{aws.bucket}-athena/"}})  # fmt: skip
    name = stack_with_outputs({
        AUDIT_ARCHIVE_BUCKET: worm["audit"], EVENTS_ARCHIVE_BUCKET: worm["events"],
        FINDINGS_ARCHIVE_BUCKET: worm["findings"], DIGEST_KEY: worm["key"], STATE_TABLE: aws.table,
        ATHENA_WORKGROUP: WORKGROUP, GLUE_DATABASE: DATABASE,
    })  # fmt: skip
    out = tmp_path / "stack.html"
    now = datetime.now(UTC)
    result = CliRunner(mix_stderr=False).invoke(main, ["report", "--stack", name, "--since", "2h", "--out", str(out)])
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "no audit records between" in result.stderr  # moto answers no rows: the window is said
    page = out.read_text(encoding="utf-8")
    assert f"stack {name}" in page and "never (no digest yet: run auditlake digest)" in page

    ids = athena.list_query_executions(WorkGroup=WORKGROUP)["QueryExecutionIds"]
    executions = [athena.get_query_execution(QueryExecutionId=i)["QueryExecution"] for i in ids]
    # activity per minute (a 2-hour window) and per hour, 403s per minute, 4 rankings, forbidden_bursts,
    # coverage_gaps, findings: no timeline, since no identity or object was ranked.
    assert len(executions) == 10
    assert all(e["WorkGroup"] == WORKGROUP and e["QueryExecutionContext"] == {"Database": DATABASE} for e in executions)
    texts = [e["Query"] for e in executions]
    for report_query in queries.names():
        assert sum(text == queries.load(report_query).sql for text in texts) == (2 if report_query == "activity" else 1)
    assert sum("FROM findings_live" in text for text in texts) == 1
    buckets = sorted(e["ExecutionParameters"][0] for e in executions if e["Query"] == queries.load("activity").sql)
    assert buckets == ["'hour'", "'minute'"]
    for execution in executions:  # every query's first since: two hours before the command ran
        first = next(p for p in execution["ExecutionParameters"] if p.startswith("'20"))
        since = datetime.fromisoformat(first.strip("'").replace("Z", "+00:00"))
        assert timedelta(minutes=119) <= now - since <= timedelta(minutes=121)
