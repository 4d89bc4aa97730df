"""How the CLI prints: diagnostics on stderr (one line each), results (tables, CSV, JSON lines) on stdout."""

from __future__ import annotations

import csv
import sys
from datetime import UTC, datetime
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from auditlake.jsonio import dumps_str
from auditlake.query.summary import LakeSummary
from auditlake.timestamps import format_millis

err = Console(stderr=True, soft_wrap=True)  # diagnostics stay one line each, whatever the path length


def fail(message: str) -> NoReturn:
    err.print(f"[red]error:[/red] {message}")
    raise SystemExit(1)


def print_counts(title: str, counts: dict[str, int]) -> None:
    err.print(f"{title}: " + ", ".join(f"{k} {v}" for k, v in counts.items()), highlight=False)


def bytes_progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn(), console=err)


def print_result(result: Any, fmt: str, console: Console | None = None, title: str | None = None) -> None:
    def text(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, datetime):
            return format_millis(value if value.tzinfo else value.replace(tzinfo=UTC))
        if isinstance(value, list):
            return ", ".join(text(v) for v in value)
        return str(value)

    if fmt == "json":
        for row in result.rows:
            click.echo(
                dumps_str(
                    {c: (text(v) if isinstance(v, datetime) else v) for c, v in zip(result.columns, row, strict=True)}
                )
            )
    elif fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(result.columns)
        writer.writerows([text(v) for v in row] for row in result.rows)
    else:
        out = console or Console()
        if out.width // max(len(result.columns), 1) >= 14:
            table = Table(title=title, title_justify="left")
            for column in result.columns:
                table.add_column(column, overflow="fold")
            for row in result.rows:
                table.add_row(*(text(v) for v in row))
            out.print(table)
        else:  # too many columns for the width: one block per row, like psql's expanded display
            width = max(len(c) for c in result.columns)
            for number, row in enumerate(result.rows, start=1):
                out.print(f"[bold]-- row {number}[/bold]")
                for column, value in zip(result.columns, row, strict=True):
                    if value is not None and value != []:
                        out.print(f"{column:>{width}}  {text(value)}", highlight=False, soft_wrap=True)
        (console or err).print(f"{len(result.rows)} rows", highlight=False)


def print_summary(s: LakeSummary, console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title=f"{s.records} audit records in {s.raw_objects} raw objects", show_header=False)
    table.add_row("clusters", _top(s.clusters))
    table.add_row("by level", _top(s.levels))
    table.add_row("by stage", _top(s.stages))
    table.add_row("by verb", _top(s.verbs, 8))
    table.add_row("redacted (secret bodies removed)", str(s.redacted))
    table.add_row("403 responses", str(s.forbidden))
    table.add_row("quarantined items", f"{s.quarantined_items} in {s.quarantined_batches} batches")
    for reason, count in s.quarantine_reasons.most_common(5):
        table.add_row("  quarantine reason", f"{count} x {reason}")
    table.add_row("findings", f"{s.findings_raw} raw ({_top(s.finding_levels)}), {s.findings_archived} archived")
    console.print(table)


def _top(counter: Any, n: int = 6) -> str:
    return ", ".join(f"{k} {v}" for k, v in counter.most_common(n)) or "-"
