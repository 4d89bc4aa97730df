"""infra/iam/deployer-policy.json, the IAM policy of whoever runs `sam deploy` / `sam delete`, grants what
deploying, updating and deleting template.yaml needs, scoped to one stack's names, and nothing broader.

The contract, checked here:
- the document is IAM grammar that parliament (its offline copy of AWS's Service Authorization
  Reference) finds no fault with, apart from the two false positives ALLOWED_FINDINGS explains;
- every resource type of template.yaml, as CloudFormation sees it after the LanguageExtensions and
  SAM transforms, has an entry in NEEDS (a new type fails with one line naming it); each entry's
  actions are taken from the type's CloudFormation resource schema (the `handlers` permissions AWS
  publishes, shipped with cfn-lint: the same lists as the resource docs' "permissions"), or cite
  the page that documents them; the policy grants each on the ARN CloudFormation will give the
  resource for stack STACK, and, where the entry is scoped, not on the same resource of another stack;
- actions only a deletion calls are granted only for types of which some resource is deleted with
  the stack (a DeletionPolicy other than Retain): the deployer cannot delete the retained archive
  buckets, the state table or the keys;
- no action is `*` or has a wildcard; iam:PassRole only to Lambda; kms:CreateKey only for the key
  specs the template uses; every statement on Resource `*` is explained in infra/iam/README.md.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import cfnlint
from click.testing import CliRunner
from parliament import analyze_policy_string

from tests.helpers import ROOT

POLICY = ROOT / "infra" / "iam" / "deployer-policy.json"
IAM_README = ROOT / "infra" / "iam" / "README.md"

# The placeholders a user replaces (infra/iam/README.md), with the values of the stack under test and
# of a second stack in the same account and region whose resources the policy must not reach.
STACK = {
    "STACK_NAME": "auditlake-prod",
    "BUCKET_PREFIX": "auditlake-prod",
    "GLUE_DATABASE": "auditlake_prod",
    "REGION": "eu-west-1",
    "ACCOUNT_ID": "123456789012",
}
OTHER = {**STACK, "STACK_NAME": "team-b", "BUCKET_PREFIX": "team-b", "GLUE_DATABASE": "team_b"}
SUFFIX = "AbCdEf123456"  # the random tail CloudFormation puts on a name it generates

# parliament's findings that are its own limits, not faults of the policy.
ALLOWED_FINDINGS = {
    # CloudFormation's transforms are owned by the account "aws": arn:aws:cloudformation:<region>:aws:
    # transform/Serverless-2016-10-31 is the ARN CloudFormation's IAM documentation gives.
    ("INVALID_ARN", "arn:aws:cloudformation:eu-west-1:aws:transform/Serverless-2016-10-31"),
    ("INVALID_ARN", "arn:aws:cloudformation:eu-west-1:aws:transform/LanguageExtensions"),
    # Athena's tag actions take a workgroup, a data catalog or a capacity reservation; parliament wants
    # the policy to name all three.
    ("RESOURCE_MISMATCH", "athena:ListTagsForResource athena:TagResource athena:UntagResource"),
}


@dataclass(frozen=True)
class Need:
    """Actions one resource type needs on one ARN. `arn` is formatted with the placeholders of a stack
    and `{name}` (CloudFormation's generated name), `{bucket}` (its lower-case form for S3), `{property}`
    (the resource's own name property, resolved). `on_delete`: only deleting the resource calls them.
    `scoped`: the ARN carries the stack's name, so another stack's resource is out of reach.
    `source`: where the actions come from when they are not in the type's resource schema."""

    actions: tuple[str, ...]
    arn: str
    on_delete: bool = False
    scoped: bool = True
    source: str = ""


def _arn(service: str, rest: str) -> str:
    return f"arn:aws:{service}:{{REGION}}:{{ACCOUNT_ID}}:{rest}"


FUNCTION = _arn("lambda", "function:{STACK_NAME}-WebhookFunction-" + SUFFIX)
ROLE = "arn:aws:iam::{ACCOUNT_ID}:role/{name}"
SAM_BUCKET_OBJECT = "arn:aws:s3:::aws-sam-cli-managed-default-samclisourcebucket-1a2b3c4d5e6f/auditlake-prod/0123abcd"
KEY = _arn("kms", "key/1234abcd-12ab-34cd-56ef-1234567890ab")
API = "arn:aws:apigateway:{REGION}::/apis/a1b2c3d4e5"
HTTP_API_LOGGING = "https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-logging.html"

NEEDS: dict[str, tuple[Need, ...]] = {
    "AWS::S3::Bucket": (
        Need(
            (
                "s3:CreateBucket",
                "s3:PutBucketLogging",
                "s3:PutBucketNotification",
                "s3:PutBucketObjectLockConfiguration",
                "s3:PutBucketOwnershipControls",
                "s3:PutBucketPublicAccessBlock",
                "s3:PutBucketTagging",
                "s3:PutBucketVersioning",
                "s3:PutEncryptionConfiguration",
                "s3:PutLifecycleConfiguration",
            ),
            "arn:aws:s3:::{bucket}",
        ),
        Need(("s3:DeleteBucket",), "arn:aws:s3:::{bucket}", on_delete=True),
    ),
    "AWS::S3::BucketPolicy": (
        Need(("s3:GetBucketPolicy", "s3:PutBucketPolicy"), "arn:aws:s3:::{BUCKET_PREFIX}-rawbucket-abcdef123456"),
        Need(("s3:DeleteBucketPolicy",), "arn:aws:s3:::{BUCKET_PREFIX}-rawbucket-abcdef123456", on_delete=True),
    ),
    "AWS::DynamoDB::Table": (
        Need(
            (
                "dynamodb:CreateTable",
                "dynamodb:DescribeContinuousBackups",
                "dynamodb:DescribeTable",
                "dynamodb:DescribeTimeToLive",
                "dynamodb:TagResource",
                "dynamodb:UpdateContinuousBackups",
                "dynamodb:UpdateTable",
                "dynamodb:UpdateTimeToLive",
            ),
            _arn("dynamodb", "table/{name}"),
        ),
        Need(("kms:CreateGrant", "kms:DescribeKey"), KEY, scoped=False),  # SSE with the stack's key
        Need(("dynamodb:DeleteTable",), _arn("dynamodb", "table/{name}"), on_delete=True),
    ),
    "AWS::KMS::Key": (
        Need(("kms:CreateKey",), "*", scoped=False),
        Need(("kms:EnableKeyRotation", "kms:PutKeyPolicy", "kms:DescribeKey", "kms:TagResource"), KEY, scoped=False),
        Need(("kms:ScheduleKeyDeletion",), KEY, on_delete=True, scoped=False),
    ),
    "AWS::KMS::Alias": (
        Need(("kms:CreateAlias", "kms:UpdateAlias"), _arn("kms", "{property}")),
        Need(("kms:CreateAlias", "kms:UpdateAlias"), KEY, scoped=False),
        Need(("kms:DeleteAlias",), _arn("kms", "{property}"), on_delete=True),
    ),
    "AWS::IAM::Role": (
        Need(
            (
                "iam:CreateRole",
                "iam:GetRole",
                "iam:GetRolePolicy",
                "iam:PutRolePolicy",
                "iam:TagRole",
                "iam:UpdateAssumeRolePolicy",
                "iam:UpdateRoleDescription",
            ),
            ROLE,
        ),
        Need(
            ("iam:DeleteRole", "iam:DeleteRolePolicy", "iam:ListAttachedRolePolicies", "iam:ListRolePolicies"),
            ROLE,
            on_delete=True,
        ),
    ),
    "AWS::IAM::Policy": (
        Need(
            ("iam:GetRolePolicy", "iam:PutRolePolicy"),
            ROLE.replace("{name}", "{STACK_NAME}-EventsPollerRole-" + SUFFIX),
        ),
        Need(
            ("iam:DeleteRolePolicy",), ROLE.replace("{name}", "{STACK_NAME}-EventsPollerRole-" + SUFFIX), on_delete=True
        ),
    ),
    "AWS::Lambda::Function": (
        Need(
            (
                "lambda:CreateFunction",
                "lambda:GetFunction",
                "lambda:GetFunctionCodeSigningConfig",
                "lambda:GetFunctionRecursionConfig",
                "lambda:GetRuntimeManagementConfig",
                "lambda:TagResource",
                "lambda:UpdateFunctionCode",
                "lambda:UpdateFunctionConfiguration",
            ),
            _arn("lambda", "function:{name}"),
        ),
        Need(("iam:PassRole",), ROLE.replace("{name}", "{STACK_NAME}-WebhookRole-" + SUFFIX)),
        Need(("s3:GetObject", "s3:GetObjectVersion"), SAM_BUCKET_OBJECT, scoped=False),
        Need(("lambda:GetLayerVersion",), _arn("lambda", "layer:CoreLayer:3"), scoped=False),
        Need(("lambda:DeleteFunction",), _arn("lambda", "function:{name}"), on_delete=True),
    ),
    # Layer names are the template's own (LayerName), not the stack's: see infra/iam/README.md.
    "AWS::Lambda::LayerVersion": (
        Need(("lambda:PublishLayerVersion",), _arn("lambda", "layer:{property}"), scoped=False),
        Need(("s3:GetObject", "s3:GetObjectVersion"), SAM_BUCKET_OBJECT, scoped=False),
        Need(
            ("lambda:DeleteLayerVersion", "lambda:GetLayerVersion"),
            _arn("lambda", "layer:{property}:3"),
            on_delete=True,
            scoped=False,
        ),
    ),
    "AWS::Lambda::Permission": (
        Need(("lambda:AddPermission",), FUNCTION),
        Need(("lambda:RemovePermission",), FUNCTION, on_delete=True),
    ),
    "AWS::Lambda::EventInvokeConfig": (
        Need(("lambda:PutFunctionEventInvokeConfig", "lambda:UpdateFunctionEventInvokeConfig"), FUNCTION + ":$LATEST"),
        Need(("lambda:DeleteFunctionEventInvokeConfig",), FUNCTION + ":$LATEST", on_delete=True),
    ),
    # Mappings have random ids: the policy scopes them by the lambda:FunctionArn condition instead.
    "AWS::Lambda::EventSourceMapping": (
        Need(("lambda:CreateEventSourceMapping",), "*", scoped=False),
        Need(
            ("lambda:GetEventSourceMapping", "lambda:UpdateEventSourceMapping"),
            _arn("lambda", "event-source-mapping:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"),
            scoped=False,
        ),
        Need(
            ("lambda:DeleteEventSourceMapping",),
            _arn("lambda", "event-source-mapping:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"),
            on_delete=True,
            scoped=False,
        ),
    ),
    "AWS::Logs::LogGroup": (
        Need(
            ("logs:CreateLogGroup", "logs:PutRetentionPolicy", "logs:TagResource"),
            _arn("logs", "log-group:{property}:*"),
        ),
        Need(("logs:DescribeLogGroups",), "*", scoped=False),  # lists log groups: no resource of its own
        Need(("logs:DeleteLogGroup",), _arn("logs", "log-group:{property}:*"), on_delete=True),
    ),
    # The EKS clusters' log groups are the user's, named after the cluster, not the stack.
    "AWS::Logs::SubscriptionFilter": (
        Need(
            ("logs:DescribeSubscriptionFilters", "logs:PutSubscriptionFilter"),
            _arn("logs", "log-group:/aws/eks/prod/cluster:*"),
            scoped=False,
        ),
        Need(
            ("logs:DeleteSubscriptionFilter",),
            _arn("logs", "log-group:/aws/eks/prod/cluster:*"),
            on_delete=True,
            scoped=False,
        ),
    ),
    "AWS::SNS::Topic": (
        Need(
            ("sns:CreateTopic", "sns:GetTopicAttributes", "sns:SetTopicAttributes", "sns:TagResource"),
            _arn("sns", "{name}"),
        ),
        Need(("sns:DeleteTopic",), _arn("sns", "{name}"), on_delete=True),
    ),
    "AWS::SNS::Subscription": (
        Need(("sns:Subscribe",), _arn("sns", "{STACK_NAME}-AlertTopic-" + SUFFIX)),
        # Subscription actions take no resource ARN (Service Authorization Reference).
        Need(("sns:GetSubscriptionAttributes", "sns:Unsubscribe"), "*", on_delete=True, scoped=False),
    ),
    "AWS::SQS::Queue": (
        Need(
            ("sqs:CreateQueue", "sqs:GetQueueAttributes", "sqs:GetQueueUrl", "sqs:SetQueueAttributes", "sqs:TagQueue"),
            _arn("sqs", "{name}"),
        ),
        Need(("sqs:DeleteQueue",), _arn("sqs", "{name}"), on_delete=True),
    ),
    "AWS::SQS::QueuePolicy": (Need(("sqs:SetQueueAttributes",), _arn("sqs", "{STACK_NAME}-CompactQueue-" + SUFFIX)),),
    "AWS::CloudWatch::Alarm": (
        Need(
            ("cloudwatch:DescribeAlarms", "cloudwatch:PutMetricAlarm", "cloudwatch:TagResource"),
            _arn("cloudwatch", "alarm:{name}"),
        ),
        Need(("cloudwatch:DeleteAlarms",), _arn("cloudwatch", "alarm:{name}"), on_delete=True),
    ),
    "AWS::Events::Rule": (
        Need(("events:DescribeRule", "events:PutRule", "events:PutTargets"), _arn("events", "rule/{name}")),
        Need(
            ("events:DeleteRule", "events:ListTargetsByRule", "events:RemoveTargets"),
            _arn("events", "rule/{name}"),
            on_delete=True,
        ),
    ),
    "AWS::Glue::Database": (
        Need(
            ("glue:CreateDatabase", "glue:GetDatabase", "glue:UpdateDatabase"), _arn("glue", "database/{GLUE_DATABASE}")
        ),
        Need(("glue:CreateDatabase", "glue:GetDatabase", "glue:UpdateDatabase"), _arn("glue", "catalog"), scoped=False),
        Need(("glue:DeleteDatabase",), _arn("glue", "database/{GLUE_DATABASE}"), on_delete=True),
    ),
    "AWS::Glue::Table": (
        Need(("glue:CreateTable", "glue:GetTable"), _arn("glue", "table/{GLUE_DATABASE}/{property}")),
        Need(("glue:CreateTable", "glue:GetDatabase", "glue:GetTable"), _arn("glue", "database/{GLUE_DATABASE}")),
        Need(("glue:DeleteTable",), _arn("glue", "table/{GLUE_DATABASE}/{property}"), on_delete=True),
    ),
    "AWS::Athena::WorkGroup": (
        Need(
            ("athena:CreateWorkGroup", "athena:TagResource", "athena:UpdateWorkGroup"),
            _arn("athena", "workgroup/{STACK_NAME}"),
        ),
        Need(
            ("athena:DeleteWorkGroup", "athena:GetWorkGroup"), _arn("athena", "workgroup/{STACK_NAME}"), on_delete=True
        ),
    ),
    "AWS::Athena::NamedQuery": (
        Need(("athena:CreateNamedQuery",), _arn("athena", "workgroup/{STACK_NAME}")),
        Need(("athena:DeleteNamedQuery",), _arn("athena", "workgroup/{STACK_NAME}"), on_delete=True),
    ),
    # HTTP API ids are random: API Gateway's ARNs cannot carry the stack's name.
    "AWS::ApiGatewayV2::Api": (
        Need(("apigateway:POST", "apigateway:PUT"), "arn:aws:apigateway:{REGION}::/apis", scoped=False),  # PUT: import
        Need(("apigateway:GET", "apigateway:PATCH", "apigateway:PUT"), API, scoped=False),
        Need(("apigateway:DELETE",), API, on_delete=True, scoped=False),
    ),
    "AWS::ApiGatewayV2::Stage": (
        Need(("apigateway:POST",), API + "/stages", scoped=False),
        Need(("apigateway:DELETE",), API + "/stages/$default", on_delete=True, scoped=False),
        # The stage's access logs: the caller of API Gateway needs these to turn them on.
        Need(
            (
                "logs:CreateLogDelivery",
                "logs:DescribeResourcePolicies",
                "logs:GetLogDelivery",
                "logs:ListLogDeliveries",
                "logs:PutResourcePolicy",
                "logs:UpdateLogDelivery",
            ),
            "*",
            scoped=False,
            source=HTTP_API_LOGGING,
        ),
        Need(("logs:DeleteLogDelivery",), "*", on_delete=True, scoped=False, source=HTTP_API_LOGGING),
    ),
}

# What `sam deploy` and `sam delete` call themselves (samcli/lib/deploy/deployer.py,
# samcli/lib/bootstrap/bootstrap.py), whatever the template holds.
CFN = _arn("cloudformation", "stack/{STACK_NAME}/0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d")
SAM_CLI = (
    Need(
        (
            "cloudformation:CreateChangeSet",
            "cloudformation:DescribeChangeSet",
            "cloudformation:DescribeStackEvents",
            "cloudformation:DescribeStacks",
            "cloudformation:ExecuteChangeSet",
            "cloudformation:GetTemplate",
            "cloudformation:GetTemplateSummary",
            "cloudformation:RollbackStack",
        ),
        CFN,
    ),
    Need(("cloudformation:DeleteStack",), CFN, on_delete=True),
    Need(
        ("cloudformation:CreateChangeSet", "cloudformation:DescribeChangeSet", "cloudformation:ExecuteChangeSet"),
        _arn("cloudformation", "changeSet/samcli-deploy1764561600/0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d"),
        scoped=False,
    ),
    Need(
        ("cloudformation:CreateChangeSet", "cloudformation:DescribeStacks", "cloudformation:ExecuteChangeSet"),
        _arn("cloudformation", "stack/aws-sam-cli-managed-default/0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d"),
        scoped=False,
    ),
    Need(
        ("cloudformation:CreateChangeSet",),
        "arn:aws:cloudformation:{REGION}:aws:transform/Serverless-2016-10-31",
        scoped=False,
    ),
    Need(
        ("cloudformation:CreateChangeSet",),
        "arn:aws:cloudformation:{REGION}:aws:transform/LanguageExtensions",
        scoped=False,
    ),
    Need(("s3:GetObject", "s3:PutObject"), SAM_BUCKET_OBJECT, scoped=False),
    Need(
        (
            "s3:CreateBucket",
            "s3:ListBucket",
            "s3:PutBucketPolicy",
            "s3:PutBucketVersioning",
            "s3:PutEncryptionConfiguration",
        ),
        "arn:aws:s3:::aws-sam-cli-managed-default-samclisourcebucket-1a2b3c4d5e6f",
        scoped=False,
    ),
)


# --- the policy and the template, as the tests read them ---------------------------------------------


def policy_text(values: dict[str, str]) -> str:
    text = POLICY.read_text()
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    return text


def statements(values: dict[str, str]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(policy_text(values))["Statement"]
    return found


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def arn_pattern(pattern: str) -> re.Pattern[str]:
    """An IAM Resource element as a regex: `*` any run of characters, `?` one (IAM's ARN matching)."""
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern))


def grants(values: dict[str, str], action: str, arn: str) -> list[str]:
    """Sids of the statements that allow `action` on `arn` (conditions aside: tested on their own)."""
    return [
        s["Sid"]
        for s in statements(values)
        if action in as_list(s["Action"]) and any(arn_pattern(r).fullmatch(arn) for r in as_list(s["Resource"]))
    ]


def generated_name(logical_id: str, values: dict[str, str]) -> str:
    return f"{values['STACK_NAME']}-{logical_id}-{SUFFIX}"


def own_name(resource: dict[str, Any], values: dict[str, str]) -> str:
    """The name property the template sets itself (log group, alias, layer, table), resolved for a stack."""
    props = resource["Properties"]
    kind = resource["Type"]
    value: Any = {
        "AWS::Logs::LogGroup": props.get("LogGroupName"),
        "AWS::KMS::Alias": props.get("AliasName"),
        "AWS::Lambda::LayerVersion": props.get("LayerName"),
        "AWS::Glue::Table": props.get("TableInput", {}).get("Name"),
    }.get(kind, "")
    if isinstance(value, dict) and set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
        value = value["Fn::Sub"].replace("${AWS::StackName}", values["STACK_NAME"])
    assert isinstance(value, str), f"{kind}: cannot resolve its name {value!r}; teach own_name()"
    return value


def need_arn(need: Need, logical_id: str, resource: dict[str, Any], values: dict[str, str]) -> str:
    name = generated_name(logical_id, values)
    return need.arn.format(name=name, bucket=name.lower(), property=own_name(resource, values), **values)


def deleted_with_stack(transformed: dict[str, Any], kind: str) -> bool:
    return any(
        r["Type"] == kind and r.get("DeletionPolicy", "Delete") != "Retain" for r in transformed["Resources"].values()
    )


@cache
def handler_permissions(kind: str) -> frozenset[str]:
    """The permissions CloudFormation's resource schema for `kind` lists for its handlers (lower-cased:
    schemas are not consistent about case, IAM is case-insensitive for actions)."""
    base = os.path.join(os.path.dirname(cfnlint.__file__), "data", "schemas")
    with open(os.path.join(base, "providers", "us-east-1.json")) as f:
        schema_id = json.load(f)[kind]
    with open(os.path.join(base, "resources", f"{schema_id}.json")) as f:
        handlers = json.load(f).get("handlers", {})
    return frozenset(p.lower() for h in handlers.values() for p in h.get("permissions", []))


def template_needs(transformed: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any], Need]]:
    for logical_id, resource in transformed["Resources"].items():
        for need in NEEDS.get(resource["Type"], ()):
            yield resource["Type"], logical_id, resource, need


