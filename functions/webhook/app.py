"""Audit webhook: API Gateway HTTP API ``POST /v1/audit`` -> the core's AuditWebhook."""

import base64
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.utilities.typing import LambdaContext

from auditlake.assembly import build_webhook
from auditlake.settings import RAW_BUCKET, STATE_TABLE, Settings

logger = Logger()
copy_config_to_registered_loggers(source_logger=logger, include={"auditlake"})
metrics = Metrics()
app = APIGatewayHttpResolver()
settings = Settings.from_env(required=(RAW_BUCKET, STATE_TABLE))
webhook = build_webhook(
    settings,
    s3=boto3.client("s3"),
    dynamodb=boto3.client("dynamodb"),
    ssm=boto3.client("ssm") if settings.policy_parameter else None,
    metrics=metrics,
)


@app.post("/v1/audit")
def post_audit() -> Response[dict[str, Any]]:
    event = app.current_event
    body = event.body or ""
    raw = base64.b64decode(body) if event.is_base64_encoded else body.encode("utf-8", "surrogatepass")
    reply = webhook.handle(event.headers.get("authorization"), raw)
    return Response(reply.status, content_types.APPLICATION_JSON, reply.body)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
