"""``auditlake doctor`` on moto server: a healthy stand-in of a deployed stack passes; each defect a
first deployment can meet is its own FAIL (or WARN) line and, for a FAIL, exit 1.

The stand-in is tests/integration/fixtures/doctor-stack.json plus the resources moto's CloudFormation
cannot make as template.yaml configures them, made here. What moto cannot emulate, and so what a
first real deployment checks for real (README: Deploy, "After deploying: auditlake doctor"):

- CloudFormation: moto's makes the functions but no alarms, Glue catalog or workgroup, and lists the
  alarms without a physical name; the test's session names them as CloudFormation would
  (``<stack>-<logical id>-<suffix>``), and the test creates them under those names.
- Lambda ``GetAccountSettings`` is not in moto: the test's session answers it with a chosen quota.
- Athena: moto answers every query SUCCEEDED with no rows, whatever the SQL, the Glue table, the
  permissions or the KMS key; on AWS the query really reads the archive.
- IAM and KMS policies: moto allows every call, so a doctor run without a permission (a FAIL naming
  the refused operation) is seen only on AWS; here a refused call is made by the session.
- CloudWatch: function errors and alarm states are what the test puts there.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders
from click.testing import CliRunner

from auditlake.audit.pipeline import AuditPipeline, PipelineConfig
from auditlake.cli import doctor as doctor_module
from auditlake.cli import main
from auditlake.cli.doctor import FAIL, OK, WARN, Check, Doctor
from auditlake.clusters.registry import DynamoRegistry, new_token, token_hash
from auditlake.clusters.webhook_kubeconfig import render_kubeconfig
from auditlake.ingest.webhook import AuditWebhook
from auditlake.landing import Landing
from auditlake.state_table import digest_head_key
from auditlake.stores.s3 import S3Store
from tests.helpers import AwsStack, landed

# moto's CloudFormation warns about each resource type it cannot make (the alarms): known, bridged below.
pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse AWS..CloudWatch..Alarm")

MODELS = botocore.session.get_session().get_component("data_loader")
TEMPLATE = Path(__file__).parent / "fixtures" / "doctor-stack.json"
ALARMS = ("WebhookServerErrorsAlarm", "CompactDeadLettersAlarm")  # as in the fixture template
ALARM_SUFFIX = "1A2B3C4D5E6F"  # CloudFormation appends a random suffix to names it makes
LIFECYCLE = {"Rules": [{"ID": "expire", "Status": "Enabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 365}}]}
# The findings bucket as template.yaml configures it: findings/ kept FindingsRetentionDays (the fixture's 400).
FINDINGS_LIFECYCLE = {"Rules": [{"ID": "findings-expiry", "Status": "Enabled", "Filter": {"Prefix": "findings/"},
                                 "Expiration": {"Days": 400}}]}  # fmt: skip
PUBLIC_ACCESS_BLOCK = {"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
                       "RestrictPublicBuckets": True}  # fmt: skip


@dataclass
class FakeStack:
    """A stack as template.yaml deploys it, on moto: names, and what a test may break before it is made."""

    aws: AwsStack
    name: str = field(default_factory=lambda: f"auditlake-{uuid.uuid4().hex[:8]}")
    quota: int = 1000
    max_fan_out: int = 10
    webhook_url: str = "https://abc.execute-api.us-east-1.amazonaws.com/v1/audit"

    def __post_init__(self) -> None:
        suffix = self.name.removeprefix("auditlake-")
        self.buckets = {"raw": self.aws.bucket, "audit": f"audit-{suffix}", "events": f"events-{suffix}",
                        "findings": f"findings-{suffix}", "results": f"results-{suffix}"}  # fmt: skip
        self.database, self.workgroup = f"auditlake_{suffix}", self.name
        self.data_key = boto3.client("kms").create_key(Description="data")["KeyMetadata"]["Arn"]
        self.digest_key = self.data_key.replace(":key/", ":key/digest-")  # doctor only reads its output

    def alarm(self, logical: str) -> str:
        return f"{self.name}-{logical}-{ALARM_SUFFIX}"

    # ------------------------------------------------------------ making it

    def bucket(self, role: str, *, versioned: bool = True) -> None:
        s3, bucket = self.aws.s3, self.buckets[role]
        if role != "raw":  # the aws fixture made the raw bucket
            s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=role == "audit")
        if versioned:
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [
            {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": self.data_key},
             "BucketKeyEnabled": True}]})  # fmt: skip
        s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=PUBLIC_ACCESS_BLOCK)
        lifecycle = FINDINGS_LIFECYCLE if role == "findings" else LIFECYCLE
        s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration=lifecycle)
        if role == "audit":
            retention = {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 365}}
            s3.put_object_lock_configuration(
                Bucket=bucket, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled", "Rule": retention}
            )

    def make(self, *, unversioned: tuple[str, ...] = (), without_output: str | None = None,
             head_age: timedelta | None = timedelta(minutes=65), now: datetime | None = None) -> None:  # fmt: skip
        for role in self.buckets:
            self.bucket(role, versioned=role not in unversioned)
        self.aws.dynamodb.update_time_to_live(
            TableName=self.aws.table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "ttl"}
        )
        if head_age is not None:
            self.digest_head((now or datetime.now(UTC)) - head_age)
        glue = boto3.client("glue")
        glue.create_database(DatabaseInput={"Name": self.database})
        for table in ("audit", "events", "findings"):
            glue.create_table(DatabaseName=self.database, TableInput={
                "Name": table, "Parameters": {"projection.enabled": "true"},
                "PartitionKeys": [{"Name": "dt", "Type": "string"}, {"Name": "hour", "Type": "int"}],
                "StorageDescriptor": {"Location": f"s3://{self.buckets[table]}/{table}/", "Columns": [
                    {"Name": "cluster", "Type": "string"}]}})  # fmt: skip
        boto3.client("athena").create_work_group(Name=self.workgroup, Configuration={
            "EnforceWorkGroupConfiguration": True, "ResultConfiguration": {
                "OutputLocation": f"s3://{self.buckets['results']}/results/",
                "EncryptionConfiguration": {"EncryptionOption": "SSE_KMS", "KmsKey": self.data_key}}})  # fmt: skip
        for logical in ALARMS:
            boto3.client("cloudwatch").put_metric_alarm(
                AlarmName=self.alarm(logical), Namespace="auditlake", MetricName="m", Statistic="Sum", Period=60,
                EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanOrEqualToThreshold",
            )  # fmt: skip
        template = json.loads(TEMPLATE.read_text())
        if without_output:
            del template["Outputs"][without_output]
        given = {"RawBucket": self.buckets["raw"], "AuditBucket": self.buckets["audit"],
                 "EventsBucket": self.buckets["events"], "FindingsBucket": self.buckets["findings"],
                 "StateTable": self.aws.table, "DataKey": self.data_key,
                 "DigestKey": self.digest_key, "Database": self.database, "WorkGroup": self.workgroup,
                 "Webhook": self.webhook_url, "ResultsBucket": self.buckets["results"],
                 "PollerMaxFanOut": str(self.max_fan_out)}  # fmt: skip
        boto3.client("cloudformation").create_stack(
            StackName=self.name, TemplateBody=json.dumps(template),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in given.items()],
        )  # fmt: skip

    def digest_head(self, ends: datetime) -> None:
        head = {"sequence": 7, "key": "digests/00000007.json", "sha256": "0" * 64,
                "to": ends.strftime("%Y-%m-%dT%H:%M:%SZ")}  # fmt: skip
        self.aws.dynamodb.put_item(TableName=self.aws.table, Item={
            **digest_head_key(), "head": {"S": json.dumps(head)}, "sequence": {"N": "7"}})  # fmt: skip

    # ------------------------------------------------------------ what moto lacks, answered by the session

    def session(self) -> boto3.session.Session:
        core = botocore.session.Session()
        core.register_component("data_loader", MODELS)  # a fresh session, without parsing the models again
        session = boto3.session.Session(botocore_session=core)
        session.events.register("before-call.lambda.GetAccountSettings", self._account_settings)  # type: ignore[arg-type]  # an answer (botocore allows it)
        session.events.register("after-call.cloudformation.ListStackResources", self._name_alarms)
        return session

    def _account_settings(self, **_kwargs: Any) -> tuple[AWSResponse, dict[str, Any]]:
        limit = {"ConcurrentExecutions": self.quota, "UnreservedConcurrentExecutions": self.quota}
        return AWSResponse("https://lambda", 200, HTTPHeaders(), None), {"AccountLimit": limit}

    def _name_alarms(self, parsed: dict[str, Any], **_kwargs: Any) -> None:
        """moto lists the resources it cannot make without a type or a name: list the alarms as
        CloudFormation would, under the names the test made them with."""
        summaries = [r for r in parsed.get("StackResourceSummaries", []) if r.get("LogicalResourceId")]
        summaries += [{"LogicalResourceId": logical, "PhysicalResourceId": self.alarm(logical),
                       "ResourceType": "AWS::CloudWatch::Alarm", "ResourceStatus": "CREATE_COMPLETE"}
                      for logical in ALARMS]  # fmt: skip
        parsed["StackResourceSummaries"] = summaries


def doctor(*args: str) -> Any:
    return CliRunner(mix_stderr=False).invoke(main, ["doctor", *args], catch_exceptions=False)


def printed(result: Any) -> list[str]:
    """The lines doctor printed (moto's server runs in this process and prints what it cannot make)."""
    return [line for line in result.stdout.splitlines() if not line.startswith("No Moto CloudFormation support")]


def checks(stack: FakeStack, now: datetime, **kwargs: Any) -> list[Check]:
    return list(Doctor(stack.session(), stack.name, now=lambda: now, sleep=lambda _s: None, **kwargs).checks())


def lines(found: list[Check], status: str) -> list[str]:
    return [c.line() for c in found if c.status == status]


def named(found: list[Check], name: str) -> Check:
    (check,) = [c for c in found if c.name == name]
    return check


@pytest.fixture
def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def stack(aws: AwsStack) -> FakeStack:
    return FakeStack(aws)


def test_a_healthy_stack_is_all_ok(stack: FakeStack, now: datetime) -> None:
    stack.make(now=now)
    found = checks(stack, now)
    assert lines(found, FAIL) == [] and lines(found, WARN) == []
    names = [c.name for c in found]
    assert names == [
        "stack", "outputs", "bucket raw", "bucket audit", "bucket events", "bucket findings", "bucket results",
        "state table", "digest head", "function WebhookFunction", "function CloudWatchFunction",
        "function EventsPollerFunction", "function CompactorFunction", "function DigestFunction", "alarms",
        "lambda concurrency", "glue audit", "glue events", "glue findings", "athena workgroup", "athena query",
    ]  # fmt: skip
    assert named(found, "bucket audit").detail.endswith(
        "Object Lock GOVERNANCE 365 days, files expire after 365 days, digests after 365 days"
    )
    raw = stack.buckets["raw"]
    assert named(found, "bucket raw").detail == f"{raw}: versioned, KMS, public access blocked, 1 lifecycle rules"
    findings = stack.buckets["findings"]
    assert (
        named(found, "bucket findings").detail
        == f"{findings}: versioned, KMS, public access blocked, 1 lifecycle rules"
    )
    assert named(found, "glue findings").detail.endswith(f"over s3://{findings}/findings/, partitions projected")
    assert named(found, "digest head").detail.endswith("(1 h 05 min ago)")
    assert "2 alarms, none in ALARM" in named(found, "alarms").detail
    assert "SUCCEEDED" in named(found, "athena query").detail


def test_cli_healthy_stack_exits_0_with_one_line_per_check(stack: FakeStack, monkeypatch: pytest.MonkeyPatch) -> None:
    stack.make()
    monkeypatch.setattr(doctor_module, "_session", lambda region, profile: stack.session())
    result = doctor("--stack", stack.name)
    assert result.exit_code == 0, result.output
    assert len(printed(result)) == 21
    assert all(line.startswith("ok    ") for line in printed(result))
    assert result.stderr.splitlines()[-1] == "21 ok, 0 WARN, 0 FAIL"


def test_cli_a_missing_output_an_unversioned_bucket_and_a_stale_digest_fail(
    stack: FakeStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack.make(without_output="DigestKeyArn", unversioned=("events",), head_age=timedelta(hours=5))
    monkeypatch.setattr(doctor_module, "_session", lambda region, profile: stack.session())
    result = doctor("--stack", stack.name)
    assert result.exit_code == 1
    failed = [line for line in printed(result) if line.startswith("FAIL")]
    assert len(failed) == 3, result.stdout
    assert failed[0].startswith("FAIL  outputs: missing DigestKeyArn -> ")
    assert failed[1].startswith(f"FAIL  bucket events: {stack.buckets['events']}: versioning never enabled -> ")
    assert f"put-bucket-versioning --bucket {stack.buckets['events']}" in failed[1]
    assert failed[2].startswith("FAIL  digest head: digest 7 ends") and "5 h 00 min ago" in failed[2]
    assert "verify --stack reports STALE" in failed[2] and f"aws logs tail /auditlake/{stack.name}/digest" in failed[2]
    assert result.stderr.splitlines()[-1] == "18 ok, 0 WARN, 3 FAIL"


def test_before_the_first_digest_it_warns_and_passes(stack: FakeStack, now: datetime) -> None:
    stack.make(head_age=None)
    found = checks(stack, now)
    head = named(found, "digest head")
    assert head.status == WARN and head.detail.startswith("no digest yet (the stack is 0 min old)")
    assert lines(found, FAIL) == []


def test_a_digest_head_is_stale_after_three_hours(stack: FakeStack, now: datetime) -> None:
    stack.make(head_age=timedelta(hours=3), now=now)
    assert named(checks(stack, now), "digest head").status == OK
    assert named(checks(stack, now + timedelta(seconds=1)), "digest head").status == FAIL


def test_the_lambda_concurrency_quota(stack: FakeStack, now: datetime) -> None:
    stack.make(now=now)
    for quota, status in [(1000, OK), (100, OK), (99, WARN), (10, WARN), (6, FAIL)]:
        stack.quota = quota
        checker = Doctor(stack.session(), stack.name, now=lambda: now)
        checker.load()
        (check,) = checker.check_concurrency()
        assert check.status == status, check.line()
        assert "at least 7 needed (compactor 3, poller 0 + 1" in check.detail  # no cluster polled yet
        assert ("request an increase of 'Concurrent executions'" in check.line()) == (status != OK)


def test_polled_clusters_count_against_the_quota_up_to_the_fan_out_bound(stack: FakeStack, now: datetime) -> None:
    from auditlake.clusters.registry import PollConfig

    registry = DynamoRegistry(stack.aws.dynamodb, stack.aws.table)
    for name in ("prod", "staging", "dev"):
        registry.add_cluster(name, token_hash(new_token()), created_at="2026-01-01T00:00:00Z",
                             poll=PollConfig("eks", eks_name=name))  # fmt: skip
    stack.quota, stack.max_fan_out = 8, 2
    stack.make(now=now)
    check = named(checks(stack, now), "lambda concurrency")
    # 3 clusters polled, at most 2 a minute: 3 + 2 + 1 + 3.
    assert check.status == FAIL and "at least 9 needed (compactor 3, poller 2 + 1" in check.detail


def test_bucket_settings_that_drifted_fail_with_the_fix(stack: FakeStack, now: datetime) -> None:
    stack.make(now=now)
    s3 = stack.aws.s3
    s3.delete_public_access_block(Bucket=stack.buckets["results"])
    s3.delete_bucket_lifecycle(Bucket=stack.buckets["raw"])
    s3.put_bucket_encryption(Bucket=stack.buckets["events"], ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})  # fmt: skip
    s3.put_object_lock_configuration(Bucket=stack.buckets["audit"], ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 30}}})  # fmt: skip
    found = checks(stack, now)
    flags = "BlockPublicAcls, IgnorePublicAcls, BlockPublicPolicy, RestrictPublicBuckets"
    assert named(found, "bucket results").detail.endswith(f"public access not blocked ({flags})")
    assert "put-public-access-block" in named(found, "bucket results").fix
    assert "no lifecycle rule" in named(found, "bucket raw").detail
    assert "default encryption AES256, not KMS" in named(found, "bucket events").detail
    assert "Object Lock GOVERNANCE 30 days, the stack says GOVERNANCE 365 days" in named(found, "bucket audit").detail
    assert len(lines(found, FAIL)) == 4


