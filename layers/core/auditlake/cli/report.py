"""``auditlake report``: one self-contained HTML page over a window of a local lake or a deployed stack.

The data comes from the report's queries and the named queries (auditlake.report), run by the engine
``auditlake query`` uses (DuckDB on the lake, Athena in the stack's workgroup); the sealed/unsealed
state from the digest chain exactly as ``auditlake verify`` reads it (never creating a key).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from auditlake.cli.options import lake_option
from auditlake.cli.render import err, fail
from auditlake.cli.stack import (
    ATHENA_WORKGROUP,
    GLUE_DATABASE,
    stack_outputs,
)
from auditlake.local_lake import LocalLake
from auditlake.timestamps import format_seconds, instant


@click.command()
@lake_option(create=False, required=False)
@click.option("--stack", help="Deployed stack to report on: Athena in its workgroup, its archive buckets' digests.")
@click.option("--region", help="AWS region of --stack (default: the SDK's, e.g. AWS_REGION).")
@click.option(
    "--since",
    help="Start of the window: ISO 8601 (UTC without a zone) or a duration before now (90m, 12h, 7d).  [default: 24h]",
)
@click.option("--until", help="End of the window (excluded), as --since.  [default: now]")
@click.option("--cluster", default="", help="Only this cluster.  [default: every cluster]")
@click.option(
    "--top",
    default=10,
    show_default=True,
    type=click.IntRange(1, 50),
    help="How many identities, verbs, resources and objects to rank, and draw timelines of.",
)
@click.option(
    "--burst-threshold",
    default=10,
    show_default=True,
    type=click.IntRange(1),
    help="Denials within one minute that make a burst (forbidden_bursts' threshold).",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="The HTML file to write (one file, opens offline).",
)
def report(
    lake: Path | None,
    stack: str | None,
    region: str | None,
    since: str | None,
    until: str | None,
    cluster: str,
    top: int,
    burst_threshold: int,
    out: Path,
) -> None:
    """Write one self-contained HTML report: activity per cluster, 403s per minute with bursts marked,
    timelines of the top identities and objects, top identities/verbs/resources, findings, coverage
    gaps and the archive's sealed/unsealed state.

    The page inlines its charting library (Plotly) and loads nothing: open it offline, attach it to a
    ticket. Its data are the answers of the named queries (auditlake query), for the same window.

    \b
    Examples:
      auditlake report --lake ./lake --out report.html
      auditlake report --lake ./lake --since 2026-11-01 --until 2026-11-08 --out week.html
      auditlake report --lake ./lake --since 90m --cluster prod --top 5 --out last-90-minutes.html
      auditlake report --stack auditlake --region eu-west-1 --since 7d --out report.html
    """
    from auditlake.query.named import QueryError
    from auditlake.report.data import gather
    from auditlake.report.page import render

    if (lake is None) == (stack is None):
        raise click.UsageError("give exactly one of --lake DIR, --stack NAME")
    now = datetime.now(UTC)
    try:
        start = instant(since, now) if since else now - timedelta(hours=24)
        end = instant(until, now) if until else now
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since/--until") from None
    if start >= end:
        raise click.BadParameter(
            f"{format_seconds(start)} is not before {format_seconds(end)}", param_hint="--since/--until"
        )
    try:
        if lake is not None:
            engine, findings, archive, source = _local(lake, now)
        else:
            engine, findings, archive, source = _deployed(str(stack), region, now)
        data = gather(
            engine,
            source=source,
            since=start,
            until=end,
            now=now,
            cluster=cluster,
            top=top,
            burst_threshold=burst_threshold,
            findings=findings,
            archive=archive,
        )
    except QueryError as exc:
        fail(str(exc))
    page = render(data)
    try:
        out.write_text(page, encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror or exc} (choose another --out)")
    requests = sum(int(row["requests"]) for row in data.activity)
    if not requests:
        err.print(f"[yellow]{_empty_window(engine, start, end)}[/yellow]", highlight=False)
    err.print(
        f"{requests:,} requests, {len(data.bursts)} bursts, "
        f"{'-' if data.findings is None else len(data.findings)} findings",
        highlight=False,
    )
    click.echo(f"report written to {out} (open file://{out.resolve()})")


def _empty_window(engine: Any, start: datetime, end: datetime) -> str:
    """The line for a window without audit records: which window, what the archive holds (its partition
    days, never its data: ``held``), and how to reach it."""
    said = f"no audit records between {format_seconds(start)} and {format_seconds(end)}"
    held = engine.held()
    span = held.get("audit") if held else None
    if span is None:
        return said + " (widen the window with --since/--until)"
    return f"{said}; this lake holds audit {span[0]}..{span[1]} (use --since {span[0]} --until {span[1]}T23:59:59)"


def _local(lake: Path, now: datetime) -> tuple[Any, Any, Any, str]:
    from auditlake.cli.archive import lake_chain
    from auditlake.query import findings as found
    from auditlake.query.named import LocalEngine
    from auditlake.report.data import ArchiveState
    from auditlake.trust.digest import DigestError
    from auditlake.trust.digest import verify as verify_chain

    local = LocalLake(lake)
    engine = LocalEngine(local.archive_dir, local.root, now=now)

    def findings(since: str, until: str) -> list[dict[str, Any]]:
        result, _ = found.local_findings(engine, local.store(), found.FindingsFilter(since, until))
        return list(found.rows(result))

    try:
        chain = lake_chain(local, None)
        verified = verify_chain(chain.archives, chain.signer, head=chain.head, ledger=chain.ledger, now=now)
        archive = ArchiveState.from_verify(verified)
    except DigestError as exc:
        err.print(f"[yellow]archive state not read:[/yellow] {exc}", highlight=False)
        archive = None
    return engine, findings, archive, f"lake {lake}"


def _deployed(stack: str, region: str | None, now: datetime) -> tuple[Any, Any, Any, str]:
    import boto3

    from auditlake.cli.archive import stack_chain
    from auditlake.query import findings as found
    from auditlake.query.named import AthenaEngine
    from auditlake.report.data import ArchiveState
    from auditlake.trust.digest import verify as verify_chain

    session = boto3.session.Session(region_name=region)
    outputs = stack_outputs(session, stack)
    # glue and s3: what the archive holds (engine.held), named when the window is empty
    engine = AthenaEngine(session.client("athena"), outputs[ATHENA_WORKGROUP], outputs[GLUE_DATABASE],
                          glue=session.client("glue"), s3=session.client("s3"))  # fmt: skip

    def findings(since: str, until: str) -> list[dict[str, Any]]:
        where = found.FindingsFilter(since, until)
        return list(found.rows(engine.run(found.findings_sql("findings_live"), where.values())))

    chain = stack_chain(session, outputs)
    verified = verify_chain(chain.archives, chain.signer, head=chain.head, ledger=chain.ledger, now=now)
    return engine, findings, ArchiveState.from_verify(verified), f"stack {stack}"
