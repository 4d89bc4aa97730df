"""The archive and its tamper evidence: ``compact``, ``digest``, ``verify``."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from auditlake.cli.options import lake_option
from auditlake.cli.render import err, fail, print_counts
from auditlake.cli.stack import ARCHIVE_BUCKETS, DIGEST_KEY, STATE_TABLE, stack_outputs
from auditlake.landing import raw_prefix
from auditlake.local_lake import LocalLake
from auditlake.stores import StoreError
from auditlake.timestamps import format_utc, instant

if TYPE_CHECKING:  # the CLI starts without them; each command imports what it runs
    from auditlake.stores import Store
    from auditlake.trust.digest import ChainHead, Signer
    from auditlake.trust.ledger import Ledger


@click.command()
@lake_option(create=False)
def compact(lake: Path) -> None:
    """Compact the local lake's raw landing into its Parquet archive (idempotent: run it any time).

    One file per partition (kind, dt, hour) for all clusters. A raw object archived is never read
    again: a run compacts only what landed since the last one (a file more per partition it touches).

    \b
    Example:
      auditlake compact --lake /tmp/lake && auditlake query pod_exec --lake /tmp/lake
    """
    from auditlake.archive.compactor import Compactor
    from auditlake.archive.hourly import compact_pending

    local = LocalLake(lake)
    store = local.store()
    keys = list(store.list(raw_prefix()))
    started = time.perf_counter()
    compactor = Compactor(store, local.archives(), local.locks(), ledger=local.ledger())
    report, skipped = compact_pending(compactor, local.compacted_hours(), keys, datetime.now(UTC))
    if len(keys) == skipped and not report.ignored:  # a run again: say so, not "duplicates dropped 0"
        if keys:
            err.print(f"nothing new: all {skipped} raw objects are archived already", highlight=False)
        else:
            err.print("nothing to compact: the raw landing is empty (ingest, serve or poll fill it)", highlight=False)
        return
    print_counts(
        f"compacted {len(keys) - skipped} raw objects in {time.perf_counter() - started:.1f}s"
        + (f" ({skipped} in hours already compacted: not read again)" if skipped else ""),
        {"rows read": report.rows_read, "rows archived": report.rows_written, "duplicates dropped": report.duplicates,
         "files": len(report.files), "quarantined objects": len(report.quarantined), "to retry": len(report.failed)},
    )  # fmt: skip
    if report.failed:
        raise SystemExit(1)


@click.command()
@lake_option(create=False)
@click.option("--export-public-key", "export", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the signing key's public half (PEM) here: keep it away from the lake, "
                   "for verify --public-key.")  # fmt: skip
def digest(lake: Path, export: Path | None) -> None:
    """Seal everything archived in the local lake so far: a signed digest chained to the last one.

    The key (RSA-3072) is made on first use in LAKE/state/digest-key.pem; a deployed stack signs
    its hourly digests with a KMS key instead. A file whose ledger entry is younger than 10
    minutes and that is not there yet is left for the next digest.

    \b
    Example:
      auditlake digest --lake /tmp/lake --export-public-key ~/auditlake-digest.pub
    """
    from auditlake.trust.digest import Digester, DigestError

    local = LocalLake(lake)
    ledger = local.ledger()
    first = ledger.first_hour()
    # Digests end on a whole second: wait for the next one (and a clock tick more: file times come
    # from the kernel's coarse clock), so whatever the ledger does not hold yet is written after it.
    now = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    time.sleep(max(0.0, (now - datetime.now(UTC)).total_seconds() + 0.05))
    start = datetime.fromisoformat(f"{first}:00:00+00:00") if first else now
    signer = local.signer()  # made on first use
    try:
        report = Digester(ledger, local.archives(), local.chain_head(), signer).seal(now, start=start, hourly=False)
    except DigestError as exc:
        fail(str(exc))
    for line in report.damaged:
        err.print(f"[yellow]ledger entry unreadable, skipped:[/yellow] {line}")
    for key in report.adopted:
        err.print(f"{key} was written by a digest run that stopped before moving the chain head: adopted")
    for key in report.dropped:
        err.print(f"[yellow]recorded in the ledger as written, file gone (verify reports it vanished):[/yellow] {key}")
    print_counts("sealed", {"digests": len(report.digests), "files": report.objects,
                             "never written (left out)": len(report.dropped),
                             "abandoned writes (compacted again)": len(report.abandoned),
                             "still being written (next digest)": len(report.waiting),
                             "unreadable ledger lines": len(report.damaged)})  # fmt: skip
    head = local.chain_head().load()
    if head:
        err.print(f"chain head {head['sequence']}:{head['sha256']} (record it: verify --expect-head)")
    if export is not None:
        export.write_bytes(signer.public.pem())
        err.print(f"public key written to {export} (keep it away from the lake: verify --public-key)")


@click.command()
@lake_option(create=False, required=False)
@click.option("--stack", help="Deployed stack: its archive buckets, digest key and state table are looked up.")
@click.option("--region", help="AWS region of the stack (default: the SDK's: AWS_REGION or the profile's).")
@click.option("--from", "start", help="Check the files written (sealed) from this time, not events of it "
              "(ISO 8601 or 7d).")  # fmt: skip
@click.option("--to", "end", help="... until this time (default: now).")
@click.option("--expect-head", metavar="SEQ:SHA256",
              help="The chain head recorded earlier (digest prints it): the chain must still hold it.")  # fmt: skip
@click.option("--public-key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Check local signatures with this exported public key instead of the lake's key.")  # fmt: skip
@click.option("--max-age", help="Fail when the newest digest ends longer ago than this (e.g. 3h). "
              "Default: 3h with --stack (hourly digests), no limit with --lake.")  # fmt: skip
def verify(lake: Path | None, stack: str | None, region: str | None, start: str | None, end: str | None,
           expect_head: str | None, public_key: Path | None, max_age: str | None) -> None:  # fmt: skip
    """Prove the archive complete and unaltered: walk the digest chain, check every sealed file.

    Exits 1 when nothing is sealed, the chain is shorter than its head, stale, or broken, or a file
    is missing, altered, extra, vanished or unrecorded (listed one per line).

    Deployed, S3 expires files and digests after the stack's retention, which each digest records
    under its signature: what that recorded retention lets S3 have removed by now (sealed files
    past it, the oldest digests once they are) is reported as expired, not missing; anything
    younger that is gone is still a problem. The buckets' current lifecycle rules never excuse an
    absence: a rule that would expire keys sooner than the digests record is a RETENTION problem.

    \b
    Examples:
      auditlake verify --lake /tmp/lake --public-key ~/auditlake-digest.pub --expect-head 12:3f1a...
      auditlake verify --stack my-auditlake --region eu-west-1 --from 7d
    """
    from auditlake.trust.digest import DigestError, parse_head
    from auditlake.trust.digest import verify as verify_chain
    from auditlake.trust.retention import bucket_rules

    if (lake is None) == (stack is None):
        raise click.UsageError("give exactly one of --lake, --stack")
    now = datetime.now(UTC)
    lifecycle: dict[str, list[dict[str, Any]] | None] | None = None
    try:
        since, until = instant(start, now) if start else None, instant(end, now) if end else None
        age = now - instant(max_age, now) if max_age else None if lake is not None else timedelta(hours=3)
        expected = parse_head(expect_head) if expect_head else None
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    try:
        if lake is not None:
            chain = lake_chain(LocalLake(lake), public_key)
        else:
            import boto3

            session = boto3.session.Session(region_name=region)
            outputs = stack_outputs(session, str(stack))
            chain = stack_chain(session, outputs)
            s3 = session.client("s3")
            # Compared with the retention the digests record (a rule expiring sooner is a finding);
            # never what decides expiry: whoever may change the rules could excuse any removal.
            lifecycle = {name: bucket_rules(s3, outputs[output]) for name, output in ARCHIVE_BUCKETS.items()}
        ledger = chain.ledger
        report = verify_chain(chain.archives, chain.signer, start=since, end=until, head=chain.head,
                              expected=expected, ledger=ledger, now=now, max_age=age, lifecycle=lifecycle)  # fmt: skip
    except (DigestError, StoreError) as exc:
        fail(str(exc))
    for finding in report.findings:
        click.echo(f"{finding.kind.upper():14} {finding.key}  {finding.detail}")
    expired = ""
    if report.expired_files or report.expired_digests:
        expired = (f"expired by retention: {len(report.expired_files)} files, "
                   f"{_sequences(report.expired_digests)} ({report.retention})")  # fmt: skip
        err.print(expired, highlight=False)
    for note in report.notes:
        err.print(note, highlight=False)
    if report.expected_head:
        err.print(report.expected_head, highlight=False)
    if report.unprovable:
        err.print(f"past retention, not yet removed: {len(report.unprovable)} files whose digests S3 "
                  "expired first (no longer provable; S3 removes them next)", highlight=False)  # fmt: skip
    if report.abandoned:
        err.print(f"abandoned writes: {len(report.abandoned)} ledger entries whose compaction failed before its "
                  "file was written (their rows were compacted again; not a finding)", highlight=False)  # fmt: skip
    if report.writing:
        err.print(f"still being written: {len(report.writing)} ledger entries without a file yet "
                  "(verify again in a few minutes)", highlight=False)  # fmt: skip
    if report.archived:
        err.print(f"in an archive tier (Deep Archive): {len(report.archived)} sealed files present, "
                  "their size checked, their content not read (restore them to check it)", highlight=False)  # fmt: skip
    for line in sorted(set(ledger.damaged)):
        err.print(f"[yellow]ledger entry unreadable, skipped:[/yellow] {line}")
    summary = {"digests": report.digests, "files checked": report.objects, "problems": len(report.findings),
               "not yet sealed": len(report.unsealed)}  # fmt: skip
    print_counts(f"sealed until {report.sealed_until or 'never'}", summary)
    if report.head:
        err.print(f"chain head {report.head}")
    if not report.ok:
        raise SystemExit(1)
    # Said with what it assumed: what expired by the recorded retention, and whether the head an
    # auditor recorded was checked at all (it may have expired with no digest after it to name it).
    assumed = f"; {expired}" if expired else ""
    if expected is not None:
        assumed += "; " + (report.expected_head or "recorded head not checked")
    if since is None and until is None:
        err.print("[green]verified[/green]: every sealed file is present and unaltered; no file is unaccounted for"
                  + assumed, highlight=False)  # fmt: skip
    else:  # the window selects by write (seal) time, not event time: files outside it were not read
        window = f"from {format_utc(since) if since else 'the first digest'} to {format_utc(until) if until else 'now'}"
        err.print(
            f"[green]verified[/green] {window} (by write time): the chain is whole; the files of the digests "
            "in that window are present and unaltered; no file written in it is unaccounted for. "
            "Files sealed outside the window were not read" + assumed,
            highlight=False,
        )


def _sequences(numbers: list[int]) -> str:
    """Digest sequence numbers as ranges: "digests 1..24, 30"."""
    if not numbers:
        return "no digest"
    runs: list[list[int]] = []
    for number in sorted(numbers):
        if runs and number == runs[-1][-1] + 1:
            runs[-1].append(number)
        else:
            runs.append([number])
    return ("digest " if len(numbers) == 1 else "digests ") + ", ".join(
        f"{r[0]}..{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs
    )


@dataclass(frozen=True)
class Chain:
    """What verify reads, for a lake or a stack: the archives, what checks the digests' signatures,
    the chain head and the ledger (``verify``, and ``report``'s sealed state)."""

    archives: dict[str, Store]
    signer: Signer
    head: ChainHead
    ledger: Ledger


def lake_chain(local: LocalLake, public_key: Path | None) -> Chain:
    """A local lake's; verifying never makes a signing key (``verifying_signer``)."""
    return Chain(local.archives(), verifying_signer(local, public_key), local.chain_head(), local.ledger())


def stack_chain(session: Any, outputs: Mapping[str, str]) -> Chain:
    """A deployed stack's, from its Outputs: the archive buckets, the KMS digest key, the state table."""
    from auditlake.stores.s3 import S3Store
    from auditlake.trust.digest import DynamoChainHead, KmsSigner
    from auditlake.trust.ledger import DynamoLedger

    s3, dynamodb = session.client("s3"), session.client("dynamodb")
    return Chain(
        {name: S3Store(s3, outputs[output]) for name, output in ARCHIVE_BUCKETS.items()},
        KmsSigner(session.client("kms"), outputs[DIGEST_KEY]),
        DynamoChainHead(dynamodb, outputs[STATE_TABLE]),
        DynamoLedger(dynamodb, outputs[STATE_TABLE]),
    )


def verifying_signer(local: LocalLake, public_key: Path | None) -> Any:
    """What checks a local lake's signatures: the exported ``public_key`` when given, else the
    lake's key (verifying never makes one), else ``_NoKey``."""
    from auditlake.trust.digest import DigestError, PublicKey

    if public_key is not None:
        return PublicKey.load(public_key)
    try:
        return local.signer(create=False)
    except DigestError:
        return _NoKey(local.digest_key_file)


class _NoKey:
    """No key to check signatures with: fine while there is no digest; an error when there is."""

    key_id = "none"

    def __init__(self, path: Path) -> None:
        self.path = path

    def sign(self, digest: bytes) -> bytes:
        from auditlake.trust.digest import DigestError

        raise DigestError("verifying never signs")

    def verify(self, digest: bytes, signature: bytes) -> bool:
        from auditlake.trust.digest import DigestError

        raise DigestError(f"no signing key at {self.path} to check the digests: pass --public-key FILE")
