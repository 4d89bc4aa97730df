"""``auditlake query`` (named queries or SQL, on the local lake or Athena) and ``summary``.

An answer explains itself: a query that returns no rows says which window it read and what the
lake holds (the days of its archive partitions, and locally the raw objects not compacted yet), with
the ``--param since=...`` that would reach them; a reversed window, an unknown parameter (with the
closest valid one) and SQL an engine refuses are one ``error:`` line each.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich import box
from rich.console import Console
from rich.table import Table

from auditlake.cli.options import complete_query_name, complete_query_param, lake_option
from auditlake.cli.render import err, fail, print_result
from auditlake.cli.stack import ARCHIVE_BUCKETS, ATHENA_WORKGROUP, GLUE_DATABASE, RAW_BUCKET, stack_outputs
from auditlake.jsonio import dumps_str
from auditlake.local_lake import LocalLake
from auditlake.query.summary import (
    KindContents,
    LakeContents,
    StackContents,
    StackKind,
    contents,
    stack_contents,
)

if TYPE_CHECKING:
    from auditlake.query.named import AthenaEngine, LocalEngine


class _QueryCommand(click.Command):
    """``query --help`` ends with every named query, its parameters and defaults, and what it answers:
    read from the query files when help is asked for, not when any command starts."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from auditlake.query import named as queries

        super().format_epilog(ctx, formatter)
        rows = []
        for name in queries.names():
            named = queries.load(name)
            rows.append((name, f"[{named.usage()}] {_first_sentence(named.description)}"))
        with formatter.section("Named queries [parameters, =default; no default: required]"):
            formatter.write_dl(rows)
            formatter.write_paragraph()
            formatter.write_text(
                "Every query also takes since and until (ISO 8601 or a duration before now like 7d; "
                "default: the last 24 hours) and cluster (default: all)."
            )


def _first_sentence(text: str) -> str:
    match = re.match(r"(.+?\.)(\s|$)", text)
    return match.group(1) if match else text


@click.command(cls=_QueryCommand)
@click.argument("name", required=False, shell_complete=complete_query_name)
@click.option("--param", "params", multiple=True, metavar="K=V", shell_complete=complete_query_param,
              help="A query parameter (repeatable): its own (see below), since, until, cluster.")  # fmt: skip
@click.option("--sql", help="Run this SQL (Athena dialect) instead of a named query; tables: audit, events, "
                            "findings (DESCRIBE audit lists the columns), their _live views add the newest "
                            "raw rows.")  # fmt: skip
@lake_option(create=False, required=False)
@click.option("--athena", is_flag=True, help="Run on Athena in a deployed stack's workgroup (see --stack).")
@click.option("--workgroup", help="Athena workgroup (default: the stack's).")
@click.option("--database", help="Glue database (default: the stack's).")
@click.option("--stack", help="Deployed stack: its workgroup and database are looked up in its Outputs.")
@click.option("--region", help="AWS region of the stack or workgroup (default: the SDK's, e.g. AWS_REGION).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True,
              help="table (a row per field when too wide), csv, or json (one object per line).")  # fmt: skip
