"""The compactor Lambda handler against moto in server mode: S3 notifications delivered through
SQS, raw objects the webhook wrote, Parquet in the archive buckets, locks in DynamoDB."""

from __future__ import annotations

import copy
import io
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from auditlake.archive.compactor import Compactor
from auditlake.archive.locks import DynamoLocks
from auditlake.audit.pipeline import AuditPipeline, PipelineConfig
from auditlake.demo.synth import Synth
from auditlake.landing import Landing, encode_lines
from auditlake.stores.s3 import S3Store
from auditlake.timestamps import format_utc
from tests.helpers import AwsStack, LambdaContext, fixture, load_function, scheduled_event, sqs_event

EVENTS = list(Synth(minutes=30, rate=10, seed=5, start=datetime(2026, 11, 20, 9, 45, tzinfo=UTC)).events())


@pytest.fixture
def archive(aws: AwsStack) -> dict[str, str]:
    buckets = {"audit": f"{aws.bucket}-audit", "events": f"{aws.bucket}-events", "findings": f"{aws.bucket}-findings"}
    for bucket in buckets.values():
        aws.s3.create_bucket(Bucket=bucket)
    return buckets


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, aws: AwsStack, archive: dict[str, str]) -> ModuleType:
    module = load_function(monkeypatch, "compactor", {
        "AUDITLAKE_RAW_BUCKET": aws.bucket, "AUDITLAKE_AUDIT_BUCKET": archive["audit"],
        "AUDITLAKE_EVENTS_BUCKET": archive["events"], "AUDITLAKE_STATE_TABLE": aws.table,
        "AUDITLAKE_FINDINGS_BUCKET": archive["findings"],

    })  # fmt: skip
    module.compactor.lock_wait_seconds = 1
    return module


def land(aws: AwsStack, events: list[dict[str, Any]], batch: str) -> str:
    result = AuditPipeline(PipelineConfig()).process(
        events, cluster="prod-eu", source="webhook", ingested_at="2026-11-20T11:00:00.000000Z"
    )
    key = Landing(S3Store(aws.s3, aws.bucket)).write_raw("prod-eu", datetime(2026, 11, 20, 11, tzinfo=UTC), batch,
                                                        result.lines)  # fmt: skip
    assert key
    return key


def archived(aws: AwsStack, bucket: str) -> pa.Table:
    store = S3Store(aws.s3, bucket)
    tables = [pq.read_table(io.BytesIO(store.get(k))) for k in store.list("audit/") if k.endswith(".parquet")]
    return pa.concat_tables(tables) if tables else pa.table({"audit_id": pa.array([], pa.string())})


def test_notifications_are_compacted_once(aws: AwsStack, archive: dict[str, str], app: ModuleType) -> None:
    keys = [land(aws, EVENTS[:5000], "a"), land(aws, EVENTS[5000:], "b")]
    event = sqs_event(aws.bucket, keys)
    assert app.lambda_handler(event, LambdaContext()) == {"batchItemFailures": []}
    table = archived(aws, archive["audit"])
    assert table.num_rows == len(EVENTS)
    files = sorted(S3Store(aws.s3, archive["audit"]).list("audit/"))
    assert [f.split("/")[1:3] for f in files] == [["dt=2026-11-20", "hour=09"], ["dt=2026-11-20", "hour=10"]]
    # SQS redelivers, S3 notifies twice: nothing changes.
    assert app.lambda_handler(event, LambdaContext()) == {"batchItemFailures": []}
    assert sorted(S3Store(aws.s3, archive["audit"]).list("audit/")) == files


def test_a_locked_partition_fails_only_its_messages(aws: AwsStack, archive: dict[str, str], app: ModuleType) -> None:
    early, late = land(aws, EVENTS[:100], "early"), land(aws, EVENTS[-100:], "late")
    locks = DynamoLocks(aws.dynamodb, aws.table)
    assert locks.acquire("audit#2026-11-20#10", 600)  # another compactor holds hour 10
    reply = app.lambda_handler(sqs_event(aws.bucket, [early, late]), LambdaContext())
    assert reply == {"batchItemFailures": [{"itemIdentifier": "m1"}]}  # m0 is done, m1 comes again
    assert archived(aws, archive["audit"]).num_rows == 100


