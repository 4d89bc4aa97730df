"""Kubernetes Events poller: the schedule fans out one invocation per cluster (at most PollerMaxFanOut
a minute, round-robin); each polls its cluster until shortly before its timeout (core: PollerFleet.handle)."""

from functools import partial
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.utilities.typing import LambdaContext

from auditlake.assembly import build_poller_fleet
from auditlake.events.auth import regional_sts
from auditlake.settings import RAW_BUCKET, STATE_TABLE, Settings

logger = Logger()
copy_config_to_registered_loggers(source_logger=logger, include={"auditlake"})
metrics = Metrics()
fleet = build_poller_fleet(
    Settings.from_env(required=(RAW_BUCKET, STATE_TABLE)), s3=boto3.client("s3"), dynamodb=boto3.client("dynamodb"),
    eks=boto3.client("eks"), sts=regional_sts(),  # EKS tokens name the partition's regional STS
    secrets=boto3.client("secretsmanager"), lambda_client=boto3.client("lambda"), metrics=metrics,
    sns=partial(boto3.client, "sns"),  # made when the first finding of an Events rule pages
)  # fmt: skip


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return fleet.handle(event, function_arn=context.invoked_function_arn, request_id=context.aws_request_id,
                        seconds_left=context.get_remaining_time_in_millis() / 1000)  # fmt: skip