@click.option("--list", "list_", is_flag=True, help="List the named queries, their parameters and what they answer.")
def query(
    name: str | None,
    params: tuple[str, ...],
    sql: str | None,
    lake: Path | None,
    athena: bool,
    workgroup: str | None,
    database: str | None,
    stack: str | None,
    region: str | None,
    fmt: str,
    list_: bool,
) -> None:
    """Run a named security query, or --sql, on the local lake or on Athena.

    A query that returns no rows says which window it read and which days the lake holds.

    \b
    Examples:
      auditlake query secret_changes --lake demo-lake --param namespace=prod
      auditlake query denials --lake demo-lake --param since=7d
      auditlake query object_history --lake demo-lake --param resource=pods \\
          --param namespace=prod --param name=web-0 --param since=2026-11-20T00:00:00Z
      auditlake query forbidden_bursts --athena --stack my-auditlake --param threshold=20
      auditlake query --sql "SELECT verb, count(*) AS n FROM audit GROUP BY verb" --lake demo-lake
      auditlake query --sql "DESCRIBE audit" --lake demo-lake
    """
    from auditlake.query import named as queries

    if list_:
        for known in queries.names():
            q = queries.load(known)
            err.print(f"[bold]{known}[/bold] ({q.usage()}): {q.description}", highlight=False)
        return
    if (name is None) == (sql is None):
        raise click.UsageError("give a query NAME or --sql (auditlake query --list shows the names)")
    given = dict(_pair(p) for p in params)
    now = datetime.now(UTC)
    window: tuple[str, str] | None = None
    try:
        if sql is not None:
            if given:
                raise click.UsageError("--param is for named queries: write the values into --sql")
            text, values = sql, []
        else:
            named = queries.load(name or "")
            text, values = named.sql, named.bind(given, now=now)
            window = queries.time_bounds(given.get("since"), given.get("until"), now)
        local: LocalLake | None = None
        if athena:
            engine: LocalEngine | AthenaEngine = athena_engine(workgroup, database, stack, region=region)
        elif lake is not None:
            local = LocalLake(lake)  # the archive, and the raw landing the *_live views add
            engine = queries.LocalEngine(local.archive_dir, local.root, now=now)
        else:
            raise click.UsageError("give --lake DIR (or set AUDITLAKE_LAKE) or --athena")
        result = engine.run(text, values)
    except queries.QueryError as exc:
        fail(str(exc))
    if result.rows:
        print_result(result, fmt)
        return
    if fmt == "csv":  # the header, so a pipe still gets a well-formed file
        print_result(result, fmt)
    err.print(_no_rows(engine, text, window, local), highlight=False)


def _no_rows(engine: Any, sql: str, window: tuple[str, str] | None, local: LocalLake | None) -> str:
    """Why there is nothing: the window read, what the lake holds of the data the query reads, and
    (when the window misses all of it) the parameters that would reach it."""
    from auditlake.query.named import HELD_KINDS

    said = "0 rows" if window is None else f"0 rows between {_minute(window[0])} and {_minute(window[1])}"
    held = engine.held()
    if held is None:
        return said
    read = [kind for kind in HELD_KINDS if re.search(rf"\b{kind}(_live|_raw)?\b", sql, re.IGNORECASE)]
    spans = {kind: held[kind] for kind in (read or HELD_KINDS)}
    parts = [f"{kind} {span[0]}..{span[1]}" for kind, span in spans.items() if span is not None]
    if parts:
        said += "; this lake holds " + ", ".join(parts)
    else:
        said += "; this lake's archive holds no " + " or ".join(spans) + " yet"
    pending = _pending(local)
    if pending and local is not None:
        said += f"; {pending} raw objects are not compacted yet (auditlake compact --lake {local.root})"
    days = [span for span in spans.values() if span is not None]
    if window is not None and days:
        first, last = min(d[0] for d in days), max(d[1] for d in days)
        if not (window[0][:10] <= last and window[1][:10] >= first):  # the window misses every held day
            after = (datetime.fromisoformat(last) + timedelta(days=1)).date().isoformat()
            said += f" (use --param since={first} --param until={after})"
    return said


def _pending(local: LocalLake | None) -> int:
    """The local lake's raw objects not archived yet (older than the live views' hours, a query sees
    them only once compacted)."""
    if local is None:
        return 0
    from auditlake.query.summary import pending_raw_objects

    return pending_raw_objects(local.store(), local.compacted_hours().compacted)


def _minute(moment: str) -> str:
    """2026-11-29T06:24:10.000Z -> 2026-11-29T06:24Z (the window as people read it)."""
    return moment[:16] + "Z"


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise click.BadParameter(f"expected K=V, got {text!r}", param_hint="--param")
    return key.strip(), value


def athena_engine(workgroup: str | None, database: str | None, stack: str | None, *, region: str | None = None) -> Any:
    """The Athena engine of ``--athena``: the workgroup and database given, else the stack's Outputs.

    Shared with ``auditlake hunt --stack`` so both resolve a stack's Athena the same way. Its Glue and
    S3 clients tell what the archive holds when a query returns no rows.
    """
    import boto3

    from auditlake.query.named import AthenaEngine

    session = boto3.session.Session(region_name=region)
    if stack is not None:
        outputs = stack_outputs(session, stack)
        workgroup = workgroup or outputs.get(ATHENA_WORKGROUP)
        database = database or outputs.get(GLUE_DATABASE)
    if not workgroup or not database:
        raise click.UsageError("--athena needs --stack, or --workgroup and --database")
    return AthenaEngine(
        session.client("athena"), workgroup, database, glue=session.client("glue"), s3=session.client("s3")
    )