# --- the tests -------------------------------------------------------------------------------------------


def test_every_resource_type_of_the_template_has_its_permissions(transformed: dict[str, Any]) -> None:
    for kind in sorted({r["Type"] for r in transformed["Resources"].values()}):
        assert kind in NEEDS, (
            f"template.yaml has {kind}, which the deployer policy does not cover: add its actions to "
            "infra/iam/deployer-policy.json and NEEDS in tests/infra/test_deployer_policy.py"
        )


def test_needed_actions_are_the_ones_aws_documents_for_the_type() -> None:
    for kind, needs in NEEDS.items():
        for need in needs:
            if need.source:
                continue
            unknown = [a for a in need.actions if a.lower() not in handler_permissions(kind)]
            assert not unknown, f"{kind}: {unknown} are not in its CloudFormation resource schema's permissions"


def test_the_policy_grants_every_action_on_the_stacks_resources(transformed: dict[str, Any]) -> None:
    for kind, logical_id, resource, need in template_needs(transformed):
        if need.on_delete and not deleted_with_stack(transformed, kind):
            continue
        arn = need_arn(need, logical_id, resource, STACK)
        for action in need.actions:
            assert grants(STACK, action, arn), f"{kind} {logical_id}: {action} on {arn} is not granted"
    for need in SAM_CLI:
        arn = need.arn.format(**STACK)
        for action in need.actions:
            assert grants(STACK, action, arn), f"sam deploy/delete: {action} on {arn} is not granted"


