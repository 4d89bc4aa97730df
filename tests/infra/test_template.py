"""template.yaml: lint-clean, ordered, described, hardened, and least-privilege after the SAM transform."""

from __future__ import annotations

import re
import subprocess
from typing import Any

from auditlake import settings
from tests.helpers import BIN, ROOT, TOOL_ENV
from tests.iam.template import EKS_CLUSTERS, expand

KEY = {"Fn::If": ["CreateDataKey", {"Fn::GetAtt": ["DataKey", "Arn"]}, {"Ref": "KmsKeyArn"}]}


def resources(doc: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in doc["Resources"].items() if r["Type"] == kind}


def test_cfn_lint_is_clean() -> None:
    result = subprocess.run(
        [str(BIN / "cfn-lint"), "template.yaml"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_sam_validate_lint_is_clean() -> None:
    result = subprocess.run(
        [str(BIN / "sam"), "validate", "--lint", "--template-file", "template.yaml"],
        cwd=ROOT, env=TOOL_ENV, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_sections_are_in_the_agreed_order(template: dict[str, Any]) -> None:
    order = [k for k in template if k in ("Parameters", "Rules", "Conditions", "Globals", "Resources", "Outputs")]
    assert order == ["Parameters", "Rules", "Conditions", "Globals", "Resources", "Outputs"]


def test_every_parameter_is_described(template: dict[str, Any]) -> None:
    for name, parameter in template["Parameters"].items():
        assert len(parameter.get("Description", "")) > 20, name


def test_environment_variable_names_come_from_settings(expanded: dict[str, Any]) -> None:
    declared = {value for name, value in vars(settings).items() if name.isupper() and isinstance(value, str)}
    for function in resources(expanded, "AWS::Serverless::Function").values():
        for name in function["Properties"]["Environment"]["Variables"]:
            assert not name.startswith("AUDITLAKE_") or name in declared, name


def test_function_runtime_architecture_and_tracing(transformed: dict[str, Any]) -> None:
    for name, function in resources(transformed, "AWS::Lambda::Function").items():
        props = function["Properties"]
        assert props["Runtime"] == "python3.13" and props["Architectures"] == ["arm64"], name
        assert props["TracingConfig"] == {"Mode": "Active"}, name
        assert props["Layers"][0]["Ref"].startswith("CoreLayer"), name
        # pyarrow (the Arrow layer) only where it is needed: never in the webhook's cold start.
        assert any(ref["Ref"].startswith("ArrowLayer") for ref in props["Layers"]) == name.startswith("Compactor"), name


def test_iam_is_least_privilege(transformed: dict[str, Any]) -> None:
    roles = resources(transformed, "AWS::IAM::Role")
    assert roles, "every function has a role"
    assert not resources(transformed, "AWS::IAM::ManagedPolicy")
    for name, role in roles.items():
        assert not role["Properties"].get("ManagedPolicyArns"), f"{name}: managed policies are not scoped"
    # Inline policies and the policies attached to a role as resources of their own (the poller's fan-out).
    attached = {
        n: {"Properties": {"Policies": [p["Properties"]]}}
        for n, p in resources(transformed, "AWS::IAM::Policy").items()
    }
    for name, role in {**roles, **attached}.items():
        for statement in _statements(role):
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            assert all("*" not in action for action in actions), f"{name}: wildcard action {actions}"
            if statement["Resource"] == "*":
                assert set(actions) <= {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}, name


def _statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for policy in role["Properties"].get("Policies", []):
        for statement in policy["PolicyDocument"]["Statement"]:
            conditional = isinstance(statement, dict) and "Fn::If" in statement
            out.append(statement["Fn::If"][1] if conditional else statement)
    return out


# An audit batch and the findings the rules made of it land together (audit first, then findings).
LANDING = [
    {"Fn::Sub": "${RawBucket.Arn}/raw/audit/*"},
    {"Fn::Sub": "${RawBucket.Arn}/quarantine/audit/*"},
    {"Fn::Sub": "${RawBucket.Arn}/raw/findings/*"},
]


def test_webhook_role_is_scoped_to_its_resources(transformed: dict[str, Any]) -> None:
    statements = {s["Sid"]: s for s in _statements(transformed["Resources"]["WebhookRole"])}
    assert statements["WriteAuditLanding"]["Action"] == "s3:PutObject"
    assert statements["WriteAuditLanding"]["Resource"] == LANDING
    # Create-only quarantine: a redelivered batch compares its entry with the stored one; no raw/ reads.
    assert statements["ReadBackQuarantine"]["Resource"] == [
        {"Fn::Sub": "${RawBucket.Arn}/quarantine/audit/*"},
    ]
    assert statements["ReadTokenHashes"]["Action"] == "dynamodb:GetItem"
    assert statements["ReadTokenHashes"]["Resource"] == {"Fn::GetAtt": ["StateTable", "Arn"]}
    assert statements["ReadTokenHashes"]["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"] == ["TOKEN#*"]
    assert statements["OwnLogs"]["Resource"] == {"Fn::GetAtt": ["WebhookLogs", "Arn"]}
    assert "parameter${PipelinePolicyParameter}" in statements["ReadPipelinePolicy"]["Resource"]["Fn::Sub"]


def test_compactor_role_is_scoped(transformed: dict[str, Any]) -> None:
    statements = {s["Sid"]: s for s in _statements(transformed["Resources"]["CompactorRole"])}
    assert statements["ReadRaw"]["Resource"] == {"Fn::Sub": "${RawBucket.Arn}/raw/*"}
    assert statements["QuarantineRaw"]["Resource"] == {"Fn::Sub": "${RawBucket.Arn}/quarantine/*"}
    assert statements["WriteArchives"]["Action"] == ["s3:GetObject", "s3:PutObject"]  # no DeleteObject
    assert statements["PartitionLocks"]["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"] == ["LOCK#*"]
    # The hourly run lists one landing hour of the raw landing and records the hours it finished.
    assert statements["ListRawHours"]["Condition"]["StringLike"]["s3:prefix"] == ["raw/*"]
    assert statements["ListRawHours"]["Action"] == "s3:ListBucket"
    done = statements["CompactedHours"]
    assert done["Action"] == ["dynamodb:GetItem", "dynamodb:PutItem"]
    assert done["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"] == ["COMPACTED#*"]
    assert statements["ListArchivePartitions"]["Condition"]["StringLike"]["s3:prefix"] == [
        "audit/*", "events/*", "findings/*",
    ]  # fmt: skip
    # Each archive's own prefix in its own bucket, and nothing else.
    assert statements["WriteArchives"]["Resource"] == [
        {"Fn::Sub": "${AuditArchiveBucket.Arn}/audit/*"},
        {"Fn::Sub": "${EventsArchiveBucket.Arn}/events/*"},
        {"Fn::Sub": "${FindingsArchiveBucket.Arn}/findings/*"},
    ]


def test_compactor_is_fed_by_raw_notifications(expanded: dict[str, Any]) -> None:
    (notification,) = expanded["Resources"]["RawBucket"]["Properties"]["NotificationConfiguration"][
        "QueueConfigurations"
    ]
    assert notification["Queue"] == {"Fn::GetAtt": ["CompactQueue", "Arn"]}
    assert notification["Filter"]["S3Key"]["Rules"] == [{"Name": "prefix", "Value": "raw/"}]
    source = expanded["Resources"]["CompactorFunction"]["Properties"]["Events"]["RawObjects"]["Properties"]
    assert source["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert source["MaximumBatchingWindowInSeconds"] == 300
    queue = expanded["Resources"]["CompactQueue"]["Properties"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["CompactDeadLetters", "Arn"]}
    assert queue["VisibilityTimeout"] >= 6 * expanded["Resources"]["CompactorFunction"]["Properties"]["Timeout"]
    alarm = expanded["Resources"]["CompactDeadLettersAlarm"]["Properties"]
    assert alarm["Threshold"] == 0 and alarm["ComparisonOperator"] == "GreaterThanThreshold"


def test_compactor_runs_hourly_after_the_grace_and_raw_outlives_its_look_back(expanded: dict[str, Any]) -> None:
    from auditlake.archive.hourly import GRACE, LOOKBACK

    function = expanded["Resources"]["CompactorFunction"]["Properties"]
    schedule = function["Events"]["ClosedHours"]["Properties"]["Schedule"]
    # doctor counts what the compactor can take of the account's concurrency: the late path's and the hourly run.
    from auditlake.cli.doctor import COMPACTOR_CONCURRENCY

    late = function["Events"]["RawObjects"]["Properties"]["ScalingConfig"]["MaximumConcurrency"]
    assert late + 1 == COMPACTOR_CONCURRENCY
    assert schedule == f"cron({GRACE.seconds // 60} * * * ? *)"  # the run lists an hour only once it is due
    # The lease of a partition's lock outlives the longest run that can hold it.
    from auditlake.archive.compactor import Compactor

    lease = Compactor.__init__.__kwdefaults__["lease_seconds"]  # type: ignore[index]
    assert lease > function["Timeout"]
    alarm = expanded["Resources"]["CompactorErrorsAlarm"]["Properties"]  # two failed hours page someone
    assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "CompactorFunction"}}]
    assert (alarm["Period"], alarm["DatapointsToAlarm"], alarm["AlarmActions"]) == (3600, 2, [{"Ref": "AlertTopic"}])
    minimum = expanded["Parameters"]["RawRetentionDays"]["MinValue"]
    assert minimum * 86400 >= LOOKBACK.total_seconds() + 86400  # raw is still there when a late run looks


def test_athena_workgroup_enforces_results_and_a_scan_cutoff(expanded: dict[str, Any]) -> None:
    config = expanded["Resources"]["AthenaWorkGroup"]["Properties"]["WorkGroupConfiguration"]
    assert config["EnforceWorkGroupConfiguration"] is True
    assert config["BytesScannedCutoffPerQuery"] == {"Ref": "AthenaBytesScannedCutoff"}
    # Results hold audit data: the stack's key, not SSE-S3 (the workgroup's setting overrides the bucket's).
    assert config["ResultConfiguration"]["EncryptionConfiguration"] == {"EncryptionOption": "SSE_KMS", "KmsKey": KEY}
    results = expanded["Resources"]["AthenaResultsBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    assert {"Ref": "AthenaResultsRetentionDays"} in [rule.get("ExpirationInDays") for rule in results]
    # Deleting a stack cannot delete a bucket that still holds results: it stays (README, Teardown).
    assert expanded["Resources"]["AthenaResultsBucket"]["DeletionPolicy"] == "Retain"
    assert expanded["Outputs"]["AthenaResultsBucketName"]["Value"] == {"Ref": "AthenaResultsBucket"}  # to find it then


def test_raw_bucket_is_private_encrypted_tls_only_and_expires(expanded: dict[str, Any]) -> None:
    bucket = expanded["Resources"]["RawBucket"]["Properties"]
    assert all(bucket["PublicAccessBlockConfiguration"].values()) and len(bucket["PublicAccessBlockConfiguration"]) == 4
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    rules = {rule["Id"]: rule for rule in bucket["LifecycleConfiguration"]["Rules"]}
    assert rules["expire-raw"]["Prefix"] == "raw/" and rules["expire-raw"]["ExpirationInDays"] == {
        "Ref": "RawRetentionDays"
    }
    (deny,) = expanded["Resources"]["RawBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_state_table(expanded: dict[str, Any]) -> None:
    table = expanded["Resources"]["StateTable"]["Properties"]
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["TimeToLiveSpecification"] == {"AttributeName": "ttl", "Enabled": True}
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}


def test_webhook_api_route_throttling_and_url(transformed: dict[str, Any]) -> None:
    (route,) = resources(transformed, "AWS::ApiGatewayV2::Route").values() or [None]
    if route is None:  # SAM may inline routes into the OpenAPI body
        (api,) = resources(transformed, "AWS::ApiGatewayV2::Api").values()
        assert list(api["Properties"]["Body"]["paths"]) == ["/v1/audit"]
        assert list(api["Properties"]["Body"]["paths"]["/v1/audit"]) == ["post"]
    (stage,) = resources(transformed, "AWS::ApiGatewayV2::Stage").values()
    throttle = stage["Properties"]["DefaultRouteSettings"]
    assert throttle == {
        "ThrottlingRateLimit": {"Ref": "WebhookRateLimit"},
        "ThrottlingBurstLimit": {"Ref": "WebhookBurstLimit"},
    }
    url = transformed["Outputs"]["WebhookUrl"]["Value"]["Fn::Sub"]
    assert re.fullmatch(r"https://\$\{WebhookApi\}\.execute-api\.\$\{AWS::Region\}\.\$\{AWS::URLSuffix\}/v1/audit", url)


def test_one_subscription_filter_per_eks_cluster(expanded: dict[str, Any], template: dict[str, Any]) -> None:
    filters = resources(expanded, "AWS::Logs::SubscriptionFilter")
    assert set(filters) == {"EksAuditSubscriptionprod", "EksAuditSubscriptionstagingeu"}
    groups = {f["Properties"]["LogGroupName"] for f in filters.values()}
    assert groups == {f"/aws/eks/{name}/cluster" for name in EKS_CLUSTERS}
    for subscription in filters.values():
        assert subscription["Properties"]["DestinationArn"] == {"Fn::GetAtt": ["CloudWatchFunction", "Arn"]}
        assert subscription["Properties"]["FilterPattern"] == ""  # truncated messages are not valid JSON
        assert subscription["DependsOn"] == "EksAuditPermission"
        assert subscription["Condition"] == "HasEksClusters"
    # With the default (no cluster) the loop yields one entry named "", switched off by the condition.
    assert template["Parameters"]["EksClusterNames"]["Default"] == ""
    assert template["Conditions"]["HasEksClusters"] == {
        "Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", {"Ref": "EksClusterNames"}]}, ""]}]
    }
    (alone,) = resources(expand(template, {"EksClusterNames": [""]}), "AWS::Logs::SubscriptionFilter").values()
    assert alone["Condition"] == "HasEksClusters"


