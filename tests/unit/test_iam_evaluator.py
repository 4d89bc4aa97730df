"""The IAM check's parts (tests/iam): the policy evaluator against the cases of AWS's IAM documentation,
the call -> permission mapping (S3's 403-for-a-missing-key rule, implied KMS, DynamoDB leading keys),
and the template's roles resolved to a test's resources."""

from __future__ import annotations

from typing import Any

import pytest

from tests.iam.actions import Call, NoMapping, needs
from tests.iam.check import Checker
from tests.iam.evaluator import PolicyError, Request, condition_holds, evaluate, glob_match, parse_policy
from tests.iam.recorder import Run
from tests.iam.roles import Role, RoleBook
from tests.iam.template import shipped


def policy(*statements: dict[str, Any]) -> list[Any]:
    return parse_policy({"Version": "2012-10-17", "Statement": list(statements)}, "test")


def allowed(statements: list[Any], action: str, resource: str = "*", **context: Any) -> bool:
    return evaluate(statements, Request(action, resource, context)).allowed


# ---------------------------------------------------------------- evaluation logic
# https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic_AccessPolicyLanguage_Interplay.html
INTERPLAY = policy(
    {"Sid": "AllowGetList", "Effect": "Allow", "Action": ["iam:Get*", "iam:List*"], "Resource": "*"},
    {"Sid": "DenyReports", "Effect": "Deny", "Action": "iam:*Report", "Resource": "*"},
)


def test_explicit_deny_beats_allow_and_anything_not_allowed_is_implicitly_denied() -> None:
    assert allowed(INTERPLAY, "iam:GetUser")
    denied = evaluate(INTERPLAY, Request("iam:GetCredentialReport", "*"))
    assert not denied.allowed and "explicitly denied by test#1:DenyReports" in denied.reason
    implicit = evaluate(INTERPLAY, Request("iam:CreatePolicy", "*"))
    assert not implicit.allowed and implicit.reason == "implicitly denied: no statement names the action"


def test_actions_match_case_insensitively_resources_case_sensitively_with_star_and_question_mark() -> None:
    s = policy({"Effect": "Allow", "Action": "S3:getobject", "Resource": "arn:aws:s3:::raw-?/raw/*"})
    assert allowed(s, "s3:GetObject", "arn:aws:s3:::raw-1/raw/audit/a.zst")
    assert not allowed(s, "s3:GetObject", "arn:aws:s3:::raw-12/raw/a")  # ? is exactly one character
    assert not allowed(s, "s3:GetObject", "arn:aws:s3:::RAW-1/raw/a")
    assert glob_match("arn:aws:s3:::b/*", "arn:aws:s3:::b/x/y:z")  # * crosses / and :


def test_not_action_and_not_resource() -> None:
    s = policy({"Effect": "Allow", "NotAction": "iam:*", "NotResource": "arn:aws:s3:::secret/*"})
    assert allowed(s, "s3:GetObject", "arn:aws:s3:::public/a")
    assert not allowed(s, "iam:GetUser", "arn:aws:s3:::public/a")
    assert not allowed(s, "s3:GetObject", "arn:aws:s3:::secret/a")


def test_a_near_miss_says_which_statement_and_why() -> None:
    s = policy({"Sid": "Landing", "Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::b/raw/*"})
    reason = evaluate(s, Request("s3:PutObject", "arn:aws:s3:::b/quarantine/x")).reason
    assert "test#0:Landing covers ['arn:aws:s3:::b/raw/*'], not arn:aws:s3:::b/quarantine/x" in reason


# ---------------------------------------------------------------- conditions
# https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html


def test_keys_and_together_values_or_together() -> None:
    condition = {"StringEquals": {"aws:PrincipalTag/team": ["a", "b"], "aws:RequestedRegion": "us-east-1"}}
    s = policy({"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Condition": condition})
    assert allowed(s, "s3:GetObject", **{"aws:PrincipalTag/team": "b", "aws:RequestedRegion": "us-east-1"})
    assert not allowed(s, "s3:GetObject", **{"aws:PrincipalTag/team": "b", "aws:RequestedRegion": "eu-west-1"})


