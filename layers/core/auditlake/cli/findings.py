"""``auditlake findings``: what the detection rules matched, on a local lake or a deployed stack.

Contract (other tools depend on it): ``--format json`` prints ONE JSON array of objects, each with
every findings column (model.FINDING_COLUMNS: at least ``rule_id``, ``title``, ``level``,
``cluster``, ``audit_id``, ``at``; ``at`` RFC 3339 UTC to the millisecond, ``source_ips`` a list,
``details`` an object), ordered by time; an empty result is ``[]``. ``--level L`` keeps findings at
or above L. ``--since``/``--until`` take what ``auditlake query`` takes (ISO 8601 or ``90d``;
default the last 24 hours). Locally the raw findings not yet compacted are included (a finding
shows right after ingest); on a stack, Athena reads the compacted findings table only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from auditlake.cli.options import lake_option
from auditlake.cli.render import err, fail, print_result
from auditlake.cli.stack import ATHENA_WORKGROUP, GLUE_DATABASE, stack_outputs
from auditlake.jsonio import dumps_str
from auditlake.model import FINDINGS, SIGMA_LEVELS

# The table format's columns (csv and json carry every column).
TABLE_COLUMNS = ("at", "level", "title", "cluster", "identity", "verb", "resource", "namespace", "name", "rule_id")


@click.command()
@lake_option(create=False, required=False)
@click.option("--stack", help="Deployed stack: Athena on its findings table, in its workgroup.")
@click.option("--region", help="AWS region of the stack (default: the SDK's).")
@click.option("--since", help="From this time (ISO 8601 or a duration before now: 90d, 12h). Default: 24h ago.")
@click.option("--until", help="Until this time, excluded (same forms). Default: now.")
@click.option("--level", type=click.Choice(SIGMA_LEVELS), help="Only findings at or above this Sigma level.")
@click.option("--rule", "rule_id", metavar="ID", help="Only this rule's findings (its Sigma id).")
@click.option("--cluster", help="Only this cluster's findings.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True,
              help="Output: a table, CSV with every column, or ONE JSON array of objects.")  # fmt: skip
def findings(
    lake: Path | None,
    stack: str | None,
    region: str | None,
    since: str | None,
    until: str | None,
    level: str | None,
    rule_id: str | None,
    cluster: str | None,
    fmt: str,
) -> None:
    """Findings of the detection rules in a time range (json: one array of objects).

    \b
    Examples:
      auditlake findings --lake /tmp/lake --since 7d --level high
      auditlake findings --stack my-auditlake --region eu-west-1 --format json | jq '.[].title'
    """
    from auditlake.query.findings import FindingsFilter, findings_sql, local_findings, rows
    from auditlake.query.named import LocalEngine, QueryError, Result

    if (lake is None) == (stack is None):
        raise click.UsageError("give exactly one of --lake, --stack")
    try:
        where = FindingsFilter.parse(since, until, level=level, rule_id=rule_id, cluster=cluster)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    try:
        if lake is not None:
            from auditlake.local_lake import LocalLake

            local = LocalLake(lake)
            result, skipped = local_findings(LocalEngine(local.archive_dir), local.store(), where)
            for problem in skipped:
                err.print(f"[yellow]raw finding unreadable, skipped:[/yellow] {problem}", highlight=False)
        else:
            result = stack_athena(str(stack), region).run(findings_sql(f"{FINDINGS.name}_live"), where.values())
            err.print("findings of the last minutes show once the compactor has archived them", highlight=False)
    except QueryError as exc:
        fail(str(exc))
    items = list(rows(result))
    if fmt == "json":
        click.echo(dumps_str(items))
        return
    columns = list(TABLE_COLUMNS) if fmt == "table" else list(result.columns)
    shown = [tuple(_cell(item.get(column)) for column in columns) for item in items]
    print_result(Result(columns, shown), fmt)


def _cell(value: Any) -> Any:
    """A value as the table and CSV show it: ``details`` as compact JSON, lists as they print."""
    return dumps_str(value) if isinstance(value, dict) else value


def stack_athena(stack: str, region: str | None) -> Any:
    """Athena in the stack's workgroup and Glue database (findings, hunt)."""
    import boto3

    from auditlake.query.named import AthenaEngine

    session = boto3.session.Session(region_name=region)
    outputs = stack_outputs(session, stack)
    if not outputs.get(ATHENA_WORKGROUP) or not outputs.get(GLUE_DATABASE):
        fail(f"stack {stack} has no Athena workgroup or Glue database output")
    return AthenaEngine(session.client("athena"), outputs[ATHENA_WORKGROUP], outputs[GLUE_DATABASE])