@click.command()
@lake_option(create=False, required=False)
@click.option("--stack", help="A deployed stack instead: what its buckets hold, from S3 listings only.")
@click.option("--region", help="AWS region of the stack (default: the SDK's, e.g. AWS_REGION).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object (per data class, the counts and clusters).")
def summary(lake: Path | None, stack: str | None, region: str | None, as_json: bool) -> None:
    """What is in my lake? Per data class (audit, Events, findings): rows archived and raw, raw
    objects archived or waiting for compact, archive files sealed by a digest or not, quarantined
    items, and per cluster the rows and the time range; the alerts sent.

    With --stack, what a deployed stack's buckets hold, from S3 LIST requests alone (nothing is read,
    no Athena query runs): per data class the archive files, their size and first and last day, the
    raw objects and quarantine manifests; and the digests. Row counts there: auditlake query --athena.

    \b
    Examples:
      auditlake summary --lake demo-lake
      auditlake summary --lake demo-lake --json | jq .audit.clusters
      auditlake summary --stack my-auditlake --region eu-west-1
    """
    if stack is not None and lake is None:
        deployed = _stack_contents(stack, region)
        if as_json:
            click.echo(dumps_str(deployed.as_dict()))
        else:
            print_stack_contents(deployed, stack)
    elif lake is not None and stack is None:
        local = LocalLake(lake)
        held = contents(local.store(), local.archive(), local.compacted_hours().compacted, local.alerts_dir)
        if as_json:
            click.echo(dumps_str(held.as_dict()))
        else:
            print_contents(held, lake)
    else:
        raise click.UsageError("give --lake DIR (or set AUDITLAKE_LAKE) or --stack NAME")


def _stack_contents(stack: str, region: str | None) -> StackContents:
    import boto3

    session = boto3.session.Session(region_name=region)
    outputs = stack_outputs(session, stack)
    buckets = {kind: outputs[output] for kind, output in ARCHIVE_BUCKETS.items()}
    return stack_contents(session.client("s3"), outputs[RAW_BUCKET], buckets)


def print_stack_contents(held: StackContents, stack: str, console: Console | None = None) -> None:
    """``summary --stack`` as a table with one column per data class."""
    out = console or Console()
    kinds = list(held.kinds.values())
    counts = Table(title=f"What stack {stack} holds (S3 listings)", title_justify="left", box=box.SIMPLE_HEAD)
    counts.add_column("")
    for kind in kinds:
        counts.add_column(kind.kind, justify="right")
    lines: list[tuple[str, Callable[[StackKind], str]]] = [
        ("archive files", lambda k: f"{k.files:,}"),
        ("  size", lambda k: _size(k.bytes)),
        ("  first day", lambda k: k.first_day or "-"),
        ("  last day", lambda k: k.last_day or "-"),
        ("raw objects (kept days)", lambda k: f"{k.raw_objects:,}"),
        ("quarantined batches", lambda k: f"{k.quarantined:,}"),
        ("  retried since", lambda k: f"{k.retried:,}"),
    ]
    for label, value in lines:
        counts.add_row(label, *(value(kind) for kind in kinds))
    out.print(counts)
    newest = f", newest {held.newest_digest}" if held.newest_digest else ""
    out.print(f"digests: {held.digests}{newest} (auditlake verify --stack {stack} proves them)",
              highlight=False, soft_wrap=True)  # fmt: skip
    if any(kind.quarantined for kind in kinds):
        out.print(f"see them: auditlake quarantine list --stack {stack}", highlight=False, soft_wrap=True)