def test_an_absent_key_fails_a_positive_operator_and_satisfies_a_negated_one_and_ifexists() -> None:
    assert not condition_holds("StringEquals", "s3:prefix", ["audit/"], {})
    assert condition_holds("StringNotEquals", "s3:prefix", ["audit/"], {})
    assert condition_holds("StringLikeIfExists", "s3:prefix", ["audit/*"], {})
    assert not condition_holds("StringLikeIfExists", "s3:prefix", ["audit/*"], {"s3:prefix": "events/"})
    assert condition_holds("ArnNotLike", "aws:SourceArn", ["arn:aws:sns:*:*:x"], {})


def test_null_checks_presence() -> None:
    assert condition_holds("Null", "aws:TokenIssueTime", ["true"], {})
    assert not condition_holds("Null", "aws:TokenIssueTime", ["false"], {})
    assert condition_holds("Null", "aws:TokenIssueTime", ["false"], {"aws:TokenIssueTime": "2026-01-01T00:00:00Z"})


def test_string_like_numeric_bool_and_arn_operators() -> None:
    assert condition_holds("StringLike", "s3:prefix", ["audit/*", "events/*"], {"s3:prefix": "events/prod/"})
    assert condition_holds("StringEqualsIgnoreCase", "k", ["ABC"], {"k": "abc"})
    assert condition_holds("NumericLessThanEquals", "s3:max-keys", ["10"], {"s3:max-keys": "10"})
    assert not condition_holds("NumericLessThan", "s3:max-keys", ["10"], {"s3:max-keys": "10"})
    assert condition_holds("Bool", "aws:SecureTransport", ["false"], {"aws:SecureTransport": "false"})
    assert not condition_holds("Bool", "aws:SecureTransport", ["false"], {"aws:SecureTransport": "true"})
    logs, key = "arn:aws:logs:us-east-1:123456789012:log-group:", "kms:EncryptionContext:aws:logs:arn"
    assert condition_holds("ArnLike", key, [logs + "*"], {key: logs + "/auditlake/x"})
    # ARN parts are matched one by one: a * in the region part does not swallow the account.
    assert not condition_holds("ArnLike", "aws:SourceArn", ["arn:aws:sns:*:111122223333:t"],
                               {"aws:SourceArn": "arn:aws:sns:us-east-1:123456789012:t"})  # fmt: skip
    assert condition_holds("IpAddress", "aws:SourceIp", ["203.0.113.0/24"], {"aws:SourceIp": "203.0.113.7"})


# https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition_examples-multi-valued-context-keys.html
# The table of "DenyRestrictedTags": ForAllValues:StringNotLike aws:TagKeys "key1*".
@pytest.mark.parametrize(
    ("tag_keys", "matches"),
    [(("key1:legal",), False), (("key1:hr", "key1:personnel"), False), (("key2:audit",), True), (None, True)],
)
def test_for_all_values_as_in_the_aws_example(tag_keys: tuple[str, ...] | None, matches: bool) -> None:
    context = {} if tag_keys is None else {"aws:TagKeys": tag_keys}
    assert condition_holds("ForAllValues:StringNotLike", "aws:TagKeys", ["key1*"], context) is matches