def test_bad_raw_objects_are_quarantined_not_retried(aws: AwsStack, archive: dict[str, str], app: ModuleType) -> None:
    bad = "raw/audit/prod-eu/2026/11/20/11/garbage.ndjson.zst"
    aws.s3.put_object(Bucket=aws.bucket, Key=bad, Body=encode_lines([b'{"cluster": 5}']))
    good = land(aws, EVENTS[:10], "good")
    reply = app.lambda_handler(sqs_event(aws.bucket, [bad, good]), LambdaContext())
    assert reply == {"batchItemFailures": []}
    store = S3Store(aws.s3, aws.bucket)
    (manifest,) = store.list("quarantine/audit/prod-eu/2026/11/20/11/garbage.compact-")  # never ingest's garbage.json
    quarantined = store.get(manifest)
    assert b"changed from string to number" in quarantined or b"cluster" in quarantined


def test_foreign_buckets_and_test_events_are_ignored(aws: AwsStack, archive: dict[str, str], app: ModuleType) -> None:
    event = sqs_event("someone-elses-bucket", ["raw/audit/prod-eu/2026/11/20/11/x.ndjson.zst"])
    test_event = copy.deepcopy(fixture("sqs_message.json"))
    test_event["body"] = json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": aws.bucket})
    event["Records"].append(test_event)
    assert app.lambda_handler(event, LambdaContext()) == {"batchItemFailures": []}
    assert archived(aws, archive["audit"]).num_rows == 0


def test_concurrent_compactors_with_dynamodb_locks(aws: AwsStack, archive: dict[str, str]) -> None:
    keys = [land(aws, EVENTS[i : i + 2000], f"c{i}") for i in range(0, 8000, 2000)]
    written: list[int] = []

    def compact() -> None:
        client = boto3.client("s3")  # one client per thread, as separate Lambdas have
        stores = {kind: S3Store(client, bucket) for kind, bucket in archive.items()}
        locks = DynamoLocks(boto3.client("dynamodb"), aws.table)
        written.append(Compactor(S3Store(client, aws.bucket), stores, locks).compact(keys).rows_written)

    threads = [threading.Thread(target=compact) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    table = archived(aws, archive["audit"])
    assert sum(written) == table.num_rows == 8000
    assert len(set(zip(table["audit_id"].to_pylist(), table["stage"].to_pylist(), strict=True))) == 8000


def test_dynamodb_lock_lease_expires(aws: AwsStack) -> None:
    now = [1000.0]
    locks = DynamoLocks(aws.dynamodb, aws.table, clock=lambda: now[0])
    first = locks.acquire("audit#x", 60)
    assert first and locks.acquire("audit#x", 60) is None
    now[0] += 61  # the holder died: its lease runs out
    second = locks.acquire("audit#x", 60)
    assert second and second != first
    locks.release("audit#x", first)  # a stale holder cannot release someone else's lease
    assert locks.acquire("audit#x", 60) is None
    locks.release("audit#x", second)
    assert locks.acquire("audit#x", 60)
    time.sleep(0)


def test_the_hourly_run_archives_closed_hours_once_and_notifications_of_open_hours_wait(
    aws: AwsStack, archive: dict[str, str], app: ModuleType
) -> None:
    now = datetime.now(UTC)
    closed = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    landing = Landing(S3Store(aws.s3, aws.bucket))
    synth = Synth(minutes=10, rate=5, seed=7, start=closed)
    items = list(synth.events())

    def lines_of(cluster: str, n: int) -> list[bytes]:
        pipeline = AuditPipeline(PipelineConfig())
        return pipeline.process(items[:n], cluster=cluster, source="webhook", ingested_at=format_utc(closed)).lines

    lines = lines_of("prod-eu", len(items))
    old = landing.write_raw("prod-eu", closed, "closed", lines)
    other = landing.write_raw("prod-us", closed, "closed", lines_of("prod-us", 50))
    fresh = landing.write_raw("prod-eu", now, "fresh", lines[:10])
    # The notification of the object of the open hour: left to the hourly run, the message is done.
    assert app.lambda_handler(sqs_event(aws.bucket, [fresh]), LambdaContext()) == {"batchItemFailures": []}
    assert archived(aws, archive["audit"]).num_rows == 0
    reply = app.lambda_handler(scheduled_event(now), LambdaContext())
    assert reply == {"files": 1, "rows": len(lines) + 50}  # both clusters of the hour in one file
    done = aws.dynamodb.get_item(TableName=aws.table, Key={"pk": {"S": f"COMPACTED#audit#{closed:%Y-%m-%dT%H}"},
                                                           "sk": {"S": "DONE"}})  # fmt: skip
    assert "Item" in done and old and other
    # The next run reads nothing again.
    assert app.lambda_handler(scheduled_event(now), LambdaContext()) == {"files": 0, "rows": 0}