def test_scoped_actions_do_not_reach_another_stack(transformed: dict[str, Any]) -> None:
    """The policy made out for STACK, asked about the same resources of stack OTHER."""
    for kind, logical_id, resource, need in [*template_needs(transformed), *(("sam", "-", {}, n) for n in SAM_CLI)]:
        if not need.scoped:
            continue
        arn = need.arn.format(**OTHER) if kind == "sam" else need_arn(need, logical_id, resource, OTHER)
        for action in need.actions:
            assert not grants(STACK, action, arn), f"{kind} {logical_id}: {action} reaches stack {OTHER['STACK_NAME']}"


def test_retained_resources_cannot_be_deleted(transformed: dict[str, Any]) -> None:
    """The archive buckets, the state table and the keys are kept when the stack goes (DeletionPolicy
    Retain), so the deployer is not given the calls that would delete them."""
    retained = [
        k
        for k in NEEDS
        if not deleted_with_stack(transformed, k) and k in {r["Type"] for r in transformed["Resources"].values()}
    ]
    assert {"AWS::S3::Bucket", "AWS::DynamoDB::Table", "AWS::KMS::Key"} <= set(retained)
    granted = {a for s in statements(STACK) for a in as_list(s["Action"])}
    for kind in retained:
        for need in NEEDS[kind]:
            if need.on_delete:
                assert not set(need.actions) & granted, f"{kind} is retained, yet {need.actions} are granted"