def test_for_all_values_is_true_over_an_absent_or_empty_key_for_any_value_is_not() -> None:
    # Why the check needs every condition key modelled: ForAllValues over a key the request lacks allows.
    assert condition_holds("ForAllValues:StringLike", "dynamodb:LeadingKeys", ["ALERT#*"], {})
    assert condition_holds("ForAllValues:StringLike", "dynamodb:LeadingKeys", ["ALERT#*"], {"dynamodb:LeadingKeys": ()})
    assert not condition_holds("ForAnyValue:StringLike", "dynamodb:LeadingKeys", ["ALERT#*"], {})
    keys = {"dynamodb:LeadingKeys": ("ALERT#a", "TOKEN#b")}
    assert not condition_holds("ForAllValues:StringLike", "dynamodb:LeadingKeys", ["ALERT#*"], keys)
    assert condition_holds("ForAnyValue:StringLike", "dynamodb:LeadingKeys", ["ALERT#*"], keys)


def test_what_the_evaluator_does_not_know_fails_loudly() -> None:
    with pytest.raises(PolicyError, match="DateGreaterThan"):
        policy({"Effect": "Allow", "Action": "*", "Resource": "*",
                "Condition": {"DateGreaterThan": {"aws:CurrentTime": "2026-01-01T00:00:00Z"}}})  # fmt: skip
    with pytest.raises(PolicyError, match="Principal"):
        policy({"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*"})
    with pytest.raises(PolicyError, match="policy variable"):
        allowed(policy({"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::b/${aws:username}/*"}),
                "s3:GetObject", "arn:aws:s3:::b/x/y")  # fmt: skip
    with pytest.raises(PolicyError, match="needs ForAllValues/ForAnyValue"):
        condition_holds("StringLike", "dynamodb:LeadingKeys", ["A*"], {"dynamodb:LeadingKeys": ("A1", "A2")})
    with pytest.raises(PolicyError, match="unresolved intrinsic"):
        policy({"Effect": "Allow", "Action": "s3:*", "Resource": {"Fn::GetAtt": ["B", "Arn"]}})


# ---------------------------------------------------------------- calls -> permissions

KEY = "arn:aws:kms:us-east-1:123456789012:key/k"
ROLE = Role("test", "TestRole", [], kms={("s3", "raw"): KEY, ("sns", "arn:aws:sns:us-east-1:123456789012:t"): KEY},
            hash_keys={"state": "pk"})  # fmt: skip


def call(service: str, operation: str, status: int = 200, **params: Any) -> Call:
    return Call(service, operation, params, "us-east-1", status)


def actions(c: Call) -> list[tuple[str, str]]:
    return [(n.action, n.resource) for n in needs(c, ROLE)]


