"""Findings end to end on the deployed stack (moto server, the real Lambda adapters in-process): the
webhook evaluates the built-in rules on a ConfigMap carrying an AWS key pair and a privileged pod,
stores the findings with the batch and pages each high one once; the compactor archives them under
findings/; the digest seals them and ``auditlake verify --stack`` proves them and names an altered
one; ``auditlake findings --stack`` sends its one query to the stack's Athena. No stored byte and no
page holds the key's values.

Fixture: tests/fixtures/findings_stack/events.json (the two events; their times are set relative to
the test's clock, so ``--since 1h`` covers them whatever the day)."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from auditlake.archive.hourly import GRACE
from auditlake.archive.triggers import handle
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
from auditlake.landing import decode_lines
from auditlake.model import FINDINGS
from auditlake.stores.s3 import S3Store
from auditlake.timestamps import format_utc
from tests.helpers import AwsStack, LambdaContext, eventlist_body, scheduled_event, stack_with_outputs
from tests.integration.test_alerts_aws import topic  # noqa: F401 - the SNS topic read through SQS
from tests.integration.test_compactor_lambda import sqs_event
from tests.integration.test_webhook_lambda import invoker, load_app, register
from tests.integration.test_worm_digest_aws import _At, functions, worm  # noqa: F401 - worm: the archive buckets

FIXTURES = Path(__file__).parents[1] / "fixtures" / "findings_stack"
KEY_ID = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
CONFIGMAP_RULE = "fd523023-7c8f-5246-86bd-2cefaca940cd"  # detect/builtin/configmap-credentials.yml
PRIVILEGED_RULE = "a1c15bc4-7b7f-51c2-a441-2f9b3ced98b6"  # detect/builtin/pod-privileged-container.yml
PAGED_LEVELS = ("high", "critical")  # the stack's default AlertLevel (high) and above
WORKGROUP, DATABASE = "auditlake-findings-test", "auditlake_findings_test"


def events(now: datetime) -> list[dict[str, Any]]:
    """The fixture's events, received ten minutes before ``now`` (a second apart)."""
    out = json.loads((FIXTURES / "events.json").read_text())
    for number, event in enumerate(out):
        at = now - timedelta(minutes=10) + timedelta(seconds=number)
        event["requestReceivedTimestamp"] = format_utc(at)
        event["stageTimestamp"] = format_utc(at + timedelta(milliseconds=20))
    assert KEY_ID in json.dumps(out) and SECRET_KEY in json.dumps(out)  # the test would prove nothing otherwise
    return out


def objects(s3: Any, bucket: str, prefix: str = "") -> dict[str, bytes]:
    store = S3Store(s3, bucket)
    return {key: store.get(key) for key in store.list(prefix)}


def readable(key: str, data: bytes) -> bytes:
    """What an object holds, as a reader sees it: raw landing lines decompressed, Parquet as its rows
    (its pages may be compressed), anything else as stored; the stored bytes are always included."""
    if key.endswith(".ndjson.zst"):
        return data + b"\n" + b"\n".join(decode_lines(data))
    if key.endswith(".parquet"):
        return data + b"\n" + json.dumps(pq.read_table(io.BytesIO(data)).to_pylist(), default=str).encode()
    return data


def findings_rows(s3: Any, bucket: str) -> list[dict[str, Any]]:
    tables = [pq.read_table(io.BytesIO(data)) for key, data in objects(s3, bucket, "findings/").items()
              if key.endswith(".parquet")]  # fmt: skip
    return [row for table in tables for row in table.to_pylist()]


def raw_findings(s3: Any, bucket: str) -> list[dict[str, Any]]:
    return [json.loads(line) for key, data in objects(s3, bucket, "raw/findings/").items()
            for line in decode_lines(data)]  # fmt: skip


def cli(*args: str) -> Any:
    return CliRunner(mix_stderr=False).invoke(main, list(args), catch_exceptions=False)


