"""The stack Outputs the CLI reads (cli/stack.py) are template.yaml's Outputs: renaming one on one side
only fails here, and no other CLI module spells an Output's name as a string of its own."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from auditlake.cli import stack

CLI = Path(stack.__file__).parent


def _names() -> dict[str, str]:
    """The Output names cli/stack.py defines: constant name -> Output name."""
    return {name: value for name, value in vars(stack).items() if name.isupper() and isinstance(value, str)}


def test_every_output_name_the_cli_reads_is_an_output_of_the_template(template: dict[str, Any]) -> None:
    outputs = set(template["Outputs"])
    names = _names()
    assert names, "cli/stack.py defines no Output name"
    missing = {constant: value for constant, value in names.items() if value not in outputs}
    assert not missing, f"not Outputs of template.yaml (renamed on one side only?): {missing}"


def test_grouped_names_come_from_the_constants() -> None:
    names = set(_names().values())
    assert set(stack.REQUIRED_OUTPUTS) <= names
    assert set(stack.ARCHIVE_BUCKETS.values()) <= names


def test_no_cli_module_spells_an_output_name(template: dict[str, Any]) -> None:
    outputs = set(template["Outputs"])
    spelled = [
        f"{path.name}:{node.lineno} {node.value!r}"
        for path in sorted(CLI.glob("*.py"))
        if path.name != "stack.py"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and node.value in outputs
    ]
    assert not spelled, f"use the names in cli/stack.py: {spelled}"


def test_outputs_of_reads_a_description() -> None:
    description = {"Outputs": [{"OutputKey": stack.STATE_TABLE, "OutputValue": "t"}]}
    assert stack.outputs_of(description) == {stack.STATE_TABLE: "t"}
    assert stack.outputs_of({}) == {}
