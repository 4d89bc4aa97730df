"""Each Lambda function's role, from the transformed template, resolved to one test's resources.

Contract:
- ``RoleBook(expanded, transformed)`` knows the template's functions by their code directory
  (``functions/<dir>``). ``RoleBook.role(dir, env, function_arn)`` returns a ``Role``: the statements
  of every policy that applies to the function's execution role (the role's inline ``Policies`` and
  each ``AWS::IAM::Policy``/``AWS::IAM::ManagedPolicy`` whose ``Roles`` names it), with every
  intrinsic resolved.
- Resolution: the template gives each environment variable a ``Ref``/``Fn::GetAtt`` to a resource
  or parameter; the test's value of that variable is that resource's name (or ARN) in this test.
  A resource no variable names gets a placeholder (``unbound-<LogicalId>``) that matches nothing real
  except through wildcards; ``Role.placeholders`` lists them. The function itself is the ARN its
  handler was invoked with (when known). Parameters take their defaults unless a variable names
  them; Conditions are evaluated with those values.
- ``Role.kms_key_for(kind, name)`` says which KMS key encrypts a bucket, topic or queue of the
  template (SSE-KMS), for the KMS permissions a call implies.
- Anything unresolvable (an intrinsic this module does not know, a ManagedPolicyArns entry) raises:
  the check must not silently judge a different policy than the one deployed.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.iam.evaluator import Statement, parse_policy
from tests.iam.template import PSEUDO

REGION, ACCOUNT, PARTITION = PSEUDO["AWS::Region"], PSEUDO["AWS::AccountId"], PSEUDO["AWS::Partition"]


class TemplateError(ValueError):
    pass


_NO_VALUE = object()


@dataclass
class Role:
    function: str  # the code directory, e.g. "webhook"
    logical_id: str  # the role's logical id
    statements: list[Statement]
    placeholders: set[str] = field(default_factory=set)
    kms: dict[tuple[str, str], str] = field(default_factory=dict)  # (kind, physical name) -> key ARN
    hash_keys: dict[str, str] = field(default_factory=dict)  # table name -> partition key attribute

    def kms_key_for(self, kind: str, name: str) -> str | None:
        return self.kms.get((kind, name))


def _arn(service: str, resource: str, *, region: str = REGION, account: str = ACCOUNT) -> str:
    return f"arn:{PARTITION}:{service}:{region}:{account}:{resource}"


@dataclass
class _Physical:
    """What Ref and GetAtt give for one resource, from its physical name (or ARN)."""

    ref: str
    attributes: dict[str, str]


def _physical(kind: str, logical: str, *, ref: str | None = None, arn: str | None = None) -> _Physical:
    """A resource's Ref and attributes from whichever of them the test gave (or a placeholder)."""
    if kind == "AWS::S3::Bucket":
        name = ref or (arn.rsplit(":", 1)[-1] if arn else f"unbound-{logical.lower()}")
        return _Physical(name, {"Arn": f"arn:{PARTITION}:s3:::{name}", "DomainName": f"{name}.s3.amazonaws.com"})
    if kind == "AWS::DynamoDB::Table":
        name = ref or (arn.rsplit("/", 1)[-1] if arn else f"unbound-{logical}")
        return _Physical(name, {"Arn": _arn("dynamodb", f"table/{name}")})
    if kind == "AWS::SNS::Topic":
        topic = ref or arn or _arn("sns", f"unbound-{logical}")
        return _Physical(topic, {"TopicArn": topic, "TopicName": topic.rsplit(":", 1)[-1]})
    if kind == "AWS::SQS::Queue":
        if ref:  # a queue URL
            name = ref.rstrip("/").rsplit("/", 1)[-1]
        elif arn:
            name = arn.rsplit(":", 1)[-1]
        else:
            name = f"unbound-{logical}"
        url = ref or f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{name}"
        return _Physical(url, {"Arn": _arn("sqs", name), "QueueName": name, "QueueUrl": url})
    if kind == "AWS::KMS::Key":
        key = ref or (arn.rsplit("/", 1)[-1] if arn else f"unbound-{logical}")
        return _Physical(key, {"Arn": arn or _arn("kms", f"key/{key}"), "KeyId": key})
    if kind == "AWS::Lambda::Function":
        name = ref or (arn.split(":")[6] if arn else f"unbound-{logical}")
        return _Physical(name, {"Arn": arn or _arn("lambda", f"function:{name}")})
    if kind == "AWS::Logs::LogGroup":
        name = ref or f"/unbound/{logical}"
        return _Physical(name, {"Arn": _arn("logs", f"log-group:{name}:*")})
    if kind == "AWS::IAM::Role":
        name = ref or f"unbound-{logical}"
        return _Physical(name, {"Arn": f"arn:{PARTITION}:iam::{ACCOUNT}:role/{name}"})
    placeholder = f"unbound-{logical}"
    return _Physical(placeholder, {"Arn": f"arn:{PARTITION}:unbound:{REGION}:{ACCOUNT}:{logical}"})


