"""Every name the template builds from the stack name fits its service's limits for any legal stack
name, and two stacks in one account and region never share a name that must be unique there.

CloudFormation allows stack names of up to 128 characters, ``[a-zA-Z][-a-zA-Z0-9]*``
(https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_CreateStack.html). The
template is expanded and SAM-transformed as ``sam deploy`` would, with a 128-character stack name;
each named property's Fn::Sub / Fn::Join / Fn::Split / Fn::If is resolved (conditions evaluated
from the parameters) and checked against the limit and the characters its service documents
(LIMITS). A name the template does not set is CloudFormation's to generate, and it truncates those
to fit; a stack-name-derived string anywhere outside LIMITS fails, so a new one gets a limit here.

Emulators check none of this: moto accepts a 200-character function name, cfn-lint does not resolve
a Fn::Sub of the stack name.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from unittest import mock

import pytest

from tests.helpers import ROOT
from tests.iam import template as shared
from tests.iam.template import expand, parse, transform

LONG_STACK = ("Auditlake-Prod-EU-" + "Cluster-Fleet-0123456789-" * 5)[:127] + "x"
assert len(LONG_STACK) == 128 and re.fullmatch(r"[a-zA-Z][-a-zA-Z0-9]*", LONG_STACK)


@dataclass(frozen=True)
class Limit:
    length: int
    pattern: str  # the whole name must match
    doc: str
    unique: bool = False  # must differ between two stacks in one account and region


LIMITS: dict[tuple[str, str], Limit] = {
    ("AWS::Lambda::Function", "FunctionName"): Limit(
        64, r"[a-zA-Z0-9_-]+", "https://docs.aws.amazon.com/lambda/latest/api/API_CreateFunction.html", unique=True
    ),
    ("AWS::Lambda::Function", "Environment.Variables.POWERTOOLS_METRICS_NAMESPACE"): Limit(
        255,
        r"[^:][-a-zA-Z0-9._/#: ]*",
        "https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricData.html",
        unique=True,
    ),
    ("AWS::Lambda::LayerVersion", "LayerName"): Limit(
        140, r"[a-zA-Z0-9_-]+", "https://docs.aws.amazon.com/lambda/latest/api/API_PublishLayerVersion.html"
    ),
    ("AWS::IAM::Role", "RoleName"): Limit(
        64, r"[\w+=,.@-]+", "https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html", unique=True
    ),
    ("AWS::IAM::Role", "Policies.*.PolicyName"): Limit(
        128, r"[\w+=,.@-]+", "https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html"
    ),
    ("AWS::IAM::Policy", "PolicyName"): Limit(
        128, r"[\w+=,.@-]+", "https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html"
    ),
    ("AWS::Logs::LogGroup", "LogGroupName"): Limit(
        512,
        r"[.\-_/#A-Za-z0-9]+",
        "https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_CreateLogGroup.html",
        unique=True,
    ),
    ("AWS::Logs::SubscriptionFilter", "FilterName"): Limit(
        512,
        r"[^:*]+",
        "https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_PutSubscriptionFilter.html",
        unique=True,  # per log group, and two stacks may subscribe to the same EKS log group
    ),
    ("AWS::KMS::Alias", "AliasName"): Limit(
        256,
        r"alias/(?!aws/)[a-zA-Z0-9/_-]+",
        "https://docs.aws.amazon.com/kms/latest/APIReference/API_CreateAlias.html",
        unique=True,
    ),
    ("AWS::Athena::WorkGroup", "Name"): Limit(
        128,
        r"[a-zA-Z0-9._-]+",
        "https://docs.aws.amazon.com/athena/latest/APIReference/API_CreateWorkGroup.html",
        unique=True,
    ),
    ("AWS::Athena::NamedQuery", "Name"): Limit(
        128, r".+", "https://docs.aws.amazon.com/athena/latest/APIReference/API_CreateNamedQuery.html"
    ),
    # Glue: 1-255 characters, stored lower-cased; Athena: lower-case letters, digits and underscore.
    ("AWS::Glue::Database", "DatabaseInput.Name"): Limit(
        255,
        r"[a-zA-Z0-9_]+",
        "https://docs.aws.amazon.com/athena/latest/ug/tables-databases-columns-names.html",
        unique=True,
    ),
    ("AWS::Glue::Table", "TableInput.Name"): Limit(
        255, r"[a-z0-9_]+", "https://docs.aws.amazon.com/athena/latest/ug/tables-databases-columns-names.html"
    ),
    ("AWS::Events::Rule", "Name"): Limit(
        64,
        r"[.\-_A-Za-z0-9]+",
        "https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_PutRule.html",
        unique=True,
    ),
    ("AWS::SNS::Topic", "TopicName"): Limit(
        256, r"[A-Za-z0-9_-]+", "https://docs.aws.amazon.com/sns/latest/api/API_CreateTopic.html", unique=True
    ),
    ("AWS::SNS::Topic", "DisplayName"): Limit(
        100, r".+", "https://docs.aws.amazon.com/sns/latest/api/API_SetTopicAttributes.html"
    ),
    ("AWS::SQS::Queue", "QueueName"): Limit(
        80,
        r"[A-Za-z0-9_-]+",
        "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_CreateQueue.html",
        unique=True,
    ),
    ("AWS::DynamoDB::Table", "TableName"): Limit(
        255,
        r"[a-zA-Z0-9_.-]{3,}",
        "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html",
        unique=True,
    ),
    ("AWS::S3::Bucket", "BucketName"): Limit(
        63,
        r"[a-z0-9][a-z0-9.-]+",
        "https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html",
        unique=True,
    ),
    # Access-log objects are named prefix + "YYYY-mm-DD-HH-MM-SS-" + 16 characters; a key is 1,024 bytes.
    ("AWS::S3::Bucket", "LoggingConfiguration.LogFilePrefix"): Limit(
        1024 - 36, r"[-a-zA-Z0-9/_.]+", "https://docs.aws.amazon.com/AmazonS3/latest/userguide/ServerLogs.html"
    ),
    ("AWS::CloudWatch::Alarm", "AlarmName"): Limit(
        255,
        r".+",
        "https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricAlarm.html",
        unique=True,
    ),
    ("AWS::CloudWatch::Alarm", "Namespace"): Limit(
        255,
        r"[^:][-a-zA-Z0-9._/#: ]*",
        "https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricAlarm.html",
    ),
    ("AWS::ApiGatewayV2::Api", "Name"): Limit(
        128, r".+", "https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html"
    ),
    ("AWS::ApiGatewayV2::Api", "Body.info.title"): Limit(  # SAM's OpenAPI body: the API's name
        128, r".+", "https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html"
    ),
    ("AWS::ApiGatewayV2::Stage", "StageName"): Limit(
        128, r"[a-zA-Z0-9_$-]+", "https://docs.aws.amazon.com/apigatewayv2/latest/api-reference/apis-apiid-stages.html"
    ),
}

PSEUDO = {"AWS::Region": "us-east-1", "AWS::AccountId": "123456789012", "AWS::Partition": "aws",
          "AWS::URLSuffix": "amazonaws.com"}  # fmt: skip


class Unresolved(Exception):
    """The value names another resource (its generated name, an attribute): not this property's name."""


