"""--help of ingest, serve, backfill and quarantine: examples, and a description for every option."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from auditlake.cli.ingest import backfill, ingest, serve
from auditlake.cli.quarantine import quarantine

COMMANDS: dict[str, click.Command] = {
    "ingest": ingest,
    "serve": serve,
    "backfill": backfill,
    "quarantine": quarantine,
    **{f"quarantine {name}": command for name, command in quarantine.commands.items()},
}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_has_examples_and_every_option_a_description(name: str) -> None:
    command = COMMANDS[name]
    text = CliRunner().invoke(command, ["--help"], terminal_width=200).output
    assert "Examples:\n  auditlake " in text.replace("\n    auditlake", "\n  auditlake")
    assert "\\b" not in text  # click's paragraph mark is the backspace character, not a backslash and b
    undescribed = [p.name for p in command.params if isinstance(p, click.Option) and not p.help]
    assert undescribed == []