def test_digests_that_expire_before_their_files_fail(stack: FakeStack, now: datetime) -> None:
    stack.make(now=now)
    stack.aws.s3.put_bucket_lifecycle_configuration(Bucket=stack.buckets["audit"], LifecycleConfiguration={"Rules": [
        {"ID": "audit-expiry", "Status": "Enabled", "Filter": {"Prefix": "audit/"}, "Expiration": {"Days": 365}},
        {"ID": "digest-expiry", "Status": "Enabled", "Filter": {"Prefix": "digests/"}, "Expiration": {"Days": 30}},
    ]})  # fmt: skip
    check = named(checks(stack, now), "bucket audit")
    assert check.status == FAIL
    assert (
        "files expire after 365 days, digests after 30 days: digests expire before the files they seal" in check.detail
    )
    assert "digest-expiry" in check.fix


def test_a_findings_rule_expiring_sooner_than_findings_retention_fails(stack: FakeStack, now: datetime) -> None:
    """Held to FindingsRetentionDays as the audit and events buckets are to theirs: the digests record it,
    and verify reports what a sooner rule removes as missing."""
    stack.make(now=now)
    stack.aws.s3.put_bucket_lifecycle_configuration(Bucket=stack.buckets["findings"], LifecycleConfiguration={
        "Rules": [{"ID": "findings-expiry", "Status": "Enabled", "Filter": {"Prefix": "findings/"},
                   "Expiration": {"Days": 30}}]})  # fmt: skip
    found = checks(stack, now)
    check = named(found, "bucket findings")
    assert check.status == FAIL and "\n" not in check.line()
    assert check.detail.endswith(
        "rule findings-expiry expires findings/ keys (prefix 'findings/') after 30 days, "
        "the stack's FindingsRetentionDays is 400"
    )
    assert "remove lifecycle rule(s) findings-expiry" in check.fix
    assert lines(found, FAIL) == [check.line()]  # the other buckets are not held to findings' days


