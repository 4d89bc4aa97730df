"""Compactor: SQS (S3 notifications for raw/) -> the core's Compactor -> Parquet archives."""

from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from auditlake.assembly import build_compactor
from auditlake.notifications import compact_messages
from auditlake.settings import AUDIT_BUCKET, EVENTS_BUCKET, RAW_BUCKET, STATE_TABLE, Settings

logger = Logger()
copy_config_to_registered_loggers(source_logger=logger, include={"auditlake"})
metrics = Metrics()
# Failures are expected (a partition busy elsewhere): report them, do not fail the invocation.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
settings = Settings.from_env(required=(RAW_BUCKET, AUDIT_BUCKET, EVENTS_BUCKET, STATE_TABLE))
compactor = build_compactor(settings, s3=boto3.client("s3"), dynamodb=boto3.client("dynamodb"))


class NotYetCompacted(RuntimeError):
    pass


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    bodies = {record["messageId"]: record["body"] for record in event["Records"]}
    failed, _ = compact_messages(compactor, bodies, settings.raw_bucket, metrics)

    def confirm(record: SQSRecord) -> None:  # the batch processor turns raises into retries
        if record.message_id in failed:
            raise NotYetCompacted(record.message_id)

    return process_partial_response(event=event, record_handler=confirm, processor=processor, context=context)
