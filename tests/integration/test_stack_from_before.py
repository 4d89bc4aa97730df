"""A stack deployed before this release lacks the outputs this release added (FindingsArchiveBucketName):
the commands that read it say so in one ``error:`` line naming the stack, the output and the fix
(sam deploy), and exit 1; never a KeyError traceback."""

from __future__ import annotations

import json
import uuid

import boto3
import click
import pytest
from click.testing import CliRunner

from auditlake.cli import main
from auditlake.cli.stack import (
    ARCHIVE_BUCKETS,
    FINDINGS_ARCHIVE_BUCKET,
    REQUIRED_OUTPUTS,
    MissingOutput,
    StackOutputs,
    stack_outputs,
)
from tests.helpers import AwsStack


def old_stack(aws: AwsStack) -> str:
    """A stand-in on moto with the outputs `verify --stack` read before the findings archive existed."""
    name = f"auditlake-{uuid.uuid4().hex[:8]}"
    outputs = {"AuditArchiveBucketName": f"{aws.bucket}-audit", "EventsArchiveBucketName": f"{aws.bucket}-events",
               "DigestKeyArn": "arn:aws:kms:us-east-1:123456789012:key/d", "StateTableName": aws.table}  # fmt: skip
    template = {"Resources": {"Placeholder": {"Type": "AWS::SNS::Topic"}},
                "Outputs": {k: {"Value": v} for k, v in outputs.items()}}  # fmt: skip
    boto3.client("cloudformation").create_stack(StackName=name, TemplateBody=json.dumps(template))
    return name


def test_verify_on_a_stack_without_the_findings_output_is_one_error_line(aws: AwsStack) -> None:
    name = old_stack(aws)
    result = CliRunner(mix_stderr=False).invoke(main, ["verify", "--stack", name])
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)  # not a KeyError
    assert result.stderr == (
        f"error: stack {name} has no output FindingsArchiveBucketName: redeploy it with this release (sam deploy)\n"
    )
    assert result.stdout == ""


def test_the_outputs_read_answer_a_missing_name_with_the_redeploy_error(aws: AwsStack) -> None:
    name = old_stack(aws)
    outputs = stack_outputs(boto3.session.Session(), name)
    assert outputs["StateTableName"] == aws.table
    assert outputs.get(FINDINGS_ARCHIVE_BUCKET) is None  # the callers that cope without it still can
    with pytest.raises(MissingOutput) as missing:
        outputs[ARCHIVE_BUCKETS["findings"]]
    assert isinstance(missing.value, click.ClickException) and missing.value.exit_code == 1
    assert missing.value.format_message() == (
        f"stack {name} has no output FindingsArchiveBucketName: redeploy it with this release (sam deploy)"
    )
    assert [n for n in REQUIRED_OUTPUTS if n not in outputs] != []  # doctor's outputs check sees them missing


def test_stack_outputs_keep_the_mapping_they_were_given() -> None:
    outputs = StackOutputs("s", {"A": "1"})
    assert outputs == {"A": "1"} and "B" not in outputs and outputs.stack == "s"
    with pytest.raises(MissingOutput, match=r"^stack s has no output B: redeploy"):
        outputs["B"]