def test_findings_bucket_settings_that_drifted_fail(stack: FakeStack, now: datetime) -> None:
    stack.make(unversioned=("findings",), now=now)
    stack.aws.s3.put_bucket_encryption(Bucket=stack.buckets["findings"], ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})  # fmt: skip
    elsewhere = f"s3://{stack.buckets['events']}/findings/"
    boto3.client("glue").update_table(DatabaseName=stack.database, TableInput={
        "Name": "findings", "StorageDescriptor": {"Location": elsewhere}})  # fmt: skip
    found = checks(stack, now)
    bucket = named(found, "bucket findings")
    assert bucket.status == FAIL and "versioning never enabled" in bucket.detail
    assert "default encryption AES256, not KMS" in bucket.detail
    glue = named(found, "glue findings")
    assert glue.status == FAIL
    assert (
        f"reads s3://{stack.buckets['events']}/findings/, not s3://{stack.buckets['findings']}/findings/" in glue.detail
    )


def test_a_stack_from_before_findings_fails_on_its_outputs(stack: FakeStack, now: datetime) -> None:
    """A stack deployed before the findings archive has no FindingsArchiveBucketName: doctor says so (and
    what to do) once, and checks what it can."""
    stack.make(without_output="FindingsArchiveBucketName", now=now)
    found = checks(stack, now)
    outputs = named(found, "outputs")
    assert outputs.status == FAIL and outputs.detail == "missing FindingsArchiveBucketName"
    assert "sam deploy" in outputs.fix
    assert "bucket findings" not in [c.name for c in found]
    assert "None" not in named(found, "glue findings").detail  # no bucket to compare its location with
    assert named(found, "bucket events").status == OK and named(found, "athena query").status == OK