def _size(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{count} B"


def print_contents(held: LakeContents, lake: Path, console: Console | None = None) -> None:
    """``summary`` as two tables that fit 80 columns: the counts with one column per data class, then
    one row per data class and cluster with its time range."""
    out = console or Console()
    kinds = list(held.kinds.values())
    total = {kind.kind: kind.archived_rows + kind.raw_rows for kind in kinds}
    out.print(f"{total['audit']} audit records, {total['events']} Events, {total['findings']} findings",
              highlight=False, soft_wrap=True)  # fmt: skip
    counts = Table(title="What the lake holds", title_justify="left", box=box.SIMPLE_HEAD)
    counts.add_column("")
    for kind in kinds:
        counts.add_column(kind.kind, justify="right")
    lines: list[tuple[str, Callable[[KindContents], int]]] = [
        ("rows archived", lambda k: k.archived_rows),
        ("rows not compacted yet", lambda k: k.raw_rows),
        ("raw objects", lambda k: k.raw_objects),
        ("  not compacted yet", lambda k: k.raw_pending),
        ("archive files", lambda k: k.archived_files),
        ("  sealed (in a digest)", lambda k: k.sealed_files),
        ("  not sealed yet", lambda k: k.unsealed_files),
        ("quarantined items", lambda k: k.quarantined_items),
        ("  retried since", lambda k: k.quarantined_retried),
    ]
    for label, value in lines:
        counts.add_row(label, *(f"{value(kind):,}" for kind in kinds))
    out.print(counts)
    clusters = Table(title="By cluster (UTC; raw: rows not compacted yet)", title_justify="left", box=box.SIMPLE_HEAD)
    # Names and counts are never cut; on a narrow terminal the times wrap between date and hour.
    names = max((len(name) for kind in kinds for name in kind.clusters), default=7)
    for column in ("data", "cluster", "rows", "raw", "first", "last"):
        clusters.add_column(column, justify="right" if column in ("rows", "raw") else "left",
                            no_wrap=column not in ("first", "last"),
                            min_width={"cluster": names, "first": 10, "last": 10}.get(column))  # fmt: skip
    for kind in kinds:
        for cluster, span in sorted(kind.clusters.items()):
            clusters.add_row(kind.kind, cluster, f"{span.archived + span.raw:,}", f"{span.raw:,}",
                             _minute_of(span.first), _minute_of(span.last))  # fmt: skip
    if clusters.row_count:
        out.print(clusters)
    else:
        out.print("no rows in the lake yet (auditlake ingest, serve or poll bring them in)", soft_wrap=True)
    audit = held.audit
    if audit.levels:
        rows = Table(title="Audit records", title_justify="left", box=box.SIMPLE_HEAD, show_header=False)
        rows.add_column("", no_wrap=True)
        rows.add_column("")
        rows.add_row("by level", _top(audit.levels))
        rows.add_row("by stage", _top(audit.stages))
        rows.add_row("by verb", _top(audit.verbs, 8))
        rows.add_row("redacted (secret bodies removed)", f"{audit.redacted:,}")
        rows.add_row("403 responses", f"{audit.forbidden:,}")
        out.print(rows)
    alerts = ", ".join(f"{level} {count}" for level, count in held.alerts.most_common()) or "none"
    out.print(f"alerts sent: {sum(held.alerts.values())} ({alerts})", highlight=False, soft_wrap=True)
    out.print(f"digests: {held.digests} (auditlake digest seals new files; auditlake verify proves them intact)",
              highlight=False, soft_wrap=True)  # fmt: skip
    if any(kind.raw_pending for kind in kinds):
        out.print(
            "not compacted yet: queries see only their newest hours until auditlake compact",
            highlight=False,
            soft_wrap=True,
        )
    for reason, count in held.quarantine_reasons.most_common(5):
        out.print(f"quarantined: {count} x {reason}", highlight=False, soft_wrap=True)
    if held.quarantine_reasons:
        out.print(f"see them: auditlake quarantine list --lake {lake}", highlight=False, soft_wrap=True)


def _top(counter: Counter[str], n: int = 6) -> str:
    return ", ".join(f"{key} {count:,}" for key, count in counter.most_common(n)) or "-"


def _minute_of(moment: str | None) -> str:
    """2026-11-29T06:24:10.123Z -> 2026-11-29 06:24."""
    return "" if moment is None else moment[:16].replace("T", " ")
