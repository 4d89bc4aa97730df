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


@pytest.fixture(scope="session")
def transformed(template: dict[str, Any]) -> dict[str, Any]:
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")  # samtranslator builds ARNs for a region
    packaged = copy.deepcopy(template)
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