def test_ttl_off_fails(stack: FakeStack, now: datetime) -> None:
    stack.make(now=now)
    stack.aws.dynamodb.update_time_to_live(
        TableName=stack.aws.table, TimeToLiveSpecification={"Enabled": False, "AttributeName": "ttl"}
    )
    check = named(checks(stack, now), "state table")
    assert check.status == FAIL and "update-time-to-live" in check.fix


def test_function_errors_warn_and_an_alarm_in_alarm_fails(stack: FakeStack, now: datetime) -> None:
    stack.make(now=now)
    (name,) = [r["PhysicalResourceId"] for r in boto3.client("cloudformation").list_stack_resources(
        StackName=stack.name)["StackResourceSummaries"] if r["LogicalResourceId"] == "CompactorFunction"]  # fmt: skip
    boto3.client("cloudwatch").put_metric_data(Namespace="AWS/Lambda", MetricData=[
        {"MetricName": "Errors", "Dimensions": [{"Name": "FunctionName", "Value": name}], "Value": 3,
         "Timestamp": now - timedelta(minutes=10)}])  # fmt: skip
    boto3.client("cloudwatch").set_alarm_state(
        AlarmName=stack.alarm("CompactDeadLettersAlarm"), StateValue="ALARM", StateReason="1 message in the DLQ"
    )
    found = checks(stack, now)
    compactor_check = named(found, "function CompactorFunction")
    assert compactor_check.status == WARN and compactor_check.detail == f"{name}: 3 errors in the last hour"
    assert f"aws logs tail /auditlake/{stack.name}/compactor --since 1h" in compactor_check.fix  # its own log group
    (alarm,) = [c for c in found if c.name == "alarm"]
    assert alarm.status == FAIL
    assert alarm.detail == f"{stack.alarm('CompactDeadLettersAlarm')} is in ALARM: 1 message in the DLQ"