def test_a_head_object_answered_404_also_needs_list_bucket() -> None:
    # Without s3:ListBucket, S3 answers 403 for a missing key: the caller cannot tell "absent".
    assert actions(call("s3", "HeadObject", Bucket="raw", Key="raw/a")) == [("s3:GetObject", "arn:aws:s3:::raw/raw/a")]
    missing = needs(call("s3", "HeadObject", 404, Bucket="raw", Key="raw/a"), ROLE)
    assert [(n.action, n.resource) for n in missing] == [
        ("s3:GetObject", "arn:aws:s3:::raw/raw/a"), ("s3:ListBucket", "arn:aws:s3:::raw")]  # fmt: skip
    reads = policy({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::raw/*"})
    assert [evaluate(reads, Request(n.action, n.resource, n.context)).allowed for n in missing] == [True, False]


def test_sse_kms_reads_decrypt_and_writes_generate_a_data_key_heads_need_neither() -> None:
    key = KEY
    assert ("kms:Decrypt", key) in actions(call("s3", "GetObject", Bucket="raw", Key="a"))
    assert ("kms:GenerateDataKey", key) in actions(call("s3", "PutObject", Bucket="raw", Key="a"))
    assert [a for a, _ in actions(call("s3", "HeadObject", Bucket="raw", Key="a"))] == ["s3:GetObject"]
    assert [a for a, _ in actions(call("s3", "PutObject", Bucket="other", Key="a"))] == ["s3:PutObject"]
    locked = actions(call("s3", "PutObject", Bucket="other", Key="a", ObjectLockMode="COMPLIANCE",
                          ObjectLockRetainUntilDate="2030-01-01", ObjectLockLegalHoldStatus="ON"))  # fmt: skip
    assert [a for a, _ in locked] == ["s3:PutObject", "s3:PutObjectRetention", "s3:PutObjectLegalHold"]
    published = actions(call("sns", "Publish", TopicArn="arn:aws:sns:us-east-1:123456789012:t", Message="m"))
    assert [a for a, _ in published] == ["sns:Publish", "kms:GenerateDataKey", "kms:Decrypt"]


def test_list_objects_carries_its_prefix() -> None:
    (need,) = needs(call("s3", "ListObjectsV2", Bucket="raw", Prefix="audit/"), ROLE)
    assert (need.action, need.resource, need.context["s3:prefix"]) == ("s3:ListBucket", "arn:aws:s3:::raw", "audit/")


def test_dynamodb_leading_keys_from_key_item_and_key_condition_and_transactions_per_item() -> None:
    def leading(c: Call) -> list[tuple[str, Any]]:
        return [(n.action, n.context["dynamodb:LeadingKeys"]) for n in needs(c, ROLE)]

    assert leading(call("dynamodb", "GetItem", TableName="state", Key={"pk": {"S": "TOKEN#x"}, "sk": {"S": "-"}})) == [
        ("dynamodb:GetItem", ("TOKEN#x",))]  # fmt: skip
    query = call("dynamodb", "Query", TableName="state", KeyConditionExpression="#p = :p AND begins_with(sk, :s)",
                 ExpressionAttributeNames={"#p": "pk"},
                 ExpressionAttributeValues={":p": {"S": "LEDGER#h"}, ":s": {"S": "x"}})  # fmt: skip
    assert leading(query) == [("dynamodb:Query", ("LEDGER#h",))]
    transaction = call("dynamodb", "TransactWriteItems", TransactItems=[
        {"Update": {"TableName": "state", "Key": {"pk": {"S": "ALERT#1"}, "sk": {"S": "a"}}, "UpdateExpression": "x"}},
        {"Put": {"TableName": "state", "Item": {"pk": {"S": "ALERT#2"}, "sk": {"S": "b"}}}},
        {"ConditionCheck": {"TableName": "state", "Key": {"pk": {"S": "SEEN"}, "sk": {"S": "c"}}}},
    ])  # fmt: skip
    assert leading(transaction) == [("dynamodb:UpdateItem", ("ALERT#1",)), ("dynamodb:PutItem", ("ALERT#2",)),
                                    ("dynamodb:ConditionCheckItem", ("SEEN",))]  # fmt: skip
    assert needs(call("dynamodb", "GetItem", TableName="state", Key={"pk": {"S": "a"}}), ROLE)[0].resource == (
        "arn:aws:dynamodb:us-east-1:123456789012:table/state"
    )


def test_calls_without_a_mapping_or_needing_none() -> None:
    with pytest.raises(NoMapping, match=r"no IAM mapping for s3.GetBucketAcl: add it to tests/iam/actions.py"):
        needs(call("s3", "GetBucketAcl", Bucket="raw"), ROLE)
    assert needs(call("sts", "GetCallerIdentity"), ROLE) == []
    secret = Call("secretsmanager", "GetSecretValue", {"SecretId": "auditlake/prod"}, "us-east-1", 200, None,
                  "arn:aws:secretsmanager:us-east-1:123456789012:secret:auditlake/prod-AbCdEf")  # fmt: skip
    assert actions(secret) == [("secretsmanager:GetSecretValue", secret.response_arn)]
    assert actions(call("ssm", "GetParameter", Name="/auditlake/policy")) == [
        ("ssm:GetParameter", "arn:aws:ssm:us-east-1:123456789012:parameter/auditlake/policy")]  # fmt: skip


# ---------------------------------------------------------------- the template's roles

ENV = {"AUDITLAKE_RAW_BUCKET": "raw-1", "AUDITLAKE_STATE_TABLE": "state-1",
       "AUDITLAKE_ALERT_TOPIC": "arn:aws:sns:us-east-1:123456789012:alerts-1"}  # fmt: skip


@pytest.fixture(scope="module")
def book() -> RoleBook:
    return RoleBook(*shipped())


def test_a_role_resolves_to_the_test_resources_its_environment_names(book: RoleBook) -> None:
    role = book.role("webhook", ENV)
    assert role.logical_id == "WebhookRole"
    assert allowed(role.statements, "s3:PutObject", "arn:aws:s3:::raw-1/raw/audit/prod/x.zst")
    assert not allowed(role.statements, "s3:PutObject", "arn:aws:s3:::raw-1/raw/events/prod/x.zst")
    table = "arn:aws:dynamodb:us-east-1:123456789012:table/state-1"
    assert allowed(role.statements, "dynamodb:GetItem", table, **{"dynamodb:LeadingKeys": ("TOKEN#abc",)})
    assert not allowed(role.statements, "dynamodb:GetItem", table, **{"dynamodb:LeadingKeys": ("LEDGER#x",)})
    assert role.kms_key_for("s3", "raw-1") == "arn:aws:kms:us-east-1:123456789012:key/unbound-DataKey"
    assert "DataKey" in role.placeholders  # no variable names it: reported, matched only by itself


def test_parameters_named_by_a_variable_take_its_value_and_switch_conditions(book: RoleBook) -> None:
    parameter = "arn:aws:ssm:us-east-1:123456789012:parameter/auditlake/policy"
    assert not allowed(book.role("webhook", ENV).statements, "ssm:GetParameter", parameter)
    with_policy = book.role("webhook", {**ENV, "AUDITLAKE_POLICY_PARAMETER": "/auditlake/policy"})
    assert allowed(with_policy.statements, "ssm:GetParameter", parameter)


def test_the_checker_names_the_denied_call(book: RoleBook) -> None:
    checker = Checker(lambda: book)
    run = Run("webhook", ENV)
    put = call("s3", "PutObject", Bucket="raw-1", Key="raw/events/prod/x.zst")
    (line,) = [x for x in checker.judge([(run, put)]) if "s3:PutObject" in x]
    assert line.startswith("webhook [WebhookRole]: s3.PutObject needs s3:PutObject on arn:aws:s3:::raw-1/raw/events")
    assert "implicitly denied" in line
    assert checker.judge([(run, call("s3", "PutObject", Bucket="raw-1", Key="raw/audit/prod/x.zst"))]) == []
    report = checker.report()
    assert not any(line.startswith("WebhookRole WriteAuditLanding") for line in report)  # used now
    assert "WebhookRole ReadTokenHashes: dynamodb:GetItem" in report
    assert any(line.startswith("WebhookRole OwnLogs: logs:CreateLogStream") and "used by Lambda" in line
               for line in report)  # fmt: skip


def test_a_condition_on_a_key_the_mapping_does_not_supply_is_a_failure_not_a_pass() -> None:
    # ForAllValues over a key the request lacks is true: if actions.py did not model the key, a
    # too-narrow condition would silently pass. The checker names such a statement instead.
    tagged = policy({"Sid": "Tagged", "Effect": "Allow", "Action": "s3:PutObject", "Resource": "*",
                     "Condition": {"ForAllValues:StringEquals": {"s3:RequestObjectTagKeys": ["team"]}}})  # fmt: skip
    (need,) = needs(call("s3", "PutObject", Bucket="other", Key="a"), ROLE)
    assert evaluate(tagged, Request(need.action, need.resource, need.context)).allowed  # what IAM would say
    (line,) = Checker._unmodelled(Role("t", "R", tagged), need)
    assert "test#0:Tagged conditions s3:PutObject on s3:RequestObjectTagKeys" in line and "add it there" in line