def test_logs_may_invoke_the_forwarder_for_eks_log_groups_only(expanded: dict[str, Any]) -> None:
    permission = expanded["Resources"]["EksAuditPermission"]["Properties"]
    assert permission["Principal"] == "logs.amazonaws.com" and permission["Action"] == "lambda:InvokeFunction"
    assert permission["SourceAccount"] == {"Ref": "AWS::AccountId"}
    assert permission["SourceArn"] == {
        "Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:/aws/eks/*/cluster:*"
    }


def test_forwarder_role_and_failed_deliveries(transformed: dict[str, Any]) -> None:
    statements = {s["Sid"]: s for s in _statements(transformed["Resources"]["CloudWatchRole"])}
    assert set(statements) == {
        "OwnLogs", "Tracing", "WriteAuditLanding", "ReadBackQuarantine", "KeepFailedDeliveries", "ReadPipelinePolicy",
        "CountDenials", "PublishAlerts", "Heartbeat", "UseDataKey", "ReadCustomRules", "ListCustomRules",
        "PageFindingsOnce",
    }  # fmt: skip
    assert statements["WriteAuditLanding"]["Resource"] == LANDING
    assert statements["KeepFailedDeliveries"]["Action"] == "sqs:SendMessage"
    assert statements["KeepFailedDeliveries"]["Resource"] == {"Fn::GetAtt": ["CloudWatchFailures", "Arn"]}
    (config,) = [
        r["Properties"]
        for r in resources(transformed, "AWS::Lambda::EventInvokeConfig").values()
        if r["Properties"]["FunctionName"] == {"Ref": "CloudWatchFunction"}
    ]
    assert config["MaximumRetryAttempts"] == 2
    assert config["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": ["CloudWatchFailures", "Arn"]}
    alarm = transformed["Resources"]["CloudWatchFailuresAlarm"]["Properties"]
    assert alarm["Dimensions"][0]["Value"] == {"Fn::GetAtt": ["CloudWatchFailures", "QueueName"]}
    assert alarm["Threshold"] == 0 and alarm["ComparisonOperator"] == "GreaterThanThreshold"


