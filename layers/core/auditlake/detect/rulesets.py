"""The rules a deployed function loads, without pySigma: compiled JSON (``detect/ir.py``'s form).

``builtin_rules()``: the built-in set, from ``builtin.json`` beside this module when the core layer's
build wrote it (``python -m auditlake.detect.rulesets OUT.json``, run by layers/core/Makefile), else
compiled from the YAML with pySigma (the CLI, the tests: pySigma is a dependency of the package,
not of the layer). ``load_compiled(data)``: a pushed custom set (``auditlake rules push``).
Neither this module nor the engine imports pySigma at module level: the webhook and the forwarder
are not allowed to (``make lint``).
"""

from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path

from auditlake.detect import ir
from auditlake.jsonio import JSONError, dumps, loads

COMPILED_BUILTIN = Path(__file__).parent / "builtin.json"


@lru_cache(maxsize=1)
def builtin_rules() -> ir.RuleSet:
    if COMPILED_BUILTIN.is_file():
        return load_compiled(COMPILED_BUILTIN.read_bytes())
    from auditlake.detect.sigma import load_rules  # the CLI's path: pySigma is there

    return load_rules([], builtin=True)


def load_compiled(data: bytes) -> ir.RuleSet:
    """Compiled rules from their JSON form; ValueError with a one-line reason when it is not one."""
    try:
        document = loads(data)
    except JSONError as exc:
        raise ValueError(f"compiled rules are not JSON: {exc.reason}") from None
    if not isinstance(document, dict) or not isinstance(document.get("rules", []), list):
        raise ValueError("compiled rules must be an object with a 'rules' list")
    try:
        return ir.from_json(document)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"compiled rules do not have the expected shape: {exc}") from None


def compiled(rules: ir.RuleSet) -> bytes:
    """The JSON form of ``rules`` (what ``load_compiled`` reads)."""
    return dumps(ir.to_json(rules))


def compile_builtin(path: Path) -> int:
    """Write the built-in set's JSON to ``path``; the number of rules. Refuses a set with problems."""
    from auditlake.detect.sigma import load_rules

    rules = load_rules([], builtin=True)
    if rules.problems:
        raise ValueError("; ".join(f"{source}: {problem}" for source, problem in rules.problems))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(compiled(rules))
    return len(rules.rules) + len(rules.correlations)


if __name__ == "__main__":  # python -m auditlake.detect.rulesets OUT.json (the layer's build)
    if len(sys.argv) != 2:
        sys.exit("usage: python -m auditlake.detect.rulesets OUT.json")
    print(f"{compile_builtin(Path(sys.argv[1]))} rules compiled to {sys.argv[1]}")
