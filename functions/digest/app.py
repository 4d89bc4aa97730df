"""Hourly digest: seal the archive files written in each finished hour, signed with KMS and chained
to the previous digest (auditlake verify --stack checks the chain)."""

from datetime import UTC, datetime
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.utilities.typing import LambdaContext

from auditlake.assembly import build_digester
from auditlake.settings import AUDIT_BUCKET, DIGEST_KEY, EVENTS_BUCKET, FINDINGS_BUCKET, STATE_TABLE, Settings
from auditlake.stores import StoreError
from auditlake.trust.digest import DigestError

logger = Logger()
copy_config_to_registered_loggers(source_logger=logger, include={"auditlake"})
metrics = Metrics()
settings = Settings.from_env(required=(AUDIT_BUCKET, EVENTS_BUCKET, FINDINGS_BUCKET, STATE_TABLE, DIGEST_KEY))
digester = build_digester(settings, s3=boto3.client("s3"), dynamodb=boto3.client("dynamodb"), kms=boto3.client("kms"))


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        report = digester.seal_finished_hours(datetime.now(UTC))
    except (DigestError, StoreError):
        # Raised, never swallowed: the invocation fails, the function's Errors alarm pages, and the
        # hours after the last digest stay unsealed (no ledger entry is taken as written or not).
        logger.exception("digest run failed: nothing after the last digest was sealed")
        raise
    metrics.add_metric("DigestsWritten", "Count", len(report.digests))
    metrics.add_metric("FilesSealed", "Count", report.objects)
    report.log(digester.retention)
    return report.summary()
