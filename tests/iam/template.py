"""template.yaml as CloudFormation would see it: parsed, Fn::ForEach expanded (the
AWS::LanguageExtensions transform), then SAM's transform. Shared by tests/infra (fixtures `template`,
`expanded`, `transformed`) and the IAM check (tests/iam/roles.py), so both judge the same document.
"""

from __future__ import annotations

import copy
import os
from functools import cache
from typing import Any

from tests.helpers import ROOT

# Stack parameters for the expanded template: two EKS clusters, one of them with a name CloudFormation
# cannot use as is in a logical id.
EKS_CLUSTERS = ["prod", "staging_eu"]
PSEUDO = {
    "AWS::StackName": "auditlake",
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",  # moto's account: the ARNs moto answers with carry it
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
}


class NoManagedPolicies:
    """samtranslator asks IAM for managed policy ARNs; the template must not need any."""

    def load(self) -> dict[str, str]:
        return {}


def parse(text: str) -> dict[str, Any]:
    from tests.helpers import parse_sam_yaml

    return parse_sam_yaml(text)


def expand(template: dict[str, Any], parameters: dict[str, Any]) -> dict[str, Any]:
    """What CloudFormation's AWS::LanguageExtensions transform does to the Fn::ForEach blocks, before
    SAM's transform; every other resource is left exactly as written."""
    from samcli.lib.cfn_language_extensions.sam_integration import expand_language_extensions

    out = copy.deepcopy(template)
    loops = {k: v for k, v in out["Resources"].items() if k.startswith("Fn::ForEach::")}
    fragment = {
        "Transform": "AWS::LanguageExtensions",
        "Parameters": {name: out["Parameters"][name] for name in parameters},
        "Conditions": out["Conditions"],
        "Resources": loops,
    }
    result = expand_language_extensions(fragment, {**parameters, **PSEUDO}, enabled=True)
    for key in loops:
        del out["Resources"][key]
    out["Resources"].update(result.expanded_template["Resources"])
    out["Transform"] = [t for t in out["Transform"] if t != "AWS::LanguageExtensions"]
    return out


def transform(expanded: dict[str, Any]) -> dict[str, Any]:
    """SAM's transform of an expanded template, local code paths replaced as `sam package` would."""
    from samtranslator.translator.transform import transform as sam_transform

    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")  # samtranslator builds ARNs for a region
    packaged = copy.deepcopy(expanded)
    for name, resource in packaged["Resources"].items():
        for key in ("CodeUri", "ContentUri"):
            if key in resource.get("Properties", {}):
                resource["Properties"][key] = f"s3://artifacts/{name}.zip"
    out: dict[str, Any] = sam_transform(packaged, {"AWS::Region": "us-east-1"}, NoManagedPolicies())
    return out


@cache
def shipped() -> tuple[dict[str, Any], dict[str, Any]]:
    """(expanded, transformed) of the repository's template.yaml, computed once per process.
    Callers must not mutate them (deep-copy first)."""
    expanded = expand(parse((ROOT / "template.yaml").read_text()), {"EksClusterNames": EKS_CLUSTERS})
    return expanded, transform(expanded)