class _Resolver:
    def __init__(self, template: Mapping[str, Any], parameters: dict[str, Any], physical: dict[str, _Physical]):
        self.template = template
        self.resources: Mapping[str, Any] = template["Resources"]
        self.parameters = parameters
        self.physical = physical
        self.placeholders: set[str] = set()
        self.conditions: dict[str, bool] = {}

    def phys(self, logical: str) -> _Physical:
        if logical not in self.physical:
            if logical not in self.resources:
                raise TemplateError(f"Ref/GetAtt to {logical}, which the template does not define")
            self.placeholders.add(logical)
            self.physical[logical] = _physical(self.resources[logical]["Type"], logical)
        return self.physical[logical]

    def ref(self, name: str) -> Any:
        if name in PSEUDO:
            return PSEUDO[name]
        if name == "AWS::NoValue":
            return _NO_VALUE
        if name in self.parameters:
            return self.parameters[name]
        return self.phys(name).ref

    def getatt(self, logical: str, attribute: str) -> str:
        attributes = self.phys(logical).attributes
        if attribute not in attributes:
            raise TemplateError(f"GetAtt {logical}.{attribute}: not modelled in tests/iam/roles.py")
        return attributes[attribute]

    def condition(self, name: str) -> bool:
        if name not in self.conditions:
            value = self.resolve(self.template["Conditions"][name])
            if not isinstance(value, bool):
                raise TemplateError(f"condition {name} is not a boolean: {value!r}")
            self.conditions[name] = value
        return self.conditions[name]

    def sub(self, text: str, extra: Mapping[str, Any]) -> str:
        import re

        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in extra:
                return str(extra[name])
            if "." in name and not name.startswith("AWS::"):
                logical, attribute = name.split(".", 1)
                return self.getatt(logical, attribute)
            return str(self.ref(name))

        return re.sub(r"\$\{([^}]+)\}", one, text)

    def resolve(self, node: Any) -> Any:
        if isinstance(node, list):
            return [v for v in (self.resolve(x) for x in node) if v is not _NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, arg),) = node.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::GetAtt":
                logical, attribute = arg.split(".", 1) if isinstance(arg, str) else arg
                return self.getatt(logical, attribute)
            if key == "Fn::Sub":
                text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))
                return self.sub(text, extra)
            if key == "Fn::If":
                name, then, otherwise = arg
                return self.resolve(then if self.condition(name) else otherwise)
            if key == "Fn::Join":
                sep, parts = arg
                return sep.join(str(p) for p in self.resolve(parts))
            if key == "Fn::Select":
                index, items = self.resolve(arg)
                return items[int(index)]
            if key == "Fn::Split":
                sep, text = self.resolve(arg)
                return text.split(sep)
            if key == "Fn::Equals":
                a, b = self.resolve(arg)
                return str(a) == str(b)
            if key == "Fn::Not":
                return not self.resolve(arg)[0]
            if key == "Fn::And":
                return all(self.resolve(arg))
            if key == "Fn::Or":
                return any(self.resolve(arg))
            if key == "Condition":
                return self.condition(arg)
            if key.startswith("Fn::"):
                raise TemplateError(f"intrinsic {key} is not resolved by tests/iam/roles.py: add it there")
        return {k: v for k, v in ((k, self.resolve(v)) for k, v in node.items()) if v is not _NO_VALUE}


def _target(spec: Any) -> tuple[str, str | None] | None:
    """(logical id or parameter, GetAtt attribute or None) an environment variable's value names."""
    if isinstance(spec, dict) and len(spec) == 1:
        ((key, arg),) = spec.items()
        if key == "Ref" and isinstance(arg, str) and not arg.startswith("AWS::"):
            return arg, None
        if key == "Fn::GetAtt":
            logical, attribute = arg.split(".", 1) if isinstance(arg, str) else arg
            return logical, attribute
    return None


