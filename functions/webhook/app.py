"""Audit webhook: API Gateway HTTP API ``POST /v1/audit`` (its only route here) -> the core's AuditWebhook.

The payload 2.0 dict (header names lowercased by API Gateway) is read as it is: Powertools' data
classes cost ~15 ms of every cold start (make bench, webhook_import_overhead_ms) for three fields."""

from functools import partial
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.utilities.typing import LambdaContext

from auditlake.assembly import build_webhook
from auditlake.settings import RAW_BUCKET, STATE_TABLE, Settings

logger = Logger()
copy_config_to_registered_loggers(source_logger=logger, include={"auditlake"})
metrics = Metrics()
settings = Settings.from_env(required=(RAW_BUCKET, STATE_TABLE))
webhook = build_webhook(
    settings,
    s3=boto3.client("s3"),
    dynamodb=boto3.client("dynamodb"),
    ssm=boto3.client("ssm") if settings.policy_parameter else None,
    sns=partial(boto3.client, "sns"),
    metrics=metrics,
)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    authorization = (event.get("headers") or {}).get("authorization")
    return webhook.handle_http_api(
        authorization, event.get("body"), base64_encoded=bool(event.get("isBase64Encoded", False))
    )
