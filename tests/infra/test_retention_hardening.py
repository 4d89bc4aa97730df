"""Retention tiers, WORM, encryption and alarms in the transformed template follow the parameters;
checkov finds nothing it was not told why to skip."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from tests.helpers import ROOT
from tests.infra.test_template import KEY, _statements, resources


def bucket(doc: dict[str, Any], name: str) -> dict[str, Any]:
    props: dict[str, Any] = doc["Resources"][name]["Properties"]
    return props


def rules(doc: dict[str, Any], name: str) -> dict[str, dict[str, Any]]:
    return {r["Id"]: r for r in bucket(doc, name)["LifecycleConfiguration"]["Rules"]}


def test_audit_archive_tiers_follow_the_parameters(transformed: dict[str, Any]) -> None:
    audit = rules(transformed, "AuditArchiveBucket")
    tiers = audit["audit-tiers"]
    assert tiers["Prefix"] == "audit/" and tiers["ObjectSizeGreaterThan"] == 131072  # small files stay put
    transitions = tiers["Transitions"]
    assert transitions[:2] == [
        {"StorageClass": "STANDARD_IA", "TransitionInDays": {"Ref": "AuditIADays"}},
        {"StorageClass": "GLACIER_IR", "TransitionInDays": {"Ref": "AuditGlacierIRDays"}},
    ]
    deep = {"StorageClass": "DEEP_ARCHIVE", "TransitionInDays": {"Ref": "AuditDeepArchiveDays"}}
    assert transitions[2] == {"Fn::If": ["HasDeepArchive", deep, {"Ref": "AWS::NoValue"}]}
    # Files and the digests that seal them expire by rules of their own (today the same days; the
    # digests' rule can be changed alone), and nothing else in the bucket expires by age.
    assert audit["audit-expiry"] == {"Id": "audit-expiry", "Status": "Enabled", "Prefix": "audit/",
                                     "ExpirationInDays": {"Ref": "AuditRetentionDays"}}  # fmt: skip
    assert audit["digest-expiry"] == {"Id": "digest-expiry", "Status": "Enabled", "Prefix": "digests/",
                                      "ExpirationInDays": {"Ref": "AuditRetentionDays"}}  # fmt: skip
    assert audit["expire-noncurrent-versions"]["NoncurrentVersionExpiration"] == {"NoncurrentDays": 1}
    assert transformed["Conditions"]["HasDeepArchive"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "AuditDeepArchiveDays"}, "0"]}]
    }


def test_other_data_classes_have_their_own_retention(transformed: dict[str, Any]) -> None:
    events = rules(transformed, "EventsArchiveBucket")
    assert events["events-tiers"]["Transitions"] == [{"StorageClass": "STANDARD_IA",
                                                      "TransitionInDays": {"Ref": "EventsIADays"}}]  # fmt: skip
    assert events["events-expiry"]["ExpirationInDays"] == {"Ref": "EventsRetentionDays"}
    assert events["events-expiry"]["Prefix"] == "events/"
    raw = rules(transformed, "RawBucket")
    assert raw["expire-raw"]["ExpirationInDays"] == {"Ref": "RawRetentionDays"}
    assert raw["expire-replaced-versions"]["NoncurrentVersionExpiration"] == {"NoncurrentDays": 1}
    results = rules(transformed, "AthenaResultsBucket")
    assert results["expire-results"]["ExpirationInDays"] == {"Ref": "AthenaResultsRetentionDays"}
    assert transformed["Parameters"]["AthenaResultsRetentionDays"]["Default"] == 30
    defaults = {name: transformed["Parameters"][name]["Default"] for name in (
        "AuditIADays", "AuditGlacierIRDays", "AuditDeepArchiveDays", "AuditRetentionDays", "EventsRetentionDays",
        "RawRetentionDays")}  # fmt: skip
    assert defaults == {"AuditIADays": 30, "AuditGlacierIRDays": 90, "AuditDeepArchiveDays": 0,
                        "AuditRetentionDays": 365, "EventsRetentionDays": 90, "RawRetentionDays": 7}  # fmt: skip


def test_audit_archive_is_worm_per_the_lock_mode(transformed: dict[str, Any]) -> None:
    audit = bucket(transformed, "AuditArchiveBucket")
    assert audit["ObjectLockEnabled"] is True and audit["VersioningConfiguration"] == {"Status": "Enabled"}
    condition, locked, unlocked = audit["ObjectLockConfiguration"]["Fn::If"]
    assert condition == "HasObjectLockRetention"
    assert locked["Rule"]["DefaultRetention"] == {"Mode": {"Ref": "AuditObjectLockMode"},
                                                  "Days": {"Ref": "AuditRetentionDays"}}  # fmt: skip
    assert unlocked == {"ObjectLockEnabled": "Enabled"}
    assert transformed["Parameters"]["AuditObjectLockMode"]["AllowedValues"] == ["NONE", "GOVERNANCE", "COMPLIANCE"]
    # Nothing in the pipeline may delete or overwrite: no role has s3:DeleteObject or a bypass.
    for name, role in transformed["Resources"].items():
        if role["Type"] == "AWS::IAM::Role":
            for statement in _statements(role):
                actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                assert not {"s3:DeleteObject", "s3:DeleteObjectVersion", "s3:BypassGovernanceRetention",
                            "s3:PutObjectRetention"} & set(actions), name  # fmt: skip


def test_every_bucket_is_encrypted_versioned_private_tls_only(transformed: dict[str, Any]) -> None:
    buckets = [n for n, r in transformed["Resources"].items() if r["Type"] == "AWS::S3::Bucket"]
    assert len(buckets) == 5  # raw, audit, events, findings, Athena results
    for name in buckets:
        props = bucket(transformed, name)
        [rule] = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": KEY}, name
        assert props["VersioningConfiguration"] == {"Status": "Enabled"}, name
        assert all(props["PublicAccessBlockConfiguration"].values()), name
        assert props["LoggingConfiguration"]["Fn::If"][0] == "HasAccessLogs", name
        policy = next(r for r in transformed["Resources"].values() if r["Type"] == "AWS::S3::BucketPolicy"
                      and r["Properties"]["Bucket"] == {"Ref": name})  # fmt: skip
        [deny] = policy["Properties"]["PolicyDocument"]["Statement"]
        assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    table = transformed["Resources"]["StateTable"]["Properties"]["SSESpecification"]
    assert table == {"SSEEnabled": True, "SSEType": "KMS", "KMSMasterKeyId": KEY}
    key = transformed["Resources"]["DataKey"]
    assert key["Condition"] == "CreateDataKey" and key["Properties"]["EnableKeyRotation"] is True
    digest_key = transformed["Resources"]["DigestKey"]["Properties"]
    assert (digest_key["KeySpec"], digest_key["KeyUsage"]) == ("RSA_3072", "SIGN_VERIFY")


def test_alarms_page_the_alert_topic(transformed: dict[str, Any]) -> None:
    alarms = {n: r["Properties"] for n, r in transformed["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    assert {"WebhookServerErrorsAlarm", "CompactDeadLettersAlarm", "CloudWatchFailuresAlarm", "EventsPollerErrorsAlarm",
            "DigestErrorsAlarm", "CloudWatchDeliveryFailuresAlarm"} <= set(alarms)  # fmt: skip
    assert all(a["AlarmActions"] == [{"Ref": "AlertTopic"}] for a in alarms.values())
    assert alarms["WebhookServerErrorsAlarm"]["MetricName"] == "5xx"
    dead_man = alarms["SilentClustersAlarm"]
    assert (dead_man["MetricName"], dead_man["TreatMissingData"]) == ("SilentClusters", "breaching")
    # The functions publish into a namespace of this stack's own, and the dead-man alarm reads that
    # one: a staging stack's SilentClusters must not feed (or silence) prod's alarm.
    namespace = {"Fn::Sub": "auditlake/${AWS::StackName}"}
    for function in resources(transformed, "AWS::Lambda::Function").values():
        assert function["Properties"]["Environment"]["Variables"]["POWERTOOLS_METRICS_NAMESPACE"] == namespace
    assert dead_man["Namespace"] == namespace
    # The digest's failures page after two hourly runs in a row (the next run catches up after one).
    digest = alarms["DigestErrorsAlarm"]
    assert (digest["Namespace"], digest["MetricName"], digest["Period"]) == ("AWS/Lambda", "Errors", 3600)
    assert digest["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "DigestFunction"}}]
    assert (digest["EvaluationPeriods"], digest["DatapointsToAlarm"], digest["Threshold"]) == (2, 2, 0)
    poller = transformed["Resources"]["EventsPollerFunction"]["Properties"]["Environment"]["Variables"]
    assert poller["AUDITLAKE_SILENCE_MINUTES"] == {"Ref": "SilenceMinutes"}
    webhook = transformed["Resources"]["WebhookFunction"]["Properties"]["Environment"]["Variables"]
    assert webhook["AUDITLAKE_ALERT_TOPIC"] == {"Ref": "AlertTopic"}
    assert webhook["AUDITLAKE_ALERT_THRESHOLD"] == {"Ref": "AlertThreshold"}


def test_digest_role_signs_and_writes_only_digests(transformed: dict[str, Any]) -> None:
    statements = {s["Sid"]: s for s in _statements(transformed["Resources"]["DigestRole"])}
    # Verify: a digest written by a run that stopped before moving the head is checked before it is adopted.
    assert statements["SignDigests"] == {"Sid": "SignDigests", "Effect": "Allow", "Action": ["kms:Sign", "kms:Verify"],
                                         "Resource": {"Fn::GetAtt": ["DigestKey", "Arn"]}}  # fmt: skip
    assert statements["WriteDigests"]["Resource"] == {"Fn::Sub": "${AuditArchiveBucket.Arn}/digests/*"}
    leading = statements["ReadLedgerAndChainHead"]["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
    assert leading == ["LEDGER#*", "DIGEST#HEAD"]
    # Without s3:ListBucket, S3 answers HeadObject on a missing key with 403, not 404: a ledger entry
    # whose file was never written would fail the digest every hour instead of being reported missing.
    assert statements["TellMissingFiles"]["Action"] == "s3:ListBucket"
    assert statements["TellMissingFiles"]["Resource"] == [{"Fn::GetAtt": ["AuditArchiveBucket", "Arn"]},
                                                          {"Fn::GetAtt": ["EventsArchiveBucket", "Arn"]},
                                                          {"Fn::GetAtt": ["FindingsArchiveBucket", "Arn"]}]  # fmt: skip
    assert statements["CheckArchiveFiles"]["Resource"] == [
        {"Fn::Sub": "${AuditArchiveBucket.Arn}/audit/*"},
        {"Fn::Sub": "${EventsArchiveBucket.Arn}/events/*"},
        {"Fn::Sub": "${FindingsArchiveBucket.Arn}/findings/*"},
    ]


def _alarmed(alarms: list[dict[str, Any]], namespace: str, metric: str, dimension: str, value: Any) -> bool:
    return any(
        (a["Namespace"], a["MetricName"]) == (namespace, metric)
        and {"Name": dimension, "Value": value} in a["Dimensions"]
        and a["AlarmActions"] == [{"Ref": "AlertTopic"}]
        for a in alarms
    )


def test_every_function_has_an_alarm_on_its_failures(transformed: dict[str, Any]) -> None:
    """Each function's failures page: an alarm on its Lambda Errors, or, where failures are retried
    and then parked, on what holds them (the SQS source's dead-letter queue, the on-failure
    destination), or, behind the HTTP API, on the API's 5xx (what kube-apiserver sees)."""
    doc = transformed["Resources"]
    alarms = [r["Properties"] for r in doc.values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    functions = resources(transformed, "AWS::Lambda::Function")
    assert len(functions) == 5
    for name in functions:
        ref = {"Ref": name}
        covered = _alarmed(alarms, "AWS/Lambda", "Errors", "FunctionName", ref)
        for config in resources(transformed, "AWS::Lambda::EventInvokeConfig").values():
            if config["Properties"]["FunctionName"] == ref:
                destination = config["Properties"].get("DestinationConfig", {}).get("OnFailure", {})
                queue = destination.get("Destination", {}).get("Fn::GetAtt", [""])[0]
                if doc.get(queue, {}).get("Type") == "AWS::SQS::Queue":
                    covered |= _alarmed(alarms, "AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName",
                                        {"Fn::GetAtt": [queue, "QueueName"]})  # fmt: skip
        for mapping in resources(transformed, "AWS::Lambda::EventSourceMapping").values():
            if mapping["Properties"]["FunctionName"] == ref:
                source = doc[mapping["Properties"]["EventSourceArn"]["Fn::GetAtt"][0]]["Properties"]
                dead = source["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
                covered |= _alarmed(alarms, "AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName",
                                    {"Fn::GetAtt": [dead, "QueueName"]})  # fmt: skip
        for permission in resources(transformed, "AWS::Lambda::Permission").values():
            arn = permission["Properties"]["FunctionName"]
            if permission["Properties"]["Principal"] == "apigateway.amazonaws.com" and arn == ref:
                api = permission["Properties"]["SourceArn"]["Fn::Sub"][1]["__ApiId__"]
                covered |= _alarmed(alarms, "AWS/ApiGateway", "5xx", "ApiId", api)
        assert covered, f"{name}: no alarm on its errors, dead letters or failure destination"


def test_checkov_passes_with_every_skip_justified(tmp_path: Path) -> None:
    checkov = Path(os.environ.get("CHECKOV", ROOT / ".venv" / "tools" / "bin" / "checkov"))
    result = subprocess.run(
        [str(checkov), "-f", str(ROOT / "template.yaml"), "--framework", "cloudformation", "--output", "json",
         "--skip-download"], capture_output=True, text=True, check=False,
    )  # fmt: skip
    report = json.loads(result.stdout)
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert failed == [], failed
    assert report["summary"]["parsing_errors"] == 0 and report["summary"]["passed"] > 90
    for check in report["results"]["skipped_checks"]:
        assert len(check["check_result"].get("suppress_comment", "")) > 20, check["check_id"]


def test_ingest_roles_count_denials_on_alert_partitions_only(transformed: dict[str, Any]) -> None:
    """403-burst counters: UpdateItem (alone and inside TransactWriteItems, which IAM authorises per
    item as UpdateItem) and Query for the buckets around a batch, on ALERT# partitions only."""
    for role in ("WebhookRole", "CloudWatchRole"):
        count = {s["Sid"]: s for s in _statements(transformed["Resources"][role])}["CountDenials"]
        assert count["Action"] == ["dynamodb:UpdateItem", "dynamodb:Query"]
        assert count["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["ALERT#*"]}}