def test_failed_deliveries_are_encrypted_with_the_stack_key_and_their_loss_alarms(transformed: dict[str, Any]) -> None:
    """A failure record carries the whole CloudWatch Logs payload (unredacted audit events): the
    stack's key encrypts the queue, the forwarder's role (Lambda delivers as it) may use the key, and
    a record SQS refuses (over 1 MiB) raises DestinationDeliveryFailures, which pages."""
    queue = transformed["Resources"]["CloudWatchFailures"]
    assert queue["Properties"]["KmsMasterKeyId"] == KEY and "SqsManagedSseEnabled" not in queue["Properties"]
    assert queue["Properties"]["MaximumMessageSize"] == 1048576  # SQS's maximum; Lambda's async payload is 1 MB
    assert "checkov" not in queue.get("Metadata", {})  # nothing to excuse any more
    use_key = {s["Sid"]: s for s in _statements(transformed["Resources"]["CloudWatchRole"])}["UseDataKey"]
    assert set(use_key["Action"]) >= {"kms:GenerateDataKey", "kms:Decrypt"} and use_key["Resource"] == KEY
    lost = transformed["Resources"]["CloudWatchDeliveryFailuresAlarm"]["Properties"]
    assert (lost["Namespace"], lost["MetricName"]) == ("AWS/Lambda", "DestinationDeliveryFailures")
    assert lost["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "CloudWatchFunction"}}]
    assert lost["Threshold"] == 0 and lost["ComparisonOperator"] == "GreaterThanThreshold"
    assert lost["AlarmActions"] == [{"Ref": "AlertTopic"}]


def test_a_page_claim_outlives_every_function_that_pages(expanded: dict[str, Any]) -> None:
    """An unconfirmed page claim is a lease (trust/alerts.py): a claimer still alive when it lapses could
    page twice; one that died would block the page longer than the senders retry if it were longer."""
    from auditlake.trust.alerts import PUBLISH_LEASE_SECONDS

    default = expanded["Globals"]["Function"]["Timeout"]
    pagers = ("WebhookFunction", "CloudWatchFunction", "EventsPollerFunction")
    timeouts = [expanded["Resources"][name]["Properties"].get("Timeout", default) for name in pagers]
    assert max(timeouts) == PUBLISH_LEASE_SECONDS
    assert PUBLISH_LEASE_SECONDS < 81  # kube-apiserver's fifth attempt (10 s backoff x 1.5) still takes it over