@dataclass
class Stack:
    name: str
    parameters: dict[str, Any]
    doc: dict[str, Any]

    def value(self, name: str) -> Any:
        if name == "AWS::StackName":
            return self.name
        if name in PSEUDO:
            return PSEUDO[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self.doc.get("Parameters", {}):
            return self.doc["Parameters"][name].get("Default", "")
        return self.resource(name.split(".", maxsplit=1)[0])  # ${Resource} or ${Resource.Attribute} in a Fn::Sub

    def resource(self, logical_id: str) -> str:
        raise Unresolved(logical_id)

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.doc["Conditions"][name]))

    def resolve(self, expr: Any) -> Any:
        """The value CloudFormation would pass for ``expr`` in this stack."""
        if isinstance(expr, list):
            return [self.resolve(item) for item in expr]
        if not isinstance(expr, dict):
            return expr
        if len(expr) != 1 or not next(iter(expr)).startswith(("Fn::", "Ref", "Condition")):
            return {key: self.resolve(value) for key, value in expr.items()}
        ((fn, args),) = expr.items()
        if fn == "Ref":
            return self.value(args)
        if fn == "Fn::GetAtt":
            return self.resource(args[0])
        if fn == "Condition":
            return self.condition(args)
        if fn == "Fn::If":
            return self.resolve(args[1] if self.condition(args[0]) else args[2])
        if fn == "Fn::Equals":
            left, right = self.resolve(args)
            return str(left) == str(right)
        if fn == "Fn::Not":
            return not self.resolve(args[0])
        if fn == "Fn::And":
            return all(self.resolve(args))
        if fn == "Fn::Or":
            return any(self.resolve(args))
        if fn == "Fn::Join":
            return args[0].join(str(part) for part in self.resolve(args[1]))
        if fn == "Fn::Split":
            return str(self.resolve(args[1])).split(args[0])
        if fn == "Fn::Select":
            return self.resolve(args[1])[int(args[0])]
        if fn == "Fn::Sub":
            text, local = (args, {}) if isinstance(args, str) else (args[0], self.resolve(args[1]))
            return re.sub(r"\$\{([^}!]+)\}", lambda m: str(local[m[1]] if m[1] in local else self.value(m[1])), text)
        raise Unresolved(fn)