def test_a_glue_table_over_the_wrong_bucket_fails(stack: FakeStack, now: datetime) -> None:
    stack.make(now=now)
    boto3.client("glue").update_table(DatabaseName=stack.database, TableInput={
        "Name": "events", "StorageDescriptor": {"Location": "s3://elsewhere/events/"}})  # fmt: skip
    check = named(checks(stack, now), "glue events")
    assert check.status == FAIL
    assert f"reads s3://elsewhere/events/, not s3://{stack.buckets['events']}/events/" in check.detail
    assert "partition projection off" in check.detail


def test_a_mixed_case_glue_database_name_warns(stack: FakeStack, now: datetime) -> None:
    """A database derived from a mixed-case stack name: CloudFormation cannot lower-case it, Glue wants it."""
    stack.database = stack.database.replace("auditlake_", "Auditlake_")
    stack.make(now=now)
    check = named(checks(stack, now), "glue name")
    assert check.status == WARN and f"database {stack.database} is not lower case" in check.detail
    assert "GlueDatabaseName" in check.fix


def test_an_athena_query_that_does_not_finish_is_stopped_and_fails(stack: FakeStack, now: datetime) -> None:
    stack.make(now=now)
    session, stopped = stack.session(), []
    session.events.register("after-call.athena.GetQueryExecution", running)
    session.events.register("before-call.athena.StopQueryExecution", lambda params, **_: stopped.append(params))
    clock = Ticking(now)
    found = list(
        Doctor(session, stack.name, now=clock, sleep=clock.sleep, athena_timeout=timedelta(seconds=10)).checks()
    )
    check = named(found, "athena query")
    assert check.status == FAIL and "still RUNNING after 10 s (stopped)" in check.detail
    assert len(stopped) == 1 and clock.slept == 10


