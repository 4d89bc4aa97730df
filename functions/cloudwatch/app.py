"""EKS audit forwarder: CloudWatch Logs subscription (/aws/eks/<cluster>/cluster) -> the core's forwarder.

CloudWatch Logs invokes asynchronously: an exception (storage failed) makes Lambda retry the
delivery, and a delivery that still fails goes to the on-failure queue (template.yaml).
"""

from functools import partial
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.utilities.data_classes.cloud_watch_logs_event import CloudWatchLogsEvent
from aws_lambda_powertools.utilities.data_classes.event_source import event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from auditlake.assembly import build_forwarder
from auditlake.settings import RAW_BUCKET, Settings

logger = Logger()
copy_config_to_registered_loggers(source_logger=logger, include={"auditlake"})
metrics = Metrics()
settings = Settings.from_env(required=(RAW_BUCKET,))
forwarder = build_forwarder(
    settings,
    s3=boto3.client("s3"),
    ssm=boto3.client("ssm") if settings.policy_parameter else None,
    dynamodb=boto3.client("dynamodb") if settings.state_table else None,  # alert counters, heartbeats
    sns=partial(boto3.client, "sns"),
    metrics=metrics,
)


@logger.inject_lambda_context
@metrics.log_metrics
@event_source(data_class=CloudWatchLogsEvent)
def lambda_handler(event: CloudWatchLogsEvent, context: LambdaContext) -> dict[str, Any]:
    return vars(forwarder.payload(event.raw_logs_data))
