"""Compactor: SQS (S3 notifications for raw/) -> the core's Compactor -> Parquet archives."""

from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.typing import LambdaContext

from auditlake.archive.sqs_trigger import compact_sqs_batch
from auditlake.assembly import build_compactor
from auditlake.settings import AUDIT_BUCKET, EVENTS_BUCKET, FINDINGS_BUCKET, RAW_BUCKET, STATE_TABLE, Settings

logger = Logger()
copy_config_to_registered_loggers(source_logger=logger, include={"auditlake"})
metrics = Metrics()
settings = Settings.from_env(required=(RAW_BUCKET, AUDIT_BUCKET, EVENTS_BUCKET, FINDINGS_BUCKET, STATE_TABLE))
compactor = build_compactor(settings, s3=boto3.client("s3"), dynamodb=boto3.client("dynamodb"))


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return compact_sqs_batch(compactor, event, settings.raw_bucket, metrics, context)