def running(parsed: dict[str, Any], **_kwargs: Any) -> None:
    parsed["QueryExecution"]["Status"] = {"State": "RUNNING"}


class Ticking:
    """A clock that moves only when the code under test sleeps."""

    def __init__(self, start: datetime) -> None:
        self.at, self.slept = start, 0.0

    def __call__(self) -> datetime:
        return self.at

    def sleep(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)
        self.slept += seconds


def test_a_refused_call_is_that_checks_fail_line_not_a_traceback(stack: FakeStack, now: datetime) -> None:
    stack.make(now=now)
    session = stack.session()
    session.events.register("before-call.glue.GetDatabase", denied("GetDatabase"))  # type: ignore[arg-type]  # an answer
    found = list(Doctor(session, stack.name, now=lambda: now, sleep=lambda _s: None).checks())
    glue = named(found, "glue")
    assert glue.status == FAIL
    assert glue.detail.startswith("database ") and "GetDatabase refused: AccessDeniedException" in glue.detail
    assert "the caller may lack that permission" in glue.detail
    assert named(found, "athena query").status == OK  # the other checks still ran


def denied(operation: str) -> Callable[..., tuple[AWSResponse, dict[str, Any]]]:
    def answer(**_kwargs: Any) -> tuple[AWSResponse, dict[str, Any]]:
        error = {"Code": "AccessDeniedException", "Message": f"not authorized to perform glue:{operation}"}
        return AWSResponse("https://glue", 400, HTTPHeaders(), None), {"Error": error, "ResponseMetadata": {}}

    return answer


