"""``auditlake hunt``: the detection rules over history, on the local lake (DuckDB) or a stack (Athena).

Output: the matches as findings (``model.FINDING_COLUMNS``) on stdout — table, CSV, or one JSON
array like ``auditlake findings`` — then, on stderr, one summary line per rule: its matches, or
``ingest-only: needs ...`` (the fields the archive does not keep), or the query's error. Exit 1
when a query failed or a rule did not load; an ingest-only rule is reported, not an error.

Locally the hunt reads the compacted archive, as ``auditlake query`` does (run ``auditlake compact``
first). On a stack each rule is one Athena query, a few run at once (``--parallel``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from auditlake import timestamps
from auditlake.cli.options import lake_option
from auditlake.cli.render import err, fail, print_result
from auditlake.local_lake import LocalLake


@click.command()
@click.option(
    "--rules",
    "rule_dirs",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="A directory (or file) of Sigma rules, added to the built-in set; repeatable.",
)
@click.option("--no-builtin-rules", is_flag=True, help="Hunt with the --rules directories only.")
@click.option(
    "--since", default="7d", show_default=True, help="Start: a duration before now (90d, 12h, 30m) or a time."
)
@click.option("--until", help="End (exclusive): a duration before now or a time. Default: now.")
@click.option("--cluster", help="Only this cluster (default: all).")
@lake_option(create=False, required=False)
@click.option("--stack", help="Deployed stack (Athena, in its workgroup and database).")
@click.option("--region", help="AWS region of the stack (default: the SDK's: AWS_REGION or the profile's).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True,
              help="Output: a table, CSV with every column, or ONE JSON array like auditlake findings.")  # fmt: skip
@click.option("--show-sql", is_flag=True, help="Print each rule's SQL (as the engine runs it) on stderr.")
@click.option("--limit", default=1000, show_default=True, help="Rows shown per rule (the summary counts all).")
@click.option("--parallel", default=4, show_default=True, help="Athena queries at once (--stack).")
def hunt(
    rule_dirs: tuple[Path, ...],
    no_builtin_rules: bool,
    since: str,
    until: str | None,
    cluster: str | None,
    lake: Path | None,
    stack: str | None,
    region: str | None,
    fmt: str,
    show_sql: bool,
    limit: int,
    parallel: int,
) -> None:
    """Run the detection rules over the archive: what they would have found, before they page anyone.

    \b
    Examples:
      auditlake hunt --lake /tmp/lake --since 30d --rules ./my-rules
      auditlake hunt --stack my-auditlake --region eu-west-1 --no-builtin-rules --rules ./my-rules --show-sql
    """
    import sqlglot

    from auditlake.detect.sigma import load_rules
    from auditlake.query import hunt as hunting
    from auditlake.query.named import LocalEngine, Result

    if (lake is None) == (stack is None):
        raise click.UsageError("give --lake DIR or --stack NAME")
    now = datetime.now(UTC)
    window = hunting.Window(_instant(since, "--since", now), _instant(until or "0s", "--until", now), cluster)
    if window.since >= window.until:
        raise click.UsageError("--since must be before --until")
    rules = load_rules(list(rule_dirs), builtin=not no_builtin_rules)
    for source, problem in rules.problems:
        err.print(f"[yellow]rule not loaded:[/yellow] {source}: {problem}", highlight=False)
    if not rules.rules and not rules.correlations:
        fail("no rules to hunt with")
    hunts = hunting.compile_rules(rules, window, limit=limit)
    engine: Any
    if lake is not None:
        engine, dialect, parallel = LocalEngine(LocalLake(lake).archive_dir), "duckdb", 1
    else:
        from auditlake.cli.findings import stack_athena

        engine, dialect = stack_athena(str(stack), region), "trino"
    if show_sql:
        for item in hunts:
            if item.query is not None:
                # DuckDB runs the Athena text transpiled (LocalEngine.run): show exactly that.
                sql = (
                    item.sql()
                    if dialect == "trino"
                    else sqlglot.transpile(item.sql(), read="trino", write=dialect, pretty=True)[0]
                )
                err.print(f"-- {item.rule_id}: {item.title}\n{sql};", highlight=False, markup=False)
    outcomes = hunting.run_hunts(hunts, engine, parallel=parallel)
    rows = [row for outcome in outcomes for row in outcome.rows]
    columns = list(rows[0]) if rows else list(_columns())
    if fmt == "json":
        click.echo(json.dumps([_json_row(row) for row in rows], default=str))
    else:
        print_result(Result(columns, [tuple(row.values()) for row in rows]), fmt)
    for outcome in outcomes:
        item = outcome.hunt
        if outcome.error is not None:
            state = f"[red]failed:[/red] {outcome.error}"
        elif item.query is None:
            state = item.reason
        else:
            shown = f" (showing {len(outcome.rows)})" if len(outcome.rows) < outcome.total else ""
            state = f"{outcome.total} matches{shown}"
        err.print(f"{item.rule_id}  {item.level}  {item.title}: {state}", highlight=False)
    if rules.problems or any(outcome.error is not None for outcome in outcomes):
        raise SystemExit(1)


def _instant(value: str, name: str, now: datetime) -> datetime:
    try:
        return timestamps.instant(value, now)
    except ValueError:
        raise click.BadParameter(f"not an ISO 8601 time or a duration like 90d: {value!r}", param_hint=name) from None


def _columns() -> tuple[str, ...]:
    from auditlake.model import FINDING_COLUMN_NAMES

    return FINDING_COLUMN_NAMES


def _plain(value: Any) -> Any:
    """Times in RFC 3339 UTC to the millisecond; the rest as the findings column holds it."""
    if isinstance(value, datetime):
        return timestamps.format_millis(value if value.tzinfo else value.replace(tzinfo=UTC))
    return value


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row as `auditlake findings --format json` prints one: ``details`` an object, not its text."""
    out = {key: _plain(value) for key, value in row.items()}
    if isinstance(out.get("details"), str):
        out["details"] = json.loads(out["details"])
    return out
