"""A deployed stack as the CLI sees it: the names of template.yaml's Outputs it reads, in one place,
and reading them.

Contract: every name here is an Output of template.yaml (tests/infra/test_stack_outputs.py fails
when one is renamed on one side only); the CLI and ``doctor`` read Outputs only through these names.
"""

from __future__ import annotations

from typing import Any

WEBHOOK_URL = "WebhookUrl"
STATE_TABLE = "StateTableName"
RAW_BUCKET = "RawBucketName"
AUDIT_ARCHIVE_BUCKET = "AuditArchiveBucketName"
EVENTS_ARCHIVE_BUCKET = "EventsArchiveBucketName"
FINDINGS_ARCHIVE_BUCKET = "FindingsArchiveBucketName"
DIGEST_KEY = "DigestKeyArn"
DATA_KEY = "DataKeyArn"
CLOUDWATCH_FUNCTION = "CloudWatchFunctionName"
WEBHOOK_FUNCTION = "WebhookFunctionName"
DIGEST_FUNCTION = "DigestFunctionName"
GLUE_DATABASE = "GlueDatabaseName"
ATHENA_WORKGROUP = "AthenaWorkGroupName"
ATHENA_RESULTS_BUCKET = "AthenaResultsBucketName"

# The archive bucket of each kind of archive.
ARCHIVE_BUCKETS = {
    "audit": AUDIT_ARCHIVE_BUCKET,
    "events": EVENTS_ARCHIVE_BUCKET,
    "findings": FINDINGS_ARCHIVE_BUCKET,
}

# The outputs the CLI reads (cluster add, backfill, verify, query --athena) and doctor itself.
REQUIRED_OUTPUTS = (
    WEBHOOK_URL,
    STATE_TABLE,
    RAW_BUCKET,
    AUDIT_ARCHIVE_BUCKET,
    EVENTS_ARCHIVE_BUCKET,
    FINDINGS_ARCHIVE_BUCKET,
    DIGEST_KEY,
    DATA_KEY,
    CLOUDWATCH_FUNCTION,
    GLUE_DATABASE,
    ATHENA_WORKGROUP,
)


def outputs_of(description: dict[str, Any]) -> dict[str, str]:
    """A stack description's Outputs by name (``describe_stacks``' ``Stacks[i]``)."""
    return {o["OutputKey"]: o["OutputValue"] for o in description.get("Outputs", [])}


def stack_outputs(session: Any, stack: str) -> dict[str, str]:
    """The Outputs of the deployed stack ``stack`` (a boto3 session's CloudFormation)."""
    stacks = session.client("cloudformation").describe_stacks(StackName=stack)["Stacks"]
    return outputs_of(stacks[0])
