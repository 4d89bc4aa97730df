"""Conditional writes to the state table whose answer is lost (tests/chaos/aws_faults.py: applied, then
a read timeout; botocore retries the same request and meets its own write): the page claims, the
partition locks, the backfill checkpoints and the archive file writes take their own write as theirs. And a
page claimer killed before publishing does not cost the page (trust/alerts.py: claims are leases until
confirmed)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest

from auditlake.archive.compactor import Compactor
from auditlake.archive.locks import DynamoLocks, LocalLocks
from auditlake.audit.pipeline import AuditPipeline, PipelineConfig
from auditlake.demo.synth import Synth
from auditlake.events.leases import DynamoLeases, LeaseHeld
from auditlake.ingest.checkpoints import CheckpointConflict, DynamoCheckpoints
from auditlake.landing import Landing
from auditlake.stores.local import LocalStore
from auditlake.stores.s3 import S3Store
from auditlake.timestamps import format_utc
from auditlake.trust.alerts import (
    PUBLISH_LEASE_SECONDS,
    AlertError,
    Correlations,
    DynamoCounter,
    DynamoPageClaims,
    FindingPages,
    forbidden_thresholds,
)
from auditlake.trust.ledger import DynamoLedger
from tests.chaos.aws_faults import AwsFaults, FailsOnce, Killed
from tests.helpers import AwsStack, ManualClock, Pager, forbidden_matches, forbidden_rules
from tests.unit.test_alerts_rules import finding


def lost_once() -> tuple[AwsFaults, Any]:
    """An injector and a DynamoDB client whose first request in a step is applied and its answer lost."""
    faults, session = AwsFaults(), boto3.session.Session(region_name="us-east-1")
    faults.install(session)
    return faults, session.client("dynamodb")


def test_a_finding_claim_whose_answer_was_lost_still_pages(aws: AwsStack) -> None:
    """PutItem applied, its answer lost, botocore retries the same put: the retry's condition meets our own
    claim. It used to be refused ("paged within the window") and the finding was never paged."""
    faults, client = lost_once()
    pager, cluster = Pager(), f"c{uuid.uuid4().hex[:12]}"
    pages = FindingPages(DynamoPageClaims(client, aws.table), pager, dedup_minutes=60)
    try:
        with faults.step(FailsOnce(), rate=0.5, kinds=("timeout-after",)) as hit:
            assert len(pages.observe([finding(1, cluster=cluster)])) == 1
    finally:
        faults.uninstall()
    assert [(f.operation, f.applied) for f in hit] == [("PutItem", True)]
    assert len(pager.sent) == 1


def test_a_lock_whose_answer_was_lost_is_held_by_its_taker(aws: AwsStack) -> None:
    faults, client = lost_once()
    name = f"audit#{uuid.uuid4().hex[:8]}#00"
    try:
        with faults.step(FailsOnce(), rate=0.5, kinds=("timeout-after",)) as hit:
            token = DynamoLocks(client, aws.table).acquire(name, 60)
    finally:
        faults.uninstall()
    assert [(f.operation, f.applied) for f in hit] == [("PutItem", True)]
    assert token is not None  # it used to be None: "someone else holds it" until the lease ran out
    DynamoLocks(aws.dynamodb, aws.table).release(name, token)
    assert DynamoLocks(aws.dynamodb, aws.table).acquire(name, 60) is not None


def test_a_checkpoint_whose_answer_was_lost_is_saved_not_a_conflict(aws: AwsStack) -> None:
    faults, client = lost_once()
    name = f"backfill-{uuid.uuid4().hex[:8]}"
    try:
        with faults.step(FailsOnce(), rate=0.5, kinds=("timeout-after",)):
            assert DynamoCheckpoints(client, aws.table).save(name, {"next": "t1"}, 0) == 1
    finally:
        faults.uninstall()
    checkpoints = DynamoCheckpoints(aws.dynamodb, aws.table)
    assert checkpoints.load(name) == ({"next": "t1"}, 1)
    with pytest.raises(CheckpointConflict):
        checkpoints.save(name, {"next": "t2"}, 0)  # a run that read before it still conflicts


def test_a_poller_lease_whose_answer_was_lost_is_its_takers(aws: AwsStack) -> None:
    faults, client = lost_once()
    cluster = f"c{uuid.uuid4().hex[:8]}"
    try:
        with faults.step(FailsOnce(), rate=0.5, kinds=("timeout-after",)) as hit:
            lease = DynamoLeases(client, aws.table).acquire(cluster, "run-1", 60)  # it used to raise LeaseHeld
    finally:
        faults.uninstall()
    assert [(f.operation, f.applied) for f in hit] == [("UpdateItem", True)]
    assert lease.holder == "run-1"
    with pytest.raises(LeaseHeld):
        DynamoLeases(aws.dynamodb, aws.table).acquire(cluster, "run-2", 60)  # anyone else is still refused


def test_a_burst_claimer_killed_before_its_publish_is_taken_over_after_the_lease(aws: AwsStack) -> None:
    clock, pager = ManualClock(datetime.now(UTC).timestamp()), Pager(die=1)
    counter = DynamoCounter(aws.dynamodb, aws.table, clock=clock)
    alerts = Correlations(counter, pager, forbidden_rules().correlations, thresholds=forbidden_thresholds(10, 0))
    cluster = f"c{uuid.uuid4().hex[:12]}"
    with pytest.raises(Killed):
        alerts.observe(forbidden_matches(10, cluster=cluster))  # claimed in the table, never published
    with pytest.raises(AlertError, match="being paged by another delivery"):
        alerts.observe(forbidden_matches(10, cluster=cluster))
    clock.now += PUBLISH_LEASE_SECONDS + 1
    assert len(alerts.observe(forbidden_matches(10, cluster=cluster))) == 1
    assert alerts.observe(forbidden_matches(10, cluster=cluster)) == []
    assert len(pager.sent) == 1


def test_an_archive_write_whose_answer_was_lost_is_the_compactors_and_marked_stored(
    aws: AwsStack, tmp_path: Path
) -> None:
    """The create-only PUT is applied, its answer lost; botocore's retry meets the file (412). The file
    holds the compaction's bytes: it is its own write, so the compaction succeeds and the ledger entry
    (DynamoDB) is marked stored. It used to fail the partition, leaving a file whose entry, had it then
    been removed, no one could tell from a failed write."""
    faults, session = AwsFaults(), boto3.session.Session(region_name="us-east-1")
    faults.install(session)
    hits: list[Any] = []

    class LosesTheFirstAnswer(S3Store):
        def put(self, key: str, data: bytes, content_type: str = "application/octet-stream", *,
                create_only: bool = False) -> None:  # fmt: skip
            with faults.step(FailsOnce(), rate=0.5, kinds=("timeout-after",)) as hit:
                try:
                    super().put(key, data, content_type, create_only=create_only)
                finally:
                    hits.extend(hit)

    raw, now = LocalStore(tmp_path), datetime.now(UTC)
    events = list(Synth(minutes=1, rate=1, seed=3, start=now).events())[:20]
    result = AuditPipeline(PipelineConfig()).process(events, cluster="c1", source="file", ingested_at=format_utc(now))
    raw_key = Landing(raw).write_raw("c1", now, "b1", result.lines)
    assert raw_key is not None
    ledger = DynamoLedger(aws.dynamodb, aws.table)
    archive = LosesTheFirstAnswer(session.client("s3"), aws.bucket)
    try:
        report = Compactor(raw, {"audit": archive}, LocalLocks(tmp_path / "locks"), clock=lambda: now,
                           ledger=ledger).compact([raw_key])  # fmt: skip
    finally:
        faults.uninstall()
    assert [(f.operation, f.applied) for f in hits] == [("PutObject", True)]
    assert report.done == {raw_key} and report.rows_written == 20
    (key,) = report.files
    assert {e.key: e.stored for e in ledger.entries(f"{now:%Y-%m-%dT%H}")}[key] is True
    assert S3Store(aws.s3, aws.bucket).get(key)[:4] == b"PAR1"
