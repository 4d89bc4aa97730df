"""``auditlake query`` (named queries or SQL, on the local lake or Athena) and ``summary``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from auditlake.cli.options import lake_option
from auditlake.cli.render import err, fail, print_result, print_summary
from auditlake.cli.stack import ATHENA_WORKGROUP, GLUE_DATABASE, stack_outputs
from auditlake.local_lake import LocalLake
from auditlake.query.summary import summarise


@click.command()
@click.argument("name", required=False)
@click.option("--param", "params", multiple=True, metavar="K=V", help="Query parameter; repeatable.")
@click.option("--sql", help="Run this SQL (Athena dialect) instead of a named query.")
@click.option("--lake", type=click.Path(file_okay=False, path_type=Path), help="Local lake (DuckDB).")
@click.option("--athena", is_flag=True, help="Run on Athena in a deployed stack's workgroup.")
@click.option("--workgroup", help="Athena workgroup (default: the stack's).")
@click.option("--database", help="Glue database (default: the stack's).")
@click.option("--stack", help="Deployed stack: its workgroup and database are looked up.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@click.option("--list", "list_", is_flag=True, help="List the named queries and their parameters.")
def query(
    name: str | None,
    params: tuple[str, ...],
    sql: str | None,
    lake: Path | None,
    athena: bool,
    workgroup: str | None,
    database: str | None,
    stack: str | None,
    fmt: str,
    list_: bool,
) -> None:
    """Run a named security query (see --list) or --sql, on the local lake or on Athena."""
    from auditlake.query import named as queries

    if list_:
        for known in queries.names():
            q = queries.load(known)
            own = ", ".join(k if v is None else f"{k}={v}" for k, v in q.params.items()) or "-"
            err.print(f"[bold]{known}[/bold] ({own}): {q.description}", highlight=False)
        return
    if (name is None) == (sql is None):
        raise click.UsageError("give a query NAME or --sql")
    given = dict(_pair(p) for p in params)
    try:
        if sql is not None:
            text, values = sql, []
        else:
            named = queries.load(name or "")
            text, values = named.sql, named.bind(given)
        if athena:
            engine: queries.LocalEngine | queries.AthenaEngine = athena_engine(workgroup, database, stack)
        elif lake is not None:
            local = LocalLake(lake)  # the archive, and the raw landing the *_live views add
            engine = queries.LocalEngine(local.archive_dir, local.root)
        else:
            raise click.UsageError("give --lake DIR or --athena")
        result = engine.run(text, values)
    except queries.QueryError as exc:
        fail(str(exc))
        return
    print_result(result, fmt)


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"expected K=V, got {text!r}", param_hint="--param")
    return key.strip(), value


def athena_engine(workgroup: str | None, database: str | None, stack: str | None) -> Any:
    """The Athena engine of ``--athena``: the workgroup and database given, else the stack's Outputs.

    Shared with ``auditlake hunt --stack`` so both resolve a stack's Athena the same way.
    """
    import boto3

    from auditlake.query.named import AthenaEngine

    session = boto3.session.Session()
    if stack is not None:
        outputs = stack_outputs(session, stack)
        workgroup = workgroup or outputs.get(ATHENA_WORKGROUP)
        database = database or outputs.get(GLUE_DATABASE)
    if not workgroup or not database:
        raise click.UsageError("--athena needs --stack, or --workgroup and --database")
    return AthenaEngine(session.client("athena"), workgroup, database)


@click.command()
@lake_option
def summary(lake: Path) -> None:
    """Counts of what the local lake holds."""
    local = LocalLake(lake)
    print_summary(summarise(local.store(), archive=local.archive()))
