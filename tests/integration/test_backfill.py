"""Backfill from CloudWatch Logs (moto in server mode): paginated, interrupted and resumed, overlapping
the live subscription, and still each event exactly once in the archive after compaction."""

from __future__ import annotations

import io
import json
import uuid
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from auditlake.archive.compactor import Compactor
from auditlake.archive.locks import DynamoLocks
from auditlake.audit.pipeline import AuditPipeline, PipelineConfig
from auditlake.demo.synth import Synth
from auditlake.ingest.backfill import Backfill, BackfillJob
from auditlake.ingest.checkpoints import CheckpointConflict, DynamoCheckpoints, LocalCheckpoints
from auditlake.ingest.cloudwatch import EksAuditForwarder, log_group_of
from auditlake.landing import Landing
from auditlake.stores.s3 import S3Store
from tests.helpers import API_STREAM, AUDIT_STREAM, AwsStack, LambdaContext, awslogs_event, load_function

OTHER_AUDIT_STREAM = "kube-apiserver-audit-e503271cd443efdbd2050ae8ca0794eb"
HOUR = 3_600_000


class Interrupted(Exception):
    pass


@pytest.fixture
def history(aws: AwsStack) -> dict[str, Any]:
    """Three hours of audit events in two audit streams (one API-server stream beside them), some
    sharing the very millisecond where one backfill slice ends and the next begins."""
    logs = boto3.client("logs")
    cluster = f"prod-{uuid.uuid4().hex[:8]}"  # one moto server for the session: a log group per test
    group = log_group_of(cluster)
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=4)
    start_ms = int(start.timestamp() * 1000)
    events = list(Synth(minutes=180, rate=0.02, seed=11, start=start).events())
    messages = [json.dumps(e, separators=(",", ":")) for e in events]
    times = [start_ms + i * (3 * HOUR // len(messages)) for i in range(len(messages))]
    times[10:15] = [start_ms + HOUR - 1, start_ms + HOUR, start_ms + HOUR, start_ms + HOUR, start_ms + HOUR + 1]
    times.sort()
    logs.create_log_group(logGroupName=group)
    streams: dict[str, list[dict[str, Any]]] = {AUDIT_STREAM: [], OTHER_AUDIT_STREAM: [], API_STREAM: []}
    for i, (at, message) in enumerate(zip(times, messages, strict=True)):
        streams[AUDIT_STREAM if i % 2 else OTHER_AUDIT_STREAM].append({"timestamp": at, "message": message})
        if i % 10 == 0:
            streams[API_STREAM].append({"timestamp": at, "message": f"I1120 controller.go:1] tick {i}"})
    for stream, log_events in streams.items():
        logs.create_log_stream(logGroupName=group, logStreamName=stream)
        logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=log_events)
    keys = {(e["auditID"], e["stage"]) for e in events}
    return {
        "cluster": cluster,
        "logs": logs,
        "start": start,
        "end": start + timedelta(hours=3),
        "messages": messages,
        "keys": keys,
    }


def forwarder(aws: AwsStack) -> EksAuditForwarder:
    return EksAuditForwarder(AuditPipeline(PipelineConfig()), Landing(S3Store(aws.s3, aws.bucket)))


def compact_all(aws: AwsStack) -> pa.Table:
    archive = {"audit": f"{aws.bucket}-audit", "events": f"{aws.bucket}-events"}
    for bucket in archive.values():
        aws.s3.create_bucket(Bucket=bucket)
    raw = S3Store(aws.s3, aws.bucket)
    stores = {kind: S3Store(aws.s3, bucket) for kind, bucket in archive.items()}
    Compactor(raw, stores, DynamoLocks(aws.dynamodb, aws.table)).compact(list(raw.list("raw/")))
    out = stores["audit"]
    return pa.concat_tables([pq.read_table(io.BytesIO(out.get(k))) for k in out.list("audit/")])


def test_interrupted_backfill_overlapping_the_live_feed_archives_each_event_once(
    monkeypatch: pytest.MonkeyPatch, aws: AwsStack, history: dict[str, Any]
) -> None:
    # The live subscription already delivered the first 40 events.
    app = load_function(monkeypatch, "cloudwatch", {"AUDITLAKE_RAW_BUCKET": aws.bucket})
    live = {
        "messageType": "DATA_MESSAGE", "owner": "123456789012", "logGroup": log_group_of(history["cluster"]),
        "logStream": AUDIT_STREAM, "subscriptionFilters": ["auditlake"],
        "logEvents": [{"id": str(i), "timestamp": 0, "message": m} for i, m in enumerate(history["messages"][:40])],
    }  # fmt: skip
    assert app.lambda_handler(awslogs_event(live), LambdaContext())["accepted"] == 40

    checkpoints = DynamoCheckpoints(aws.dynamodb, aws.table)
    pages: list[int] = []

    def stop_after_four(job: BackfillJob) -> None:
        pages.append(job.pages)
        if job.pages == 4:
            raise Interrupted

    first = Backfill(history["logs"], forwarder(aws), checkpoints, page_limit=7, progress=stop_after_four)
    job, resumed = first.plan(history["cluster"], history["start"], history["end"])
    assert not resumed
    with pytest.raises(Interrupted):
        first.run(job)
    saved, _ = checkpoints.load(f"backfill/{history['cluster']}")
    assert saved is not None and saved["pages"] == 4 and not saved["done"]

    second = Backfill(history["logs"], forwarder(aws), checkpoints, page_limit=7)
    job, resumed = second.plan(
        history["cluster"], history["start"] + timedelta(days=1), history["end"]
    )  # range ignored
    assert resumed and job.pages == 4 and job.start_ms == int(history["start"].timestamp() * 1000)
    job = second.run(job)
    assert job.done and job.totals.events == len(history["messages"]) and job.totals.quarantined == 0
    # The API-server stream's lines: moto ignores logStreamNamePrefix (AWS would not send them).
    assert job.totals.skipped > 0

    table = compact_all(aws)
    keys = list(zip(table["audit_id"].to_pylist(), table["stage"].to_pylist(), strict=True))
    assert len(keys) == len(set(keys)) and set(keys) == history["keys"]
    assert set(table["cluster"].to_pylist()) == {history["cluster"]}


def test_a_finished_backfill_starts_anew_and_a_stale_token_rereads_its_slice(
    aws: AwsStack, history: dict[str, Any]
) -> None:
    checkpoints = DynamoCheckpoints(aws.dynamodb, aws.table)
    runner = Backfill(history["logs"], forwarder(aws), checkpoints, page_limit=5)
    job = runner.run(runner.plan(history["cluster"], history["start"], history["end"])[0])
    assert job.done and job.totals.events == len(history["messages"])
    again, resumed = runner.plan(history["cluster"], history["start"], history["end"])
    assert not resumed and again.pages == 0

    # A checkpoint whose token is two hours old: the token is dropped and its slice read again.
    stale = BackfillJob(
        history["cluster"], job.start_ms, job.end_ms, job.start_ms, next_token="prod@x@y", token_at_ms=0
    )
    _, version = checkpoints.load(f"backfill/{history['cluster']}")
    checkpoints.save(f"backfill/{history['cluster']}", asdict(stale), version)
    runner = Backfill(history["logs"], forwarder(aws), checkpoints, page_limit=5)
    job, resumed = runner.plan(history["cluster"], history["start"], history["end"])
    assert resumed
    assert runner.run(job).totals.events == len(history["messages"])


def test_two_backfills_of_one_cluster_cannot_both_advance(aws: AwsStack, tmp_path: Any) -> None:
    for checkpoints in (DynamoCheckpoints(aws.dynamodb, aws.table), LocalCheckpoints(tmp_path)):
        _, version = checkpoints.load("backfill/x")
        assert checkpoints.save("backfill/x", {"cursor_ms": 1}, version) == version + 1
        with pytest.raises(CheckpointConflict):
            checkpoints.save("backfill/x", {"cursor_ms": 2}, version)  # the other run's stale version
        assert checkpoints.load("backfill/x") == ({"cursor_ms": 1}, version + 1)
