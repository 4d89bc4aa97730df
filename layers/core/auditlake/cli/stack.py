"""A deployed stack as the CLI sees it: the names of template.yaml's Outputs it reads, in one place,
and reading them.

Contract: every name here is an Output of template.yaml (tests/infra/test_stack_outputs.py fails
when one is renamed on one side only); the CLI and ``doctor`` read Outputs only through these names.
``stack_outputs`` answers a name the stack lacks (one deployed from an older template, e.g. before
FindingsArchiveBucketName) with ``MissingOutput``: one ``error:`` line telling to redeploy, exit 1,
never a KeyError traceback; ``.get`` still answers None for the callers that cope without it.
"""

from __future__ import annotations

from typing import IO, Any

import click

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


class MissingOutput(click.ClickException):
    """The deployed stack has no such Output: it predates this release's template.yaml."""

    def __init__(self, stack: str, output: str) -> None:
        super().__init__(f"stack {stack} has no output {output}: redeploy it with this release (sam deploy)")
        self.stack, self.output = stack, output

    def show(self, file: IO[Any] | None = None) -> None:
        # As render.fail prints every other CLI error (click's own would say "Error: ...").
        from auditlake.cli.render import err

        err.print(f"[red]error:[/red] {self.format_message()}", highlight=False, markup=True)


class StackOutputs(dict[str, str]):
    """A stack's Outputs by name; indexing a name it lacks raises ``MissingOutput`` naming the stack."""

    def __init__(self, stack: str, outputs: dict[str, str]) -> None:
        super().__init__(outputs)
        self.stack = stack

    def __missing__(self, key: str) -> str:
        raise MissingOutput(self.stack, key)


def outputs_of(description: dict[str, Any]) -> dict[str, str]:
    """A stack description's Outputs by name (``describe_stacks``' ``Stacks[i]``)."""
    return {o["OutputKey"]: o["OutputValue"] for o in description.get("Outputs", [])}


def stack_outputs(session: Any, stack: str) -> StackOutputs:
    """The Outputs of the deployed stack ``stack`` (a boto3 session's CloudFormation); a name it
    lacks, indexed, is ``MissingOutput`` (see the module's contract)."""
    stacks = session.client("cloudformation").describe_stacks(StackName=stack)["Stacks"]
    return StackOutputs(stack, outputs_of(stacks[0]))