def test_the_policy_is_iam_grammar_parliament_accepts() -> None:
    document = json.loads(policy_text(STACK))
    assert document["Version"] == "2012-10-17"
    sids = [s["Sid"] for s in document["Statement"]]
    assert len(sids) == len(set(sids)), "statement ids are unique"
    assert all(s["Effect"] == "Allow" for s in document["Statement"])
    findings = analyze_policy_string(policy_text(STACK), include_community_auditors=True).findings
    faults = []
    for finding in findings:
        if finding.issue == "RESOURCE_MISMATCH":  # detail: the actions and the ARN formats they take
            where = " ".join(sorted({d["action"] for d in finding.detail}))
        else:
            where = finding.location.get("string", "") if finding.location else ""
        if (finding.issue, where) not in ALLOWED_FINDINGS:
            faults.append(f"{finding.issue} {finding.detail} {where}")
    assert not faults, faults


def test_the_placeholders_are_the_documented_ones() -> None:
    raw = POLICY.read_text()
    readme = IAM_README.read_text()
    for placeholder in STACK:
        assert placeholder in raw and f"`{placeholder}`" in readme, placeholder
    arns = re.findall(r'"(arn:[^"]*)"', policy_text(STACK))
    leftover = [token for arn in arns for token in re.findall(r"\b[A-Z][A-Z_]{3,}\b", arn)]
    assert not leftover, f"unreplaced placeholders: {leftover}"


