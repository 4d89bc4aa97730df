"""The compactor's two triggers: the hourly schedule, and S3 event notifications delivered through SQS.

``handle`` tells them apart. The schedule runs ``hourly.compact_due``; a run with hours it could not
finish fails (Lambda retries it, and the next hour's run takes what is still not done).

Each SQS message holds one S3 notification. An object whose landing hour is still open (or closed
less than ``hourly.GRACE`` ago) is left to the hourly run, and its message is done at once; a late
one (archive/hourly.py) is compacted now, and its message is done when it is compacted (or
quarantined). The others are reported back as failed, so SQS delivers them again
(ReportBatchItemFailures); compaction is idempotent, so a retry never duplicates a row.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.s3_event import S3Event
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from auditlake.archive.compactor import CompactionReport, Compactor
from auditlake.archive.hourly import CompactedHours, compact_due, late_keys
from auditlake.jsonio import JSONError, loads
from auditlake.metrics import MetricsSink

logger = logging.getLogger(__name__)


def raw_keys(body: str, bucket: str) -> list[str]:
    """Keys of objects created in ``bucket`` named by one notification (S3's test event names none)."""
    try:
        document = loads(body.encode())
    except JSONError:
        logger.warning("message is not an S3 notification")
        return []
    if not isinstance(document, dict) or "Records" not in document:
        return []
    keys = []
    for record in S3Event(document).records:
        if not record.event_name.startswith("ObjectCreated:"):
            continue
        if record.s3.bucket.name != bucket:
            logger.warning("notification for another bucket ignored", extra={"bucket": record.s3.bucket.name})
            continue
        keys.append(record.s3.get_object.key)  # URL-decoded by the data class
    return keys


def compact_messages(
    compactor: Compactor, bodies: Mapping[str, str], bucket: str, metrics: MetricsSink, now: datetime
) -> tuple[set[str], CompactionReport]:
    """Compact the late objects the messages name; return the ids of messages to deliver again."""
    keys = {message_id: raw_keys(body, bucket) for message_id, body in bodies.items()}
    late, scheduled = late_keys((key for names in keys.values() for key in names), now)
    report = compactor.compact(late)
    metrics.add_metric("RawObjectsLeftToHourlyRun", "Count", len(scheduled))
    failed = {message_id for message_id, names in keys.items() if report.failed.intersection(names)}
    _record(report, metrics, "late")
    return failed, report


def _record(report: CompactionReport, metrics: MetricsSink, trigger: str) -> None:
    for name, value in (
        ("RowsArchived", report.rows_written),
        ("DuplicatesDropped", report.duplicates),
        ("FilesWritten", len(report.files)),
        ("RawObjectsQuarantined", len(report.quarantined)),
        ("RawObjectsRetried", len(report.failed)),
    ):
        metrics.add_metric(name, "Count", value)
    logger.info(
        "compaction",
        extra={"trigger": trigger, "rows": report.rows_written, "duplicates": report.duplicates,
               "files": len(report.files), "quarantined": len(report.quarantined), "retry": len(report.failed)},
    )  # fmt: skip


class HoursNotDone(RuntimeError):
    pass


def handle(
    compactor: Compactor,
    hours: CompactedHours,
    event: dict[str, Any],
    *,
    bucket: str,
    metrics: MetricsSink,
    context: Any,
    now: datetime | None = None,
) -> PartialItemFailureResponse | dict[str, int]:
    """One invocation: an SQS batch of notifications (late objects), or the hourly schedule."""
    now = now or datetime.now(UTC)
    if "Records" in event:
        return compact_sqs_batch(compactor, event, bucket, metrics, context, now=now)
    report = compact_due(compactor, hours, now)
    _record(report, metrics, "hourly")
    if report.failed:
        raise HoursNotDone(f"{len(report.failed)} raw object(s) not compacted; their hours stay due")
    return {"files": len(report.files), "rows": report.rows_written}


class NotYetCompacted(RuntimeError):
    pass


def compact_sqs_batch(
    compactor: Compactor,
    event: dict[str, Any],
    bucket: str,
    metrics: MetricsSink,
    context: Any,
    *,
    now: datetime | None = None,
) -> PartialItemFailureResponse:
    """One SQS batch: compacted together (few, large files), then each message confirmed or reported
    back for redelivery (ReportBatchItemFailures)."""
    bodies = {record["messageId"]: record["body"] for record in event["Records"]}
    failed, _ = compact_messages(compactor, bodies, bucket, metrics, now or datetime.now(UTC))

    def confirm(record: SQSRecord) -> None:  # the batch processor turns raises into retries
        if record.message_id in failed:
            raise NotYetCompacted(record.message_id)

    # Failures are expected (a partition busy elsewhere): report them, do not fail the invocation.
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    return process_partial_response(event=event, record_handler=confirm, processor=processor, context=context)
