"""The demo and its parts: ``demo`` (the whole pipeline on a local lake), ``synth`` (traffic) and
``replay`` (a webhook client as kube-apiserver is one)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from auditlake.audit.parse import iter_decoded
from auditlake.cli.options import lake_option
from auditlake.cli.render import bytes_progress, err, fail, print_counts
from auditlake.jsonio import dumps_str


def _webhook_url(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    from auditlake.demo.replay import url_problem

    problem = url_problem(value)
    if problem is not None:
        raise click.BadParameter(problem)
    return value


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--url", required=True, callback=_webhook_url,
              help="Webhook URL with its scheme, e.g. http://127.0.0.1:8080/v1/audit (auditlake serve).")  # fmt: skip
@click.option("--token-file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="File holding the bearer token (cluster add writes one).")  # fmt: skip
@click.option("--ca-file", type=click.Path(exists=True, dir_okay=False),
              help="CA bundle to verify an https server with (verification is always on).")  # fmt: skip
@click.option("--batch-size", default=400, show_default=True, type=click.IntRange(1, 10_000),
              help="Events per EventList batch (kube-apiserver's --audit-webhook-batch-max-size).")  # fmt: skip
@click.option("--attempts", default=5, show_default=True, type=click.IntRange(1, 20),
              help="Tries per batch on connection errors, 5xx, 408 and 429 (other 4xx are not retried).")  # fmt: skip
@click.option("--initial-backoff", default=1.0, show_default=True, type=click.FloatRange(min=0),
              help="Seconds before the first retry; grows 1.5x.")  # fmt: skip
def replay(
    file: Path,
    url: str,
    token_file: Path,
    ca_file: str | None,
    batch_size: int,
    attempts: int,
    initial_backoff: float,
) -> None:
    """Send a JSON Lines audit log (gzip or not) to a webhook as kube-apiserver does (EventList batches, retries).

    \b
    Example:
      auditlake serve --lake /tmp/lake --cluster dev --token-file dev.token &
      auditlake replay audit.log --url http://127.0.0.1:8080/v1/audit --token-file dev.token
    """
    from auditlake.demo.replay import Replayer, ReplayError, batches
    from auditlake.ingest.inputs import InputError, open_input

    skipped = 0

    def events(handle: Any) -> Iterator[dict[str, Any]]:
        nonlocal skipped
        for _, value, _ in iter_decoded(handle):
            if isinstance(value, dict):
                yield value
            else:
                skipped += 1

    try:
        replayer = Replayer(
            url, token_file.read_text().strip(), ca_file=ca_file, attempts=attempts, initial_backoff=initial_backoff
        )
        with bytes_progress() as progress, open_input(file) as handle:  # gzip or not (by its magic bytes)
            task = progress.add_task(f"replay {file.name}", total=file.stat().st_size)
            for batch in batches(events(handle), max_events=batch_size):
                replayer.send(batch)
                progress.update(task, completed=handle.tell())
    except (ReplayError, InputError) as exc:
        fail(str(exc))
    stats = replayer.stats
    print_counts(
        "replayed",
        {
            "batches": stats.batches,
            "events": stats.events,
            "retries": stats.retries,
            "splits": stats.splits,
            "rejected batches": stats.rejected,
            "skipped lines": skipped,
            **stats.totals,
        },
    )


@click.command()
@click.option("--minutes", default=30.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Minutes of traffic to write.")  # fmt: skip
@click.option("--rate", default=20.0, show_default=True, type=click.FloatRange(min=0, min_open=True), help="Events/s.")
@click.option("--seed", default=7, show_default=True, type=int, help="Random seed: the same seed, the same story.")
@click.option(
    "--start",
    type=click.DateTime(["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"]),
    help="UTC start (default: now - minutes).",
)
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The audit log to write (JSON Lines, as kube-apiserver's log backend writes).")  # fmt: skip
@click.option(
    "--events-out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the Kubernetes Events of the same story here (JSON Lines).",
)
def synth(minutes: float, rate: float, seed: int, start: datetime | None, out: Path, events_out: Path | None) -> None:
    """Write realistic synthetic audit traffic with planted incidents as JSON Lines.

    \b
    Examples:
      auditlake synth --minutes 60 --out audit.log --events-out events.jsonl
      auditlake synth --start 2026-11-01T00:00 --out november.log
    """
    from auditlake.demo.synth import Synth

    generator = Synth(minutes=minutes, rate=rate, seed=seed, start=start.replace(tzinfo=UTC) if start else None)
    out.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with out.open("w", encoding="utf-8") as handle:
        for event in generator.events():
            handle.write(dumps_str(event) + "\n")
            count += 1
    err.print(f"wrote {count} audit events ({minutes:g} min from {generator.start:%Y-%m-%dT%H:%M}Z) to {out}")
    if events_out is not None:
        kube_events = generator.kube_events()
        events_out.write_text("".join(dumps_str(e) + "\n" for e in kube_events), encoding="utf-8")
        err.print(f"wrote {len(kube_events)} Kubernetes Events to {events_out}")


@click.command()
@lake_option(check=False)
@click.option("--minutes", default=30.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Minutes of synthetic traffic (ending now).")  # fmt: skip
@click.option("--rate", default=20.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Audit events per second.")  # fmt: skip
@click.option("--seed", default=7, show_default=True, type=int, help="Random seed: the same seed, the same story.")
def demo(lake: Path, minutes: float, rate: float, seed: int) -> None:
    """synth -> serve (real HTTP) <- replay -> local lake, then a summary.

    The lake is replaced on the next run when the demo made it; any other non-empty directory is
    refused.

    \b
    Example:
      auditlake demo --lake /tmp/auditlake-demo
      auditlake query --list
      auditlake query identity_timeline --lake /tmp/auditlake-demo --param identity=mallory@example.com
    """
    from auditlake.demo.run import run_demo

    try:
        run_demo(lake, minutes=minutes, rate=rate, seed=seed)
    except SystemExit as exc:
        if isinstance(exc.code, str):  # run_demo's refusal (a lake it did not make): one error line
            fail(exc.code.replace("; choose", " (choose") + ")" if "; choose" in exc.code else exc.code)
        raise
