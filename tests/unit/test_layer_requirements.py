"""Every library the functions' code imports is shipped to them: in the core layer's requirements,
or in the layer of the one function that uses it (pyarrow: compactor; kubernetes: Events poller),
or in the Lambda runtime (boto3, botocore). A library only the CLI or the layer build imports is
named here with its module. (google-re2 was once imported by the rules' compiler and missing from
the layer: every ingest function would have failed its cold start, and no test on this x86 machine
imports the aarch64 layer.)"""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

from tests.helpers import ROOT

CORE = ROOT / "layers" / "core"
RUNTIME = {"boto3", "botocore"}  # the python3.13 Lambda runtime's
OTHER_LAYERS = {"pyarrow": "layers/arrow", "kubernetes": "layers/kube", "urllib3": "layers/kube"}
# Modules no function imports, and the libraries they may (import-linter keeps the functions from them).
NOT_IN_FUNCTIONS = {
    "detect/sigma.py": {"pySigma"},  # the CLI and the layer build compile Sigma; functions load JSON
    "query/hunt.py": {"sqlglot"},  # auditlake hunt, on the operator's machine
    "clusters/serve_tls.py": {"cryptography"},  # auditlake cluster add: the certificate serve presents
}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503


def requirements(path: Path) -> set[str]:
    names = set()
    for text in path.read_text().splitlines():
        line = text.split("#", 1)[0].strip()
        if line:
            names.add(canonical(re.split(r"[=<>\[ ;]", line, maxsplit=1)[0]))
    return names


def module_level_imports(path: Path) -> set[str]:
    tops = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            tops |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            tops.add(node.module.split(".")[0])
    return {t for t in tops if t not in sys.stdlib_module_names and t not in {"auditlake", "__future__"}}


def test_every_library_the_functions_import_is_in_a_layer_they_have() -> None:
    shipped = requirements(CORE / "requirements.txt")
    distributions = packages_distributions()
    missing = []
    for path in sorted((CORE / "auditlake").rglob("*.py")):
        relative = path.relative_to(CORE / "auditlake").as_posix()
        if relative.split("/")[0] in {"cli", "demo"}:
            continue
        for top in module_level_imports(path):
            (dist, *_) = distributions.get(top, [top])
            if top in RUNTIME or canonical(dist) in shipped or dist in NOT_IN_FUNCTIONS.get(relative, set()):
                continue
            if top in OTHER_LAYERS and (ROOT / OTHER_LAYERS[top] / "requirements.txt").exists():
                assert canonical(dist) in requirements(ROOT / OTHER_LAYERS[top] / "requirements.txt"), (relative, top)
                continue
            missing.append(f"{relative} imports {top} ({dist}): not in layers/core/requirements.txt")
    assert missing == []
