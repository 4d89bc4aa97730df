"""``auditlake quarantine list|show|retry``: what was quarantined, why, and re-ingesting it after a fix.

On a local lake (``--lake``) or a deployed stack's raw bucket (``--stack``, its ``quarantine/``
prefix, with the caller's own AWS credentials: s3:ListBucket and s3:GetObject to look, s3:PutObject
to retry). The model and the exactly-once rule are ``ingest.quarantine``'s. Nothing printed here is
secret material: ``show`` prints manifests as stored (redacted) and never a payload kept unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, TypeVar

import click

from auditlake.cli.options import build_pipeline, lake_option, pipeline_options
from auditlake.cli.render import err, fail, print_counts, print_result

if TYPE_CHECKING:
    from auditlake.ingest.quarantine import Entry
    from auditlake.stores import Store

F = TypeVar("F", bound=Callable[..., Any])


def where_options(func: F) -> F:
    """``--lake DIR`` or ``--stack NAME [--region R]``: whose quarantine."""
    func = click.option("--region", help="AWS region of the stack (default: the SDK's, e.g. AWS_REGION).")(func)
    func = click.option(
        "--stack", help="Deployed stack: its raw bucket's quarantine/ prefix, read with your AWS credentials."
    )(func)
    return lake_option(create=False, required=False)(func)


def open_store(lake: Path | None, stack: str | None, region: str | None) -> Store:
    if (lake is None) == (stack is None):
        raise click.UsageError("give exactly one of --lake, --stack")
    if lake is not None:
        if region is not None:
            raise click.UsageError("--region goes with --stack")
        from auditlake.local_lake import LocalLake

        return LocalLake(lake).store()
    import boto3

    from auditlake.cli.stack import RAW_BUCKET, stack_outputs
    from auditlake.stores.s3 import S3Store

    session = boto3.session.Session(region_name=region)
    assert stack is not None
    return S3Store(session.client("s3"), str(stack_outputs(session, stack)[RAW_BUCKET]))


def _size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    return f"{size / 1024:.1f} KiB" if size < 1024 * 1024 else f"{size / 1024 / 1024:.1f} MiB"


def _state(entry: Entry) -> str:
    if entry.retried is not None:
        return f"retried {entry.retried.get('retried_at', '')}".strip()
    return "compactor" if entry.by_compactor else "pending"


@click.group(
    epilog="""\b