def build(stack_name: str, parameters: dict[str, Any]) -> Stack:
    """The template as `sam deploy` hands it to CloudFormation: ForEach expanded, SAM transformed."""
    with mock.patch.dict(shared.PSEUDO, {"AWS::StackName": stack_name}):
        expanded = expand(
            parse((ROOT / "template.yaml").read_text()), {"EksClusterNames": parameters["EksClusterNames"]}
        )
    return Stack(stack_name, parameters, transform(expanded))


def properties(value: Any, path: str = "", intrinsic: bool = False) -> Iterator[tuple[str, Any]]:
    """(path, value) of every property, intrinsic functions and their arguments left out of the path:
    'LoggingConfiguration.LogFilePrefix', 'Policies.*.PolicyName'."""
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            if key.startswith("Fn::") or key == "Ref":
                yield from properties(item, path, intrinsic=True)
            else:
                yield from properties(item, f"{path}.{key}" if path else key, intrinsic=False)
    elif isinstance(value, list):
        for item in value:
            yield from properties(item, path if intrinsic else f"{path}.*", intrinsic=intrinsic)


def mentions_stack_name(value: Any) -> bool:
    if isinstance(value, str):
        return "AWS::StackName" in value
    if isinstance(value, dict):
        return any(mentions_stack_name(v) for v in value.values())
    if isinstance(value, list):
        return any(mentions_stack_name(v) for v in value)
    return False


def named(stack: Stack) -> Iterator[tuple[str, str, Limit, str]]:
    """(resource, path, limit, resolved name) of every named property the stack sets."""
    for logical_id, resource in stack.doc["Resources"].items():
        if "Condition" in resource and not stack.condition(resource["Condition"]):
            continue
        seen = set()
        for path, value in properties(resource.get("Properties", {})):
            limit = LIMITS.get((resource["Type"], path))
            if limit is None or path in seen:
                continue
            seen.add(path)  # the outermost value at this path; inner ones are its intrinsic's arguments
            try:
                resolved = stack.resolve(value)
            except Unresolved:
                continue  # another resource's generated name: that resource's own limit applies
            if isinstance(resolved, dict):
                continue  # a Fn::If that left the property out (AWS::NoValue)
            yield logical_id, path, limit, str(resolved)


STACKS = {
    "defaults": {"EksClusterNames": ["prod", "staging_eu"]},
    "access logs": {"EksClusterNames": ["prod"], "AccessLogsBucketName": "central-access-logs"},
}


@pytest.fixture(scope="module", params=list(STACKS))
def long_stack(request: pytest.FixtureRequest) -> Stack:
    return build(LONG_STACK, STACKS[request.param])


def test_every_name_fits_its_service_for_a_128_character_stack_name(long_stack: Stack) -> None:
    checked = []
    for logical_id, path, limit, name in named(long_stack):
        assert len(name) <= limit.length, f"{logical_id}.{path}: {len(name)} > {limit.length} ({limit.doc})"
        assert re.fullmatch(limit.pattern, name), f"{logical_id}.{path}: {name!r} ({limit.doc})"
        checked.append((logical_id, path))
    # The check saw the names that grow with the stack name (not an empty walk).
    assert {("GlueDatabase", "DatabaseInput.Name"), ("AthenaWorkGroup", "Name"), ("DataKeyAlias", "AliasName"),
            ("EventsPollerLogs", "LogGroupName"), ("SilentClustersAlarm", "Namespace"),
            ("EksAuditSubscriptionprod", "FilterName")} <= set(checked)  # fmt: skip


def test_every_stack_name_derived_string_is_a_checked_name(long_stack: Stack) -> None:
    """A new name built from the stack name must get its service's limit in LIMITS."""
    for logical_id, resource in long_stack.doc["Resources"].items():
        for path, value in properties(resource.get("Properties", {})):
            if isinstance(value, str) and mentions_stack_name(value):
                assert (resource["Type"], path) in LIMITS, f"{logical_id}.{path} is built from the stack name"
    for logical_id, resource in long_stack.doc["Resources"].items():  # ForEach resolved it already
        filter_name = resource.get("Properties", {}).get("FilterName")
        assert filter_name is None or LONG_STACK in long_stack.resolve(filter_name), logical_id