def test_no_such_stack_is_one_error_line(aws: AwsStack, monkeypatch: pytest.MonkeyPatch) -> None:
    result = doctor("--stack", "no-such-stack")
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.startswith("error: stack no-such-stack: DescribeStacks refused: ValidationError")
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.output


def test_a_stack_that_failed_to_create_fails(stack: FakeStack, now: datetime) -> None:
    stack.make(now=now)
    session = stack.session()

    def rolled_back(parsed: dict[str, Any], **_kwargs: Any) -> None:
        parsed["Stacks"][0].update(StackStatus="ROLLBACK_COMPLETE", StackStatusReason="The following resource(s) "
                                   "failed to create: [GlueDatabase]")  # fmt: skip

    session.events.register("after-call.cloudformation.DescribeStacks", rolled_back)
    check = named(list(Doctor(session, stack.name, now=lambda: now).checks()), "stack")
    assert check.status == FAIL and "failed to create: [GlueDatabase]" in check.detail
    assert "must be deleted before it is deployed again" in check.fix


# ---------------------------------------------------------------- the webhook round trip


@pytest.fixture
def webhook(aws: AwsStack) -> Iterator[str]:
    """The webhook core (token registry, pipeline, raw landing on the stack's raw bucket) behind a
    local HTTP server: what API Gateway and the webhook function do on AWS."""
    core = AuditWebhook(DynamoRegistry(aws.dynamodb, aws.table), AuditPipeline(PipelineConfig()),
                        Landing(S3Store(aws.s3, aws.bucket)))  # fmt: skip

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            reply = core.handle(self.headers.get("Authorization"), body)
            data = json.dumps(reply.body).encode()
            self.send_response(reply.status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1/audit"
    server.shutdown()
    thread.join()


def test_webhook_round_trip_lands_one_synthetic_event(
    stack: FakeStack, webhook: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = new_token()
    DynamoRegistry(stack.aws.dynamodb, stack.aws.table).add_cluster("prod", token_hash(token), created_at="x")
    stack.webhook_url = webhook
    stack.make()
    kubeconfig, bare = tmp_path / "prod.kubeconfig", tmp_path / "token"
    kubeconfig.write_text(render_kubeconfig(webhook, token))  # as `cluster add` wrote it
    bare.write_text(token + "\n")
    monkeypatch.setattr(doctor_module, "_session", lambda region, profile: stack.session())
    for token_file in (kubeconfig, bare):
        result = doctor("--stack", stack.name, "--webhook-token-file", str(token_file), "--cluster", "prod")
        assert result.exit_code == 0, result.output
        (line,) = [x for x in printed(result) if x.startswith("ok    webhook: ")]
        assert f"POST {webhook}: 200" in line and '"accepted": 1' in line and '"quarantined": 0' in line
        assert token not in result.output
    records = list(landed(stack.aws))
    assert len(records) == 2 and len({r["audit_id"] for r in records}) == 2
    for record in records:
        assert record["cluster"] == "prod" and record["user_name"] == "auditlake-doctor"
        assert record["request_uri"] == "/auditlake-doctor" and record["verb"] == "get"


def test_a_token_of_another_cluster_posts_nothing(stack: FakeStack, webhook: str, now: datetime) -> None:
    token = new_token()
    DynamoRegistry(stack.aws.dynamodb, stack.aws.table).add_cluster("staging", token_hash(token), created_at="x")
    stack.webhook_url = webhook
    stack.make(now=now)
    check = named(checks(stack, now, webhook_token=token, cluster="prod"), "webhook")
    assert check.status == FAIL and check.detail == "the token belongs to cluster staging, not prod: nothing sent"
    assert list(landed(stack.aws)) == []


def test_cluster_and_token_file_go_together(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t")
    alone = doctor("--stack", "s", "--webhook-token-file", str(token))
    assert alone.exit_code == 2 and "needs --cluster NAME" in alone.stderr
    assert doctor("--stack", "s", "--cluster", "prod").exit_code == 2
    token.write_text(render_kubeconfig("https://hook.example/v1/audit", "").replace('token: ""', "token:"))
    empty = doctor("--stack", "s", "--webhook-token-file", str(token), "--cluster", "prod")
    assert empty.exit_code == 2 and "no token in it" in empty.stderr