Examples:
  auditlake quarantine list --lake ./lake
  auditlake quarantine show 3f2a9c01be47 --lake ./lake
  auditlake quarantine retry --all --lake ./lake --policy fixed-policy.yaml
  auditlake quarantine list --stack auditlake --region eu-west-1 --output json"""
)
def quarantine() -> None:
    """What ingest could not store, and why; re-ingest it after a fix, exactly once.

    \b
    Every record that could not be ingested (not JSON, not an audit event, an Event that
    cannot be normalised, a payload nothing in could be read) is kept in the quarantine
    with its reason, redacted as everything stored is."""


@quarantine.command("list")
@where_options
@click.option(
    "--kind",
    type=click.Choice(["audit", "events", "findings"]),
    help="Only this kind's quarantine (default: every kind).",
)
@click.option("--all", "all_", is_flag=True, help="Also the entries already retried (default: pending ones only).")
@click.option(
    "--output",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
    help="table for people; json (one object a line) or csv for scripts.",
)
def list_(lake: Path | None, stack: str | None, region: str | None, kind: str | None, all_: bool, fmt: str) -> None:
    """List quarantine entries: id, when, kind, cluster, items, size, state and why.

    \b
    Examples:
      auditlake quarantine list --lake ./lake
      auditlake quarantine list --lake ./lake --kind events --all
      auditlake quarantine list --stack auditlake --output json | jq .reason"""
    from auditlake.ingest.quarantine import entries

    found = [e for e in entries(open_store(lake, stack, region), kind) if all_ or e.retried is None]
    columns = ["id", "quarantined", "kind", "cluster", "source", "items", "size", "state", "reason"]
    rows = [[e.id, e.at, e.kind, e.cluster, e.source, e.items, _size(e.size) if fmt == "table" else e.size,
             _state(e), e.reason] for e in sorted(found, key=lambda e: (e.at, e.key))]  # fmt: skip
    if not rows and fmt == "table":
        err.print("quarantine is empty" if all_ else "nothing pending in the quarantine (--all shows retried entries)")
        return
    print_result(SimpleNamespace(columns=columns, rows=rows), fmt)


@quarantine.command()
@click.argument("entry_id", metavar="ID")
@where_options
def show(entry_id: str, lake: Path | None, stack: str | None, region: str | None) -> None:
    """Show one entry: its reason and its records, redacted as stored.

    ID is the id `quarantine list` prints (at least its first 4 characters), or the entry's key.
    A payload kept unchanged because nothing in it could be read is named, never printed: it may
    hold anything the sender sent.

    \b
    Examples:
      auditlake quarantine show 3f2a9c01be47 --lake ./lake
      auditlake quarantine show 3f2a --stack auditlake"""
    from auditlake.ingest.quarantine import NotFound, find
    from auditlake.jsonio import dumps_str

    store = open_store(lake, stack, region)
    try:
        entry = find(store, entry_id)
    except NotFound as exc:
        fail(f"{exc} (auditlake quarantine list --all shows the ids)")
    click.echo(f"id:          {entry.id}")
    click.echo(f"key:         {entry.key}")
    click.echo(f"kind:        {entry.kind}  cluster: {entry.cluster}  source: {entry.source}")
    click.echo(f"quarantined: {entry.at}")
    click.echo(f"reason:      {entry.reason}")
    click.echo(f"state:       {_state(entry)}")
    if entry.by_compactor:
        click.echo(f"raw object:  {entry.manifest.get('raw_key')}")
    if entry.payload_key is not None:
        size = store.size(entry.payload_key)
        click.echo(f"payload:     {entry.payload_key} ({size} bytes, kept unchanged: not shown)")
    for item in entry.manifest.get("items") or ():
        if not isinstance(item, dict):
            continue
        head = f"item {item.get('index', '?')}: {item.get('reason', '?')}"
        ids = " ".join(f"{k}={item[k]}" for k in ("auditID", "stage") if item.get(k))
        click.echo(f"\n{head}" + (f" ({ids})" if ids else ""))
        if "item" in item:
            click.echo(dumps_str(item["item"]))
        elif "line" in item:
            click.echo(item["line"])
        elif "line_hex" in item:
            click.echo(f"(not UTF-8: {len(item['line_hex']) // 2} bytes)")


@quarantine.command()
@click.argument("entry_ids", nargs=-1, metavar="[ID]...")
@click.option("--all", "all_", is_flag=True, help="Retry every pending entry (of --kind, when given).")
@click.option(
    "--kind", type=click.Choice(["audit", "events"]), help="With --all: only this kind's entries (default: both)."
)
@where_options
@pipeline_options
def retry(
    entry_ids: tuple[str, ...],
    all_: bool,
    kind: str | None,
    lake: Path | None,
    stack: str | None,
    region: str | None,
    policy_file: Path | None,
    redact_configmaps: bool,
    redact: tuple[str, ...],
) -> None:
    """Re-ingest quarantined records after a fix (a new policy, a fixed parser), exactly once.

    \b
    Records go through today's pipeline: --policy and the redaction options as `ingest`
    takes them (with --stack, give the stack's own policy file). What now passes lands;
    what still fails is quarantined again, with its reason. An entry is marked retried only
    after its records landed, and a marked entry is not retried again: retrying twice never
    lands anything twice. Entries whose every record still fails stay pending. Retried
    records are evaluated by the built-in detection rules; nothing is paged.

    \b
    Examples:
      auditlake quarantine retry 3f2a9c01be47 --lake ./lake
      auditlake quarantine retry --all --lake ./lake --policy fixed-policy.yaml
      auditlake quarantine retry --all --kind events --stack auditlake --region eu-west-1"""
    from auditlake.events.files import events_reingest
    from auditlake.ingest.intake import IngestStats
    from auditlake.ingest.quarantine import NotFound, audit_reingest, entries, find
    from auditlake.ingest.quarantine import retry as retry_entry
    from auditlake.local_lake import LocalLake

    if bool(entry_ids) == all_:
        raise click.UsageError("give the IDs to retry, or --all")
    if kind is not None and not all_:
        raise click.UsageError("--kind goes with --all")
    store = open_store(lake, stack, region)
    pipeline = build_pipeline(policy_file, redact_configmaps, redact)
    detector, _rules = LocalLake(lake or Path(".")).detector()  # the built-in rules (reads no lake)
    pipeline.detector = detector
    reingest = {"audit": audit_reingest(pipeline), "events": events_reingest(detector)}
    if all_:
        chosen = [e for e in entries(store, kind) if e.retried is None and not e.by_compactor and e.kind != "findings"]
    else:
        try:
            chosen = [find(store, wanted) for wanted in entry_ids]
        except NotFound as exc:
            fail(f"{exc} (auditlake quarantine list shows the ids)")
    total, states = IngestStats(), dict.fromkeys(("landed", "already retried", "still failing", "not retryable"), 0)
    for entry in chosen:
        outcome = retry_entry(store, entry, reingest, clock=lambda: datetime.now(UTC))
        states[outcome.state] += 1
        if outcome.stats is not None:
            total.add(outcome.stats)
            err.print(f"{entry.id} landed: {outcome.stats.accepted} accepted, {outcome.stats.filtered} filtered, "
                      f"{outcome.stats.quarantined} still quarantined", highlight=False)  # fmt: skip
        else:
            err.print(f"{entry.id} {outcome.state}: {outcome.detail}", highlight=False)
    print_counts("retried", {"entries": len(chosen), **states, "records accepted": total.accepted,
                             "still quarantined": total.quarantined, "findings": total.findings})  # fmt: skip
    if chosen and states["landed"] + states["already retried"] == 0:
        fail("nothing retried: every entry still fails or cannot be retried (see the lines above)")