def test_findings_land_page_compact_verify_and_query_on_the_stack(
    monkeypatch: pytest.MonkeyPatch,
    aws: AwsStack,
    worm: dict[str, str],  # noqa: F811 - the fixture imported above
    topic: Any,  # noqa: F811 - the fixture imported above
) -> None:
    arn, pages = topic
    now = datetime.now(UTC).replace(microsecond=0)
    body = eventlist_body(events(now))

    # 1. The webhook: findings stored with the batch, before the 200; each high one paged once.
    invoke = invoker(load_app(monkeypatch, aws, AUDITLAKE_ALERT_TOPIC=arn))
    token = register(aws, "prod")
    status, reply = invoke(body, token)
    assert status == 200 and reply["findings"] >= 2, reply
    found = raw_findings(aws.s3, aws.bucket)
    assert len(found) == reply["findings"]
    by_rule = {f["rule_id"]: f for f in found}
    assert {CONFIGMAP_RULE, PRIVILEGED_RULE} <= set(by_rule)
    assert (by_rule[CONFIGMAP_RULE]["name"], by_rule[CONFIGMAP_RULE]["cluster"]) == ("billing-env", "prod")
    assert (by_rule[PRIVILEGED_RULE]["name"], by_rule[PRIVILEGED_RULE]["identity"]) == (
        "debug-root", "mallory@example.com",
    )  # fmt: skip
    assert "aws_access_key_id" in by_rule[CONFIGMAP_RULE]["details"]  # names the key that matched
    sent = pages()
    paged = sorted((f["rule_id"], f["audit_id"]) for f in found if f["level"] in PAGED_LEVELS)
    assert sorted((p["rule"], p["audit_id"]) for p in sent) == paged
    raw_keys = sorted(objects(aws.s3, aws.bucket, "raw/"))
    assert any(key.startswith("raw/findings/") and "/prod/" in key for key in raw_keys)
    # kube-apiserver retries the whole batch: the same objects, no second page.
    assert invoke(body, token)[0] == 200
    assert sorted(objects(aws.s3, aws.bucket, "raw/")) == raw_keys
    assert pages() == []

    # 2. The compactor: the notifications of this hour's objects leave them to the hourly run, which
    # (its clock past the hour's grace) archives the findings' rows under findings/, once.
    compactor, digest = functions(monkeypatch, aws, worm)
    notified = sqs_event(aws.bucket, raw_keys)
    assert compactor.lambda_handler(notified, LambdaContext()) == {"batchItemFailures": []}
    assert objects(aws.s3, worm["findings"], "findings/") == {}
    due = now.replace(minute=0, second=0) + timedelta(hours=1) + GRACE
    hourly = handle(compactor.compactor, compactor.hours, scheduled_event(due), bucket=aws.bucket,
                    metrics=compactor.metrics, context=LambdaContext(), now=due)  # fmt: skip
    assert hourly["files"] >= 2, hourly  # audit and findings
    archived = objects(aws.s3, worm["findings"], "findings/")
    assert archived and all(key.endswith(".parquet") for key in archived)
    rows = findings_rows(aws.s3, worm["findings"])
    key_columns = ("rule_id", "level", "cluster", "audit_id", "identity", "verb", "resource", "namespace", "name")
    assert sorted(tuple(r[c] for c in key_columns) for r in rows) == sorted(
        tuple(f[c] for c in key_columns) for f in found
    )
    assert compactor.lambda_handler(notified, LambdaContext()) == {"batchItemFailures": []}  # SQS redelivers
    assert objects(aws.s3, worm["findings"], "findings/") == archived

    # 3. The next hour's digest seals the findings file; verify --stack proves it, then names it altered.
    monkeypatch.setattr(digest, "datetime", _At(now.replace(minute=6) + timedelta(hours=1)))
    sealed = digest.lambda_handler({}, LambdaContext())
    assert sealed["dropped"] == [] and sealed["files"] >= len(archived) + 1  # the audit file too
    aws_athena = boto3.client("athena")
    aws_athena.create_work_group(Name=WORKGROUP, Configuration={"ResultConfiguration": {
        "OutputLocation": f"s3://{aws.bucket}-athena/"}})  # fmt: skip
    name = stack_with_outputs({
        AUDIT_ARCHIVE_BUCKET: worm["audit"], EVENTS_ARCHIVE_BUCKET: worm["events"],
        FINDINGS_ARCHIVE_BUCKET: worm["findings"], DIGEST_KEY: worm["key"], STATE_TABLE: aws.table,
        ATHENA_WORKGROUP: WORKGROUP, GLUE_DATABASE: DATABASE,
    })  # fmt: skip
    honest = cli("verify", "--stack", name)
    assert honest.exit_code == 0, honest.stdout + honest.stderr
    assert "problems 0" in honest.stderr

    # 4. auditlake findings --stack: one query on the findings table, in the stack's workgroup and
    # database. moto runs no SQL and answers every query with no rows: the output is [].
    before = set(aws_athena.list_query_executions(WorkGroup=WORKGROUP)["QueryExecutionIds"])
    listed = cli("findings", "--stack", name, "--since", "1h", "--format", "json")
    assert listed.exit_code == 0, listed.stdout + listed.stderr
    assert json.loads(listed.stdout) == []
    (query_id,) = set(aws_athena.list_query_executions(WorkGroup=WORKGROUP)["QueryExecutionIds"]) - before
    execution = aws_athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]
    assert execution["WorkGroup"] == WORKGROUP
    assert execution["QueryExecutionContext"] == {"Database": DATABASE}
    assert f"FROM {FINDINGS.name}_live\n" in execution["Query"]  # the archive and the newest raw hours
    # --since 1h: the window starts an hour before the command ran (parameters are quoted literals).
    since = datetime.fromisoformat(execution["ExecutionParameters"][0].strip("'").replace("Z", "+00:00"))
    assert timedelta(minutes=59) <= now - since <= timedelta(minutes=61)

    # 5. Neither value of the key pair is in any stored byte or page (the digests only hash files).
    stored = {**objects(aws.s3, aws.bucket), **objects(aws.s3, worm["findings"]), **objects(aws.s3, worm["audit"])}
    assert any(key.startswith("raw/audit/") for key in stored)  # the ConfigMap event itself was stored
    for secret in (KEY_ID, SECRET_KEY):
        leaked = [key for key, data in stored.items() if secret.encode() in readable(key, data)]
        assert leaked == [], f"{secret[:4]}... stored in {leaked}"
        assert secret not in json.dumps(sent)

    # The tamper: a findings file overwritten (a new current version) is named by verify.
    victim = sorted(archived)[0]
    aws.s3.put_object(Bucket=worm["findings"], Key=victim, Body=b"PAR1 forged findings")
    altered = cli("verify", "--stack", name)
    assert altered.exit_code == 1 and "ALTERED" in altered.stdout and victim in altered.stdout, altered.stdout
