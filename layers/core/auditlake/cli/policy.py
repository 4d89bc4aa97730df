"""``auditlake policy``: evaluate and lint audit policies."""

from __future__ import annotations

from pathlib import Path

import click

from auditlake.audit.parse import iter_decoded
from auditlake.audit.policy import PolicyError, attributes_of, load_policy
from auditlake.audit.policy_lint import lint
from auditlake.cli.render import err, fail
from auditlake.jsonio import dumps_str


@click.group()
def policy() -> None:
    """Evaluate and check audit policies."""


@policy.command("eval")
@click.option("--policy", "policy_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The audit policy (audit.k8s.io/v1 Policy, YAML).")  # fmt: skip
@click.option("--events", "events_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Audit events, JSON Lines (an audit log).")  # fmt: skip
def policy_eval(policy_file: Path, events_file: Path) -> None:
    """One JSON line per event: the level the policy gives it and whether its stage is omitted.

    \b
    Example:
      auditlake policy eval --policy audit-policy.yaml --events audit.log | grep '"level":"None"'
    """
    try:
        compiled = load_policy(policy_file.read_bytes())
    except PolicyError as exc:
        fail("; ".join(exc.errors))
        return
    with events_file.open("rb") as handle:
        for line, event, error in iter_decoded(handle):
            if error is not None:
                click.echo(dumps_str({"line": line.number, "error": error}))
                continue
            if not isinstance(event, dict):
                click.echo(dumps_str({"line": line.number, "error": "not a JSON object"}))
                continue
            decision = compiled.evaluate(attributes_of(event))
            stage = event.get("stage")
            click.echo(
                dumps_str(
                    {
                        "auditID": event.get("auditID"),
                        "stage": stage,
                        "level": decision.level,
                        "omitted": decision.drops(str(stage)),
                        "rule": decision.rule_index,
                    }
                )
            )


@policy.command("lint")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--strict", is_flag=True, help="Exit 1 on warnings too.")
def policy_lint(file: Path, strict: bool) -> None:
    """Warn about secret bodies logged, RequestReceived kept, and rules shadowed by earlier ones.

    \b
    Example:
      auditlake policy lint audit-policy.yaml --strict
    """
    try:
        warnings = lint(load_policy(file.read_bytes()))
    except PolicyError as exc:
        for error in exc.errors:
            err.print(f"[red]error:[/red] {error}", highlight=False)
        raise SystemExit(1) from None
    for warning in warnings:
        err.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
    if not warnings:
        err.print(f"{file}: no findings")
    if warnings and strict:
        raise SystemExit(1)