def test_the_glue_database_is_named_after_the_stack_in_athena_s_alphabet(long_stack: Stack) -> None:
    (name,) = [n for lid, path, _, n in named(long_stack) if lid == "GlueDatabase"]
    assert name == LONG_STACK.replace("-", "_")
    assert re.fullmatch(r"[a-z0-9_]{1,255}", name.lower())  # what Glue stores and Athena names
    chosen = build("auditlake", {**STACKS["defaults"], "GlueDatabaseName": "audit_prod"})
    assert [n for lid, _, _, n in named(chosen) if lid == "GlueDatabase"] == ["audit_prod"]


def test_the_poller_is_not_named_and_may_invoke_itself(long_stack: Stack) -> None:
    function = long_stack.doc["Resources"]["EventsPollerFunction"]["Properties"]
    assert "FunctionName" not in function  # CloudFormation's generated name fits 64 characters
    (statement,) = long_stack.doc["Resources"]["EventsPollerFanOutPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Resource"] == {"Fn::GetAtt": ["EventsPollerFunction", "Arn"]}


def unique_names(stack: Stack) -> set[tuple[str, str, str]]:
    return {
        (stack.doc["Resources"][lid]["Type"], path, name) for lid, path, limit, name in named(stack) if limit.unique
    }


def test_two_stacks_in_one_account_share_no_unique_name() -> None:
    """A staging stack next to prod: no name that is unique per account and region (or per EKS log
    group, or a metric namespace an alarm reads) may be the same in both."""
    prod = build("auditlake", STACKS["defaults"])
    staging = build("auditlake-staging", STACKS["defaults"])
    shared = unique_names(prod) & unique_names(staging)
    assert shared == set()
    kinds = {(kind, path) for kind, path, _ in unique_names(prod)}
    assert {("AWS::Glue::Database", "DatabaseInput.Name"), ("AWS::Athena::WorkGroup", "Name"),
            ("AWS::KMS::Alias", "AliasName"), ("AWS::Logs::LogGroup", "LogGroupName"),
            ("AWS::Logs::SubscriptionFilter", "FilterName"),
            ("AWS::Lambda::Function", "Environment.Variables.POWERTOOLS_METRICS_NAMESPACE")} <= kinds  # fmt: skip
    # The dead-man alarm reads the namespace its own stack's functions publish to.
    for stack in (prod, staging):
        namespace = stack.resolve(stack.doc["Resources"]["SilentClustersAlarm"]["Properties"]["Namespace"])
        published = {
            stack.resolve(r["Properties"]["Environment"]["Variables"]["POWERTOOLS_METRICS_NAMESPACE"])
            for r in stack.doc["Resources"].values()
            if r["Type"] == "AWS::Lambda::Function"
        }
        assert published == {namespace} == {f"auditlake/{stack.name}"}


# The longest value a reference to another resource can take in an environment variable: a bucket
# name, a table name, a topic ARN, a key ARN (generated names are truncated to their service's limit).
REF_LENGTHS = {
    "AWS::S3::Bucket": 63,
    "AWS::DynamoDB::Table": 255,
    "AWS::SNS::Topic": len("arn:aws-us-gov:sns:us-gov-west-1:123456789012:") + 256,
    "AWS::KMS::Key": len("arn:aws-us-gov:kms:us-gov-west-1:123456789012:key/") + 36,
}


class WorstCase(Stack):
    """Every reference to another resource at the longest value it can take."""

    def resource(self, logical_id: str) -> str:
        return "x" * REF_LENGTHS[self.doc["Resources"][logical_id]["Type"]]


def test_function_environments_fit_lambda_s_4_kb(long_stack: Stack) -> None:
    """Lambda refuses environment variables over 4 KB in total (keys and values,
    https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html); the values name
    resources whose generated names grow with the stack name."""
    worst = WorstCase(long_stack.name, long_stack.parameters, long_stack.doc)
    for logical_id, resource in worst.doc["Resources"].items():
        if resource["Type"] == "AWS::Lambda::Function":
            variables = worst.resolve(resource["Properties"]["Environment"]["Variables"])
            total = sum(len(key) + len(str(value)) for key, value in variables.items())
            assert total < 4096, f"{logical_id}: {total} bytes of environment"
