"""Kubernetes Events poller. The every-minute schedule invokes it without a cluster: it starts one
asynchronous invocation per registered cluster (fan-out), and each of those polls its cluster
until shortly before its own timeout."""

import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.utilities.typing import LambdaContext

from auditlake.assembly import build_poller_fleet
from auditlake.jsonio import dumps
from auditlake.settings import RAW_BUCKET, STATE_TABLE, Settings

logger = Logger()
copy_config_to_registered_loggers(source_logger=logger, include={"auditlake"})
metrics = Metrics()
settings = Settings.from_env(required=(RAW_BUCKET, STATE_TABLE))
region = os.environ["AWS_REGION"]  # set by Lambda; EKS tokens are signed for the regional STS endpoint
fleet = build_poller_fleet(
    settings,
    s3=boto3.client("s3"),
    dynamodb=boto3.client("dynamodb"),
    eks=boto3.client("eks"),
    sts=boto3.client("sts", region_name=region, endpoint_url=f"https://sts.{region}.amazonaws.com"),
    secrets=boto3.client("secretsmanager"),
    metrics=metrics,
)
lambda_client = boto3.client("lambda")


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if "cluster" not in event:  # the schedule

        def invoke(name: str) -> object:
            payload = dumps({"cluster": name})
            return lambda_client.invoke(
                FunctionName=context.invoked_function_arn, InvocationType="Event", Payload=payload
            )

        return {"dispatched": fleet.dispatch(invoke)}
    budget = context.get_remaining_time_in_millis() / 1000 - 5  # keep 5 s to log and flush metrics
    return vars(fleet.poll(str(event["cluster"]), budget, holder=context.aws_request_id))
