from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from samcli.yamlhelper import yaml_parse
from samtranslator.translator.transform import transform

from tests.conftest import ROOT

BIN = Path(sys.executable).parent
TOOL_ENV = {**os.environ, "SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": "us-east-1"}


class NoManagedPolicies:
    """samtranslator asks IAM for managed policy ARNs; the template must not need any."""

    def load(self) -> dict[str, str]:
        return {}


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    parsed: dict[str, Any] = yaml_parse((ROOT / "template.yaml").read_text())
    return parsed


# Stack parameters for the expanded template: two EKS clusters, one of them with a name CloudFormation
# cannot use as is in a logical id.
EKS_CLUSTERS = ["prod", "staging_eu"]
PSEUDO = {
    "AWS::StackName": "auditlake",
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
}


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


@pytest.fixture(scope="session")
def expanded(template: dict[str, Any]) -> dict[str, Any]:
    return expand(template, {"EksClusterNames": EKS_CLUSTERS})


@pytest.fixture(scope="session")
def transformed(expanded: dict[str, Any]) -> dict[str, Any]:
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")  # samtranslator builds ARNs for a region
    packaged = copy.deepcopy(expanded)
    for name, resource in packaged["Resources"].items():  # what `sam package` does to local paths
        for key in ("CodeUri", "ContentUri"):
            if key in resource.get("Properties", {}):
                resource["Properties"][key] = f"s3://artifacts/{name}.zip"
    out: dict[str, Any] = transform(packaged, {"AWS::Region": "us-east-1"}, NoManagedPolicies())
    return out


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """`sam build` with BuildMethod makefile, wheels for python3.13 on arm64."""
    build_dir = tmp_path_factory.mktemp("sam") / "build"
    env = {**TOOL_ENV, "PATH": f"{BIN}{os.pathsep}{TOOL_ENV['PATH']}"}
    result = subprocess.run(
        [str(BIN / "sam"), "build", "--template-file", str(ROOT / "template.yaml"), "--build-dir", str(build_dir)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    yield build_dir
    shutil.rmtree(build_dir, ignore_errors=True)