def test_no_wildcard_actions_and_no_iam_star() -> None:
    for statement in statements(STACK):
        for action in as_list(statement["Action"]):
            assert "*" not in action and "?" not in action, f"{statement['Sid']}: {action}"
            assert not action.startswith("iam:*"), statement["Sid"]
        assert "NotAction" not in statement and "NotResource" not in statement, statement["Sid"]


def test_statements_on_every_resource_are_explained() -> None:
    readme = IAM_README.read_text()
    for statement in statements(STACK):
        if "*" in as_list(statement["Resource"]):
            assert f"`{statement['Sid']}`" in readme, (
                f"{statement['Sid']} is on Resource * without a word in {IAM_README.name}"
            )


def test_roles_are_passed_to_lambda_only() -> None:
    passing = [s for s in statements(STACK) if "iam:PassRole" in as_list(s["Action"])]
    assert passing and all(
        s["Condition"] == {"StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}} for s in passing
    )


def test_queue_mappings_are_conditioned_on_the_stacks_functions() -> None:
    for statement in statements(STACK):
        if any(a.endswith("EventSourceMapping") for a in as_list(statement["Action"])):
            function = statement["Condition"]["ArnLike"]["lambda:FunctionArn"]
            assert arn_pattern(function).fullmatch(FUNCTION.format(**STACK))
            assert not arn_pattern(function).fullmatch(FUNCTION.format(**OTHER))


def test_keys_are_created_only_with_the_templates_specs(transformed: dict[str, Any]) -> None:
    (creating,) = [s for s in statements(STACK) if "kms:CreateKey" in as_list(s["Action"])]
    allowed = creating["Condition"]["StringEquals"]
    for name, resource in transformed["Resources"].items():
        if resource["Type"] == "AWS::KMS::Key":
            props = resource["Properties"]
            assert props.get("KeySpec", "SYMMETRIC_DEFAULT") in allowed["kms:KeySpec"], name
            assert props.get("KeyUsage", "ENCRYPT_DECRYPT") in allowed["kms:KeyUsage"], name
    assert allowed["kms:KeyOrigin"] == "AWS_KMS"


# Longest names of the kinds CloudFormation names `<stack>-<LogicalId>-<random>` (the service limits;
# tests/infra/test_deploy_limits.py cites the pages). Past them CloudFormation cuts the stack name and
# the `<stack>-*` patterns no longer match, so infra/iam/README.md states the longest stack name.
GENERATED_NAME_LIMITS = {
    "AWS::IAM::Role": 64,
    "AWS::Lambda::Function": 64,
    "AWS::Events::Rule": 64,
    "AWS::S3::Bucket": 63,
    "AWS::SQS::Queue": 80,
    "AWS::SNS::Topic": 256,
    "AWS::DynamoDB::Table": 255,
    "AWS::CloudWatch::Alarm": 255,
}
RANDOM_TAIL = 13  # the longest random tail seen on a CloudFormation-generated name
LONGEST_STACK_NAME = 18


def test_the_documented_longest_stack_name_keeps_generated_names_whole(transformed: dict[str, Any]) -> None:
    assert f"{LONGEST_STACK_NAME} characters or fewer" in IAM_README.read_text()
    stack = "s" * LONGEST_STACK_NAME
    tightest = 0
    for logical_id, resource in transformed["Resources"].items():
        limit = GENERATED_NAME_LIMITS.get(resource["Type"])
        if limit is not None:
            length = len(f"{stack}-{logical_id}-") + RANDOM_TAIL
            assert length <= limit, f"{logical_id}: a {LONGEST_STACK_NAME}-character stack name gets cut"
            tightest = max(tightest, length - limit)
    assert tightest == 0, "LONGEST_STACK_NAME is the longest that fits: raise it"


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deployer_policy", ROOT / "tools" / "deployer_policy.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_generator_writes_managed_policies_within_iams_limit(tmp_path: Path) -> None:
    """The longest stack name, the longest region name: every part fits a managed policy, and the
    parts together are the whole document with its placeholders filled."""
    tool = generator()
    assert tool.LONGEST_STACK_NAME == LONGEST_STACK_NAME
    stack = "Audit-" + "x" * (LONGEST_STACK_NAME - 6)
    args = ["--stack", stack, "--region", "ap-southeast-2", "--account", "123456789012", "--out-dir", str(tmp_path)]
    result = CliRunner().invoke(tool.main, args)
    assert result.exit_code == 0, result.output
    parts = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("deployer-policy-*.json"))]
    assert len(parts) >= 2 and all(tool.size(part) <= 6144 for part in parts)
    filled = {
        **STACK,
        "STACK_NAME": stack,
        "BUCKET_PREFIX": stack.lower(),
        "GLUE_DATABASE": stack.lower().replace("-", "_"),
    }
    expected = json.loads(policy_text({**filled, "REGION": "ap-southeast-2"}))["Statement"]
    assert [s for part in parts for s in part["Statement"]] == expected


def test_the_generator_refuses_values_the_policy_cannot_serve(tmp_path: Path) -> None:
    tool = generator()
    base = {"--stack": "auditlake-prod", "--region": "eu-west-1", "--account": "123456789012"}
    for option, value, said in [
        ("--stack", "s" * (LONGEST_STACK_NAME + 1), "use a stack name of 18 or fewer"),
        ("--stack", "9lives", "not one CloudFormation accepts"),
        ("--region", "Europe", "not a region name"),
        ("--account", "1234", "not a 12-digit account id"),
        ("--glue-database", "Audit-DB", "not a lower-case Glue name"),
    ]:
        args = [x for k, v in {**base, option: value}.items() for x in (k, v)] + ["--out-dir", str(tmp_path)]
        result = CliRunner().invoke(tool.main, args)
        assert result.exit_code == 2 and result.output.startswith("error: ") and said in result.output, result.output
        assert result.output.count("\n") == 1 and not list(tmp_path.iterdir())
