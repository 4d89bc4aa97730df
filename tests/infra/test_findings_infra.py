"""The findings data class in template.yaml: its archive bucket and retention, the settings the ingest
functions get for detections, what they may read and write for it, and the Output the CLI reads."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from auditlake import settings
from auditlake.cli.stack import FINDINGS_ARCHIVE_BUCKET
from auditlake.model import SIGMA_LEVELS
from auditlake.trust.retention import RECORDED_PREFIXES, Retention
from tests.infra.test_template import _statements

WRITTEN = datetime(2026, 1, 1, tzinfo=UTC)
INGEST = {"WebhookFunction": "WebhookRole", "CloudWatchFunction": "CloudWatchRole",
          "EventsPollerFunction": "EventsPollerRole"}  # fmt: skip


def _variables(transformed: dict[str, Any], function: str) -> dict[str, Any]:
    return dict(transformed["Resources"][function]["Properties"]["Environment"]["Variables"])


def test_findings_archive_expires_by_its_own_parameter(transformed: dict[str, Any]) -> None:
    props = transformed["Resources"]["FindingsArchiveBucket"]["Properties"]
    rules = props["LifecycleConfiguration"]["Rules"]
    (expiry,) = [r for r in rules if "ExpirationInDays" in r]
    assert (expiry["Prefix"], expiry["ExpirationInDays"]) == ("findings/", {"Ref": "FindingsRetentionDays"})
    parameter = transformed["Parameters"]["FindingsRetentionDays"]
    assert (parameter["Type"], parameter["Default"], parameter["MinValue"]) == ("Number", 400, 1)
    # As S3 matches them: a finding file is due after exactly the parameter's days, nothing sooner.
    concrete = [{**r, "Expiration": {"Days": 400}} if r is expiry else r for r in rules]
    assert Retention.from_lifecycle(concrete).describe("findings/dt=2026-01-01/hour=00/c.parquet") == "400 days"
    assert RECORDED_PREFIXES["findings/"] == "findings"
    assert props["LoggingConfiguration"]["Fn::If"][1]["LogFilePrefix"] == {
        "Fn::Sub": "auditlake/${AWS::StackName}/findings/"
    }


def test_compactor_and_digest_reach_the_findings_archive(transformed: dict[str, Any]) -> None:
    bucket = {"Ref": "FindingsArchiveBucket"}
    assert _variables(transformed, "CompactorFunction")[settings.FINDINGS_BUCKET] == bucket
    digest = _variables(transformed, "DigestFunction")
    assert digest[settings.FINDINGS_BUCKET] == bucket
    # Recorded in every digest, signed: verify accepts only what it lets S3 expire.
    assert digest[settings.FINDINGS_RETENTION_DAYS] == {"Ref": "FindingsRetentionDays"}
    # The ingest functions write raw/findings/ of the raw bucket; none writes the archive.
    for function, role in INGEST.items():
        assert settings.FINDINGS_BUCKET not in _variables(transformed, function), function
        assert "FindingsArchiveBucket" not in str(_statements(transformed["Resources"][role])), role


def test_detection_parameters_reach_every_ingest_function(transformed: dict[str, Any]) -> None:
    parameters = transformed["Parameters"]
    assert parameters["AlertLevel"]["AllowedValues"] == list(SIGMA_LEVELS)
    assert parameters["AlertLevel"]["Default"] == "high"
    assert (parameters["FindingDedupMinutes"]["Default"], parameters["FindingDedupMinutes"]["MinValue"]) == (60, 1)
    assert (parameters["BuiltinRules"]["Default"], parameters["BuiltinRules"]["AllowedValues"]) == (
        "true", ["true", "false"],
    )  # fmt: skip
    expected = {
        settings.ALERT_LEVEL: {"Ref": "AlertLevel"},
        settings.FINDING_DEDUP_MINUTES: {"Ref": "FindingDedupMinutes"},
        settings.BUILTIN_RULES: {"Ref": "BuiltinRules"},
        settings.RULES_CACHE_SECONDS: "300",
        settings.ALERT_TOPIC: {"Ref": "AlertTopic"},
    }
    for function in INGEST:
        variables = _variables(transformed, function)
        assert {name: variables.get(name) for name in expected} == expected, function
    # What the functions are given by default parses as the settings' own defaults.
    given = {name: str(parameters[ref["Ref"]]["Default"]) for name, ref in expected.items()
             if isinstance(ref, dict) and ref["Ref"] in parameters}  # fmt: skip
    parsed = settings.Settings.from_env({**given, settings.RULES_CACHE_SECONDS: "300"})
    assert (parsed.alert_level, parsed.finding_dedup_minutes, parsed.builtin_rules, parsed.rules_cache_seconds) == (
        "high", 60, True, 300,
    )  # fmt: skip


def test_ingest_roles_read_one_rules_key_and_write_findings_beside_their_batches(transformed: dict[str, Any]) -> None:
    for role in INGEST.values():
        statements = {s["Sid"]: s for s in _statements(transformed["Resources"][role])}
        rules = statements["ReadCustomRules"]
        assert (rules["Action"], rules["Resource"]) == (
            "s3:GetObject",
            {"Fn::Sub": "${RawBucket.Arn}/rules/custom.json"},
        )
        writes = [s for s in statements.values() if "s3:PutObject" in str(s["Action"])]
        (landing,) = writes
        assert {"Fn::Sub": "${RawBucket.Arn}/raw/findings/*"} in landing["Resource"], role
        # Findings are never quarantined by ingest (an item that cannot be read yields none).
        assert "quarantine/findings" not in str(statements), role
        # Listed only as far as the one key: without s3:ListBucket S3 answers a missing rules/custom.json
        # with 403, and the functions could not tell "no custom rules pushed" from a permission problem.
        assert statements["ListCustomRules"] == {
            "Sid": "ListCustomRules", "Effect": "Allow", "Action": "s3:ListBucket",
            "Resource": {"Fn::GetAtt": ["RawBucket", "Arn"]},
            "Condition": {"StringEquals": {"s3:prefix": ["rules/custom.json"]}},
        }, role  # fmt: skip
        listing = [s for s in statements.values() if "s3:ListBucket" in str(s["Action"])]
        assert listing == [statements["ListCustomRules"]], role  # nothing else of the raw bucket is listed
        assert not any("rules/" in str(s["Resource"]) for s in writes), role
        paging = statements["PageFindingsOnce"]
        # claim, tell a refused claim's state, confirm it published, release it when publishing failed
        actions = ("PutItem", "GetItem", "UpdateItem", "DeleteItem")
        assert paging["Action"] == [f"dynamodb:{action}" for action in actions]
        assert paging["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["FINDING#*"]}}
        assert statements["PublishAlerts"]["Resource"] == {"Ref": "AlertTopic"}


def test_no_raw_bucket_rule_expires_the_custom_rules(transformed: dict[str, Any]) -> None:
    rules = transformed["Resources"]["RawBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    concrete = [{**r, "Expiration": {"Days": 7}} if "ExpirationInDays" in r else r for r in rules]
    assert Retention.from_lifecycle(concrete).eligible("rules/custom.json", WRITTEN) is None
    assert Retention.from_lifecycle(concrete).eligible("raw/findings/c/2026/01/01/00/b.ndjson.zst", WRITTEN)


def test_detection_parameters_are_grouped_and_the_output_is_there(template: dict[str, Any]) -> None:
    groups = template["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
    grouped = {name for group in groups for name in group["Parameters"]}
    assert {"FindingsRetentionDays", "AlertLevel", "FindingDedupMinutes", "BuiltinRules"} <= grouped
    assert set(template["Parameters"]) <= grouped  # every parameter has a group
    assert template["Outputs"][FINDINGS_ARCHIVE_BUCKET]["Value"] == {"Ref": "FindingsArchiveBucket"}
