"""Compactor: the hourly schedule (closed landing hours) and SQS (late raw objects) -> Parquet archives."""

from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.typing import LambdaContext

from auditlake.archive.triggers import handle
from auditlake.assembly import build_compacted_hours, build_compactor
from auditlake.settings import AUDIT_BUCKET, EVENTS_BUCKET, FINDINGS_BUCKET, RAW_BUCKET, STATE_TABLE, Settings

logger = Logger()
copy_config_to_registered_loggers(source_logger=logger, include={"auditlake"})
metrics = Metrics()
settings = Settings.from_env(required=(RAW_BUCKET, AUDIT_BUCKET, EVENTS_BUCKET, FINDINGS_BUCKET, STATE_TABLE))
dynamodb = boto3.client("dynamodb")
compactor = build_compactor(settings, s3=boto3.client("s3"), dynamodb=dynamodb)
hours = build_compacted_hours(settings, dynamodb=dynamodb)


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse | dict[str, int]:
    return handle(compactor, hours, event, bucket=settings.raw_bucket, metrics=metrics, context=context)