class RoleBook:
    """The roles of a transformed template (deep-copied: callers may edit their own copy first)."""

    def __init__(self, expanded: Mapping[str, Any], transformed: Mapping[str, Any]) -> None:
        self.template = copy.deepcopy(dict(transformed))
        self.functions: dict[str, str] = {}  # code directory -> function logical id
        for logical, resource in expanded["Resources"].items():
            code = resource.get("Properties", {}).get("CodeUri")
            if resource.get("Type") == "AWS::Serverless::Function" and isinstance(code, str):
                self.functions[code.rstrip("/").rsplit("/", 1)[-1]] = logical

    def function_resource(self, function: str) -> tuple[str, dict[str, Any]]:
        if function not in self.functions:
            raise TemplateError(f"no function in template.yaml has CodeUri functions/{function}")
        logical = self.functions[function]
        return logical, self.template["Resources"][logical]

    def role_id(self, function: str) -> str:
        _, resource = self.function_resource(function)
        role = resource["Properties"].get("Role")
        target = _target(role)
        if target is None or target[1] != "Arn" or self.template["Resources"][target[0]]["Type"] != "AWS::IAM::Role":
            raise TemplateError(f"{function}: Role must be !GetAtt <AWS::IAM::Role>.Arn, not {role!r}")
        return target[0]

    def role_ids(self) -> dict[str, str]:
        return {function: self.role_id(function) for function in sorted(self.functions)}

    def role(self, function: str, env: Mapping[str, str], function_arn: str | None = None) -> Role:
        logical, resource = self.function_resource(function)
        resources = self.template["Resources"]
        parameters = {name: spec.get("Default", "") for name, spec in self.template.get("Parameters", {}).items()}
        for name, value in parameters.items():
            if isinstance(value, list):  # CommaDelimitedList defaults arrive as lists or strings
                parameters[name] = ",".join(value)
        physical: dict[str, _Physical] = {}
        variables = resource["Properties"].get("Environment", {}).get("Variables", {})
        for variable, spec in variables.items():
            target = _target(spec)
            if target is None or variable not in env:
                continue
            name, attribute = target
            if name in parameters:
                parameters[name] = env[variable]
            elif name in resources:
                kind = resources[name]["Type"]
                given = {"ref": env[variable]} if attribute is None else {"arn": env[variable]}
                if attribute not in (None, "Arn", "TopicArn"):
                    raise TemplateError(f"{variable}: GetAtt {name}.{attribute} is not modelled in tests/iam/roles.py")
                physical[name] = _physical(kind, name, **given)
        if function_arn:  # the function itself: the ARN its handler was invoked with, unqualified
            unqualified = ":".join(function_arn.split(":")[:7])
            physical[logical] = _physical("AWS::Lambda::Function", logical, arn=unqualified)
        resolver = _Resolver(self.template, parameters, physical)
        if not function_arn and "FunctionName" in resource["Properties"]:
            name = resolver.resolve(resource["Properties"]["FunctionName"])
            physical[logical] = _physical("AWS::Lambda::Function", logical, ref=name)

        role_id = self.role_id(function)
        statements: list[Statement] = []
        role_properties = resources[role_id]["Properties"]
        if role_properties.get("ManagedPolicyArns"):
            raise TemplateError(f"{role_id}: ManagedPolicyArns cannot be evaluated here; use inline policies")
        for policy in resolver.resolve(role_properties.get("Policies", [])):
            statements += parse_policy(policy["PolicyDocument"], f"{role_id}/{policy['PolicyName']}")
        for name, other in resources.items():
            if other["Type"] not in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
                continue
            if "Condition" in other and not resolver.condition(other["Condition"]):
                continue
            roles = other["Properties"].get("Roles", [])
            if {"Ref": role_id} in roles or role_id in [r for r in roles if isinstance(r, str)]:
                document = resolver.resolve(other["Properties"]["PolicyDocument"])
                statements += parse_policy(document, name)

        placeholders = set(resolver.placeholders)  # those the role's statements name
        kms: dict[tuple[str, str], str] = {}
        hash_keys: dict[str, str] = {}
        for name, other in resources.items():
            props = other.get("Properties", {})
            if "Condition" in other and not resolver.condition(other["Condition"]):
                continue
            if other["Type"] == "AWS::S3::Bucket":
                for rule in props.get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration", []):
                    default = rule.get("ServerSideEncryptionByDefault", {})
                    if default.get("SSEAlgorithm") in ("aws:kms", "aws:kms:dsse"):
                        key = resolver.resolve(default.get("KMSMasterKeyID"))
                        kms[("s3", resolver.phys(name).ref)] = key
            elif other["Type"] == "AWS::SNS::Topic" and props.get("KmsMasterKeyId") and name in physical:
                kms[("sns", physical[name].ref)] = resolver.resolve(props["KmsMasterKeyId"])
            elif other["Type"] == "AWS::SQS::Queue" and props.get("KmsMasterKeyId") and name in physical:
                kms[("sqs", physical[name].attributes["Arn"])] = resolver.resolve(props["KmsMasterKeyId"])
            elif other["Type"] == "AWS::DynamoDB::Table":
                table = physical[name].ref if name in physical else f"unbound-{name}"
                for key in props.get("KeySchema", []):
                    if key["KeyType"] == "HASH":
                        hash_keys[table] = key["AttributeName"]
        return Role(function, role_id, statements, placeholders, kms, hash_keys)
