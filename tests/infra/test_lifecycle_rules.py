"""The archive buckets' lifecycle configurations are ones S3 accepts, for every parameter value the
template accepts.

S3 checks a lifecycle configuration when CloudFormation puts it, i.e. half-way through a deploy; the
template's Rules section refuses the same combinations before any resource is touched. Here a pure
function states S3's constraints, from "Transitioning objects using Amazon S3 Lifecycle",
Constraints (https://docs.aws.amazon.com/AmazonS3/latest/userguide/lifecycle-transition-general-considerations.html#lifecycle-configuration-constraints)
and the Transition API reference (https://docs.aws.amazon.com/AmazonS3/latest/API/API_Transition.html):

- STANDARD_IA: at least 30 days after creation;
- within one rule, a later transition at least 30 days after the Standard-IA one (S3's error:
  "'Days' in the Transition action for StorageClass GLACIER_IR ... must be 30 days more than ...
  STANDARD_IA"), and DEEP_ARCHIVE at least 90 days after a GLACIER or GLACIER_IR one ("... must be
  90 days more than ...");
- within one rule, expiration after every transition ("'Days' in the Expiration action for filter
  ... must be greater than 'Days' in the Transition action");
- ExpiredObjectDeleteMarker "cannot be specified with Days or Date in a Lifecycle Expiration Policy"
  (https://docs.aws.amazon.com/AmazonS3/latest/API/API_LifecycleExpiration.html), so it has a rule
  of its own.

A small evaluator runs the template's Rules (Fn::Equals, Fn::Contains, Fn::And/Or/Not, Ref) over
every combination of the tier parameters' allowed values; the template must accept exactly the
combinations S3 accepts.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

TIERS = ("AuditIADays", "AuditGlacierIRDays", "AuditDeepArchiveDays")
ARCHIVES = ("AuditArchiveBucket", "EventsArchiveBucket")


def s3_accepts_audit_tiers(ia: int, glacier_ir: int, deep_archive: int) -> bool:
    """The audit-tiers rule (Standard-IA, Glacier IR, Deep Archive when not 0) as S3 judges it."""
    deep_ok = deep_archive == 0 or deep_archive >= glacier_ir + 90
    return ia >= 30 and glacier_ir >= ia + 30 and deep_ok


def evaluate(expr: Any, values: dict[str, str]) -> Any:
    """A CloudFormation rule function over parameter values (strings, as CloudFormation compares them)."""
    if isinstance(expr, list):
        return [evaluate(item, values) for item in expr]
    if not isinstance(expr, dict):
        return str(expr)
    ((fn, args),) = expr.items()
    if fn == "Ref":
        return values[args]
    if fn == "Fn::Equals":
        left, right = evaluate(args, values)
        return left == right
    if fn == "Fn::Contains":
        options, value = evaluate(args, values)
        return value in options
    if fn == "Fn::And":
        return all(evaluate(args, values))
    if fn == "Fn::Or":
        return any(evaluate(args, values))
    if fn == "Fn::Not":
        (inner,) = evaluate(args, values)
        return not inner
    raise AssertionError(f"no evaluator for {fn}")


def template_accepts(template: dict[str, Any], values: dict[str, str]) -> bool:
    """CloudFormation's verdict: every rule whose condition holds (or that has none) must have all
    of its assertions true."""
    for rule in template.get("Rules", {}).values():
        if "RuleCondition" in rule and not evaluate(rule["RuleCondition"], values):
            continue
        if not all(evaluate(assertion["Assert"], values) for assertion in rule["Assertions"]):
            return False
    return True


def allowed(template: dict[str, Any], name: str) -> list[int]:
    values: list[int] = template["Parameters"][name]["AllowedValues"]
    return values


def test_the_template_accepts_exactly_the_tier_days_s3_accepts(template: dict[str, Any]) -> None:
    combinations = list(itertools.product(*(allowed(template, name) for name in TIERS)))
    assert len(combinations) > 300  # the lists are a real choice, not a single value each
    disagreements = [
        combination
        for combination in combinations
        if template_accepts(template, dict(zip(TIERS, map(str, combination), strict=True)))
        != s3_accepts_audit_tiers(*combination)
    ]
    assert disagreements == [], "the Rules and S3 disagree on (IA, Glacier IR, Deep Archive) days"


@pytest.mark.parametrize(
    ("ia", "glacier_ir", "deep_archive", "accepted"),
    [
        (30, 90, 0, True),  # the defaults
        (30, 60, 0, True),  # the shortest S3 allows
        (60, 60, 0, False),  # the case: MinValues alone allowed it
        (90, 90, 0, False),
        (45, 90, 180, True),
        (30, 120, 180, False),  # Deep Archive only 60 days after Glacier IR
        (180, 270, 365, True),
        (365, 730, 730, False),
    ],
)
def test_known_pairs(template: dict[str, Any], ia: int, glacier_ir: int, deep_archive: int, accepted: bool) -> None:
    assert s3_accepts_audit_tiers(ia, glacier_ir, deep_archive) is accepted
    values = {"AuditIADays": str(ia), "AuditGlacierIRDays": str(glacier_ir), "AuditDeepArchiveDays": str(deep_archive)}
    assert template_accepts(template, values) is accepted


def test_defaults_are_unchanged_and_allowed(template: dict[str, Any]) -> None:
    defaults = {name: template["Parameters"][name]["Default"] for name in TIERS}
    assert defaults == {"AuditIADays": 30, "AuditGlacierIRDays": 90, "AuditDeepArchiveDays": 0}
    assert all(defaults[name] in allowed(template, name) for name in TIERS)
    assert template_accepts(template, {name: str(value) for name, value in defaults.items()})


def test_standard_ia_days_are_never_under_30(template: dict[str, Any]) -> None:
    assert min(allowed(template, "AuditIADays")) >= 30
    assert template["Parameters"]["EventsIADays"]["MinValue"] >= 30
    for name in ("AuditRetentionDays", "EventsRetentionDays"):  # expiry: 1 day or more, Object Lock's 100 years
        assert template["Parameters"][name]["MinValue"] >= 1 and template["Parameters"][name]["MaxValue"] <= 36500


def test_every_rule_assertion_says_what_to_choose(template: dict[str, Any]) -> None:
    assert template["Rules"]
    for name, rule in template["Rules"].items():
        for assertion in rule["Assertions"]:
            assert "must be" in assertion["AssertDescription"], name


def lifecycle(expanded: dict[str, Any], bucket: str) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = expanded["Resources"][bucket]["Properties"]["LifecycleConfiguration"]["Rules"]
    return rules


def test_expiry_is_never_in_a_rule_with_transitions(expanded: dict[str, Any]) -> None:
    """S3 wants expiration after every transition of the same rule; the tiers and the expiry are
    separate rules (the tiers skip files of 128 KB or less, expiry must not), so a retention shorter
    than a tier is accepted: such files expire before they move."""
    for bucket in ARCHIVES:
        for rule in lifecycle(expanded, bucket):
            assert not ("Transitions" in rule and "ExpirationInDays" in rule), (bucket, rule["Id"])


def test_expired_delete_markers_are_removed_by_a_rule_of_their_own(expanded: dict[str, Any]) -> None:
    """Expiry in a versioned bucket leaves a delete marker; once the version under it is gone, the
    marker alone is removed, so they do not pile up under the prefixes the compactor lists."""
    for bucket in ARCHIVES:
        rules = lifecycle(expanded, bucket)
        for rule in rules:
            assert not (rule.get("ExpiredObjectDeleteMarker") and "ExpirationInDays" in rule), (bucket, rule["Id"])
        (markers,) = [rule for rule in rules if rule.get("ExpiredObjectDeleteMarker") is True]
        assert markers == {
            "Id": "remove-expired-delete-markers",
            "Status": "Enabled",
            "ExpiredObjectDeleteMarker": True,
        }
        (noncurrent,) = [rule for rule in rules if "NoncurrentVersionExpiration" in rule]
        assert "Prefix" not in noncurrent, bucket  # every expired version goes, digests' included


def test_the_rules_reach_cloudformation(template: dict[str, Any], transformed: dict[str, Any]) -> None:
    """SAM's transform passes the Rules section through unchanged: CloudFormation evaluates it
    before it creates or changes any resource."""
    assert transformed["Rules"] == template["Rules"]
    for name in TIERS:  # and the lists are what the tiers use
        assert transformed["Parameters"][name]["AllowedValues"] == allowed(template, name)
