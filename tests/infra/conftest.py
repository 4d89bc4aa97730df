"""Fixtures of the template tier: template.yaml parsed, expanded and transformed (tests/iam/template.py,
shared with the IAM check), and one `sam build`."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import BIN, ROOT, TOOL_ENV
from tests.iam.template import EKS_CLUSTERS, expand, parse, transform


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    return parse((ROOT / "template.yaml").read_text())


@pytest.fixture(scope="session")
def expanded(template: dict[str, Any]) -> dict[str, Any]:
    return expand(template, {"EksClusterNames": EKS_CLUSTERS})


@pytest.fixture(scope="session")
def transformed(expanded: dict[str, Any]) -> dict[str, Any]:
    return transform(expanded)


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
