"""Audit entry points: ``serve`` (the local webhook), ``ingest`` (files into the local lake) and
``backfill`` (an EKS cluster's CloudWatch Logs history, into the local lake or a stack).

Each evaluates the detection rules on every event it reads (the built-in set, plus ``--rules DIR``;
``--no-builtin-rules`` runs only those): findings land with their batch and are counted in the
summary line; a rule file that does not load is a one-line warning, never a failed ingest.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from botocore.exceptions import ClientError
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from auditlake.cli.options import (
    alert_options,
    build_detector,
    build_pipeline,
    cluster_name,
    lake_option,
    lake_watch,
    optional_cluster_name,
    pipeline_options,
    rules_options,
)
from auditlake.cli.render import bytes_progress, err, fail, listen_failure, print_counts, tls_failure
from auditlake.cli.stack import CLOUDWATCH_FUNCTION, STATE_TABLE, stack_outputs
from auditlake.clusters.registry import StaticTokens, token_hash
from auditlake.ingest.checkpoints import CheckpointConflict, CheckpointError, DynamoCheckpoints
from auditlake.ingest.files import CutInput, FileIngest
from auditlake.ingest.inputs import InputError
from auditlake.ingest.intake import IngestStats
from auditlake.local_lake import LocalLake
from auditlake.model import SOURCE_WEBHOOK
from auditlake.stores import StoreError
from auditlake.timestamps import DURATION, instant

if TYPE_CHECKING:
    from auditlake.ingest.cloudwatch import EksAuditForwarder

# The CloudWatch modules (and the Powertools data classes under them) are imported by the commands
# that use them, so every other command, and --help, starts without them.
PAGE_LIMIT = 10_000  # ingest.backfill.PAGE_LIMIT (FilterLogEvents' maximum), pinned equal by a unit test

F = TypeVar("F", bound=Callable[..., Any])


@click.command(
    epilog="""\b
Examples:
  auditlake serve --lake ./lake --cluster kind-kind --token-file ./lake/tokens/kind-kind.token
  auditlake serve --lake ./lake --cluster kind-kind --token-file T --host 172.18.0.1 --port 8443 \\
      --tls-cert serve.crt --tls-key serve.key

\b
Beyond the loopback, serve needs TLS: the API server sends the cluster's bearer token with
every batch. --host 0.0.0.0 listens on every interface: anyone who reaches this machine
can connect (the token keeps them out)."""
)
@lake_option
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="0 picks a free port.")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on. 127.0.0.1 is this machine only; a kind node reaches the docker network's gateway "
    "(what `cluster add --kind-config` prints). Any other address needs --tls-cert/--tls-key.",
)
@click.option("--cluster", "cluster_", required=True, callback=cluster_name, help="Cluster the token maps to.")
@click.option(
    "--token-file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="File holding the bearer token.",
)
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), help="Serve HTTPS with this cert.")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), help="The private key of --tls-cert (PEM).")
@pipeline_options
@rules_options
@alert_options
def serve(
    lake: Path,
    port: int,
    host: str,
    cluster_: str,
    token_file: Path,
    tls_cert: str | None,
    tls_key: str | None,
    policy_file: Path | None,
    redact_configmaps: bool,
    redact: tuple[str, ...],
    rule_dirs: tuple[Path, ...],
    no_builtin_rules: bool,
    alert_level: str,
    alert_threshold: int,
    secrets_alert_threshold: int,
) -> None:
    """Run a local audit webhook (POST /v1/audit) writing to the local lake; 403 bursts are printed
    and kept under LAKE/alerts/."""
    import ssl

    from auditlake.ingest.serve import PATH, listen, make_server
    from auditlake.ingest.webhook import AuditWebhook, Reply

    token = token_file.read_text().strip()
    if not token:
        fail(f"{token_file} is empty")
    if bool(tls_cert) != bool(tls_key):
        raise click.UsageError("--tls-cert and --tls-key go together")
    if not tls_cert and not _loopback(host):
        fail(f"--host {host} without TLS sends the cluster's token in clear (add --tls-cert/--tls-key: "
             "auditlake cluster add NAME --lake L --kind-config FILE writes them)")  # fmt: skip
    pipeline = build_pipeline(policy_file, redact_configmaps, redact)
    pipeline.detector, rules = build_detector(lake, rule_dirs, no_builtin_rules)
    webhook = AuditWebhook(
        StaticTokens({token_hash(token): cluster_}),
        pipeline,
        LocalLake(lake).landing("audit"),
        source=SOURCE_WEBHOOK,
        watch=lake_watch(lake, alert_threshold, secrets_alert_threshold, rules, alert_level),
    )

    def on_reply(reply: Reply) -> None:
        fields = " ".join(f"{k}={v}" for k, v in reply.body.items() if k != "batch")
        click.echo(f"{datetime.now(UTC):%H:%M:%S} {reply.status} {fields}", err=True)

    try:
        server = make_server(webhook, on_reply=on_reply, tls=(tls_cert, tls_key) if tls_cert and tls_key else None)
    except (ssl.SSLError, OSError) as exc:
        fail(tls_failure(exc, tls_cert, tls_key))
    try:
        sock = listen(host, port)
    except OSError as exc:
        fail(listen_failure(host, port, exc))
    scheme = "https" if tls_cert else "http"
    click.echo(f"listening on {scheme}://{host}:{sock.getsockname()[1]}{PATH}", nl=True)
    sys.stdout.flush()
    # uvicorn drains requests in flight on SIGTERM/SIGINT, then re-raises the signal to the handler it
    # found: make that a clean exit.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(0))
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=[sock])


@click.command(
    epilog="""\b
Examples:
  auditlake ingest --lake ./lake --cluster prod /var/log/kubernetes/audit.log
  auditlake ingest --lake ./lake --cluster prod audit-2026-11-30T06-24-00.000.log.gz
  auditlake ingest --lake ./lake --cluster prod --format eventlist saved-webhook-body.json
  kubectl get events -A -o yaml > events.yaml
  auditlake ingest --lake ./lake --cluster kind-kind --kind events events.yaml
  auditlake ingest --lake ./lake --format cloudwatch firehose-object.json

\b
gzip files (kube-apiserver --audit-log-compress) are read as they are, told by their
first bytes, whatever their name. A file whose records are the other kind (Events given
as audit, or audit events given --kind events) is refused before anything is ingested.
Records that cannot be ingested are quarantined: see `auditlake quarantine list`.
Exits non-zero when nothing at all was ingested."""
)
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--cluster",
    "cluster_",
    callback=optional_cluster_name,
    help="Cluster the records belong to (a DNS label). Required except with --format cloudwatch.",
)
@lake_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "eventlist", "cloudwatch"]),
    default="jsonl",
    show_default=True,
    help="jsonl: one Event per line (the log backend); a file that is one JSON document over many lines is read "
    "as eventlist. eventlist: one JSON document, an EventList or an Event. "
    'cloudwatch: saved EKS subscription payloads ({"awslogs": {"data": ...}}, decoded documents, '
    "Firehose objects); the cluster comes from each payload's log group. Any of them may be gzip.",
)
@click.option(
    "--kind",
    type=click.Choice(["audit", "events"]),
    default="audit",
    show_default=True,
    help="events: Kubernetes Events (kubectl get events -o json or -o yaml, or JSON Lines of Event objects); "
    "--format does not apply.",
)
@pipeline_options
@rules_options
@alert_options
def ingest(
    files: tuple[Path, ...],
    cluster_: str,
    lake: Path,
    fmt: str,
    kind: str,
    policy_file: Path | None,
    redact_configmaps: bool,
    redact: tuple[str, ...],
    rule_dirs: tuple[Path, ...],
    no_builtin_rules: bool,
    alert_level: str,
    alert_threshold: int,
    secrets_alert_threshold: int,
) -> None:
    """Import audit logs (JSON Lines, EventList, CloudWatch payloads; gzip or not) or Kubernetes Events
    (JSON, YAML) into the local lake."""
    if fmt == "cloudwatch":
        from auditlake.ingest.cloudwatch import EksAuditForwarder, ForwardStats, forward_saved

        if cluster_ is not None or kind != "audit":
            raise click.UsageError("--format cloudwatch takes the cluster from each log group: no --cluster or --kind")
        pipeline = build_pipeline(policy_file, redact_configmaps, redact)
        pipeline.detector, rules = build_detector(lake, rule_dirs, no_builtin_rules)
        forwarder = EksAuditForwarder(
            pipeline,
            LocalLake(lake).landing(),
            watch=lake_watch(lake, alert_threshold, secrets_alert_threshold, rules, alert_level),
        )
        stats = ForwardStats()
        for path in files:
            stats.add(forward_saved(forwarder, _read(path)))
        print_counts("ingested", vars(stats))
        _nothing_ingested(lake, files, stats)
        return
    if cluster_ is None:
        raise click.UsageError("--cluster is required")
    documents = _check_kind(files, kind)
    detector, rules = build_detector(lake, rule_dirs, no_builtin_rules)
    watch = lake_watch(lake, alert_threshold, secrets_alert_threshold, rules, alert_level)
    if kind == "events":
        from auditlake.events.files import ingest_events

        total = IngestStats()
        for path in files:
            try:
                total.add(ingest_events(path, LocalLake(lake).landing("events"), cluster_, detector=detector,
                                        watch=watch))  # fmt: skip
            except InputError as exc:  # read whole before anything lands: nothing of it did
                fail(f"{exc} (is it still being written? ingest it again once it is whole)")
        print_counts("ingested Events", {"events": total.events, "accepted": total.accepted,
                                          "quarantined": total.quarantined, "findings": total.findings})  # fmt: skip
        _nothing_ingested(lake, files, total)
        return
    pipeline = build_pipeline(policy_file, redact_configmaps, redact)
    pipeline.detector = detector
    total = IngestStats()
    cut: list[str] = []
    with bytes_progress() as progress:
        for path in files:
            task = progress.add_task(path.name, total=path.stat().st_size)

            def advance(done: int, task: TaskID = task) -> None:
                progress.update(task, completed=done)

            importer = FileIngest(pipeline, LocalLake(lake).landing("audit"), cluster_, progress=advance,
                                  watch=watch)  # fmt: skip
            try:
                # A pretty-printed EventList cannot be JSON Lines: it is read as the document it is.
                jsonl = fmt == "jsonl" and path not in documents
                total.add(importer.jsonl(path) if jsonl else importer.eventlist(path))
            except InputError as exc:  # what came before a cut landed (CutInput); the other files still go in
                if isinstance(exc, CutInput):
                    total.add(exc.stats)
                cut.append(str(exc))
    print_counts("ingested", vars(total))
    for reason in cut:
        err.print(f"warning: {reason}: the records before it, if any, were ingested", highlight=False)
    if cut:
        fail(f"{len(cut)} file(s) ended early (a gzip file still being written? ingest it again once it is whole)")
    _nothing_ingested(lake, files, total)


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve anywhere


def _read(path: Path) -> bytes:
    from auditlake.ingest.inputs import InputError, read_input

    try:
        return read_input(path)
    except InputError as exc:
        fail(f"{exc} (is it still being written? ingest it again once it is whole)")


def _check_kind(files: tuple[Path, ...], kind: str) -> set[Path]:
    """Refuse, before anything lands, a file whose first records are the other kind: a newcomer's file
    of Events would otherwise be quarantined record by record as broken audit events. Returns the
    files that are one JSON document over many lines (read as --format eventlist: never JSON Lines)."""
    from auditlake.ingest.inputs import AUDIT, EVENTS, sniff

    documents = set()
    for path in files:
        sniffed = sniff(path)
        found = sniffed.kind
        if sniffed.json_document:
            documents.add(path)
        if kind == AUDIT and found == EVENTS:
            fail(f"{path} looks like Kubernetes Events: use --kind events")
        if kind == EVENTS and found == AUDIT:
            fail(f"{path} looks like Kubernetes audit events: drop --kind events (audit is the default)")
    return documents


def _nothing_ingested(lake: Path, files: tuple[Path, ...], stats: Any) -> None:
    """Exit non-zero when not one record was accepted (a policy that filtered them all is a choice, not
    a failure): every record was quarantined, or the files held none. Some quarantined: a hint where."""
    if stats.accepted or any(getattr(stats, name, 0) for name in ("filtered", "skipped", "control")):
        # (skipped, control: CloudWatch deliveries of other log streams, or none at all)
        if stats.quarantined:
            err.print(f"{stats.quarantined} records quarantined: see why with auditlake quarantine list --lake {lake}",
                      highlight=False)  # fmt: skip
        return
    names = ", ".join(str(path) for path in files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
    if stats.quarantined:
        fail(f"nothing ingested: all {stats.quarantined} records of {names} were quarantined "
             f"(see why: auditlake quarantine list --lake {lake})")  # fmt: skip
    fail(f"nothing ingested: {names} holds no records (is it the right file? JSON Lines, JSON, YAML, gzip are read)")


def eks_name(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    from auditlake.ingest.cloudwatch import EKS_NAME

    if not EKS_NAME.match(value):
        raise click.BadParameter("an EKS cluster name: letters, digits, '-' and '_', at most 100 characters")
    return value


@click.command(
    epilog="""\b
Examples:
  auditlake backfill --eks-cluster prod --since 7d --lake ./lake
  auditlake backfill --eks-cluster prod --since 2026-11-01T00:00:00Z --until 2026-11-08T00:00:00Z \\
      --stack auditlake --region eu-west-1
  auditlake backfill --eks-cluster prod --since 30d --stack auditlake --restart"""
)
@click.option("--eks-cluster", required=True, callback=eks_name, help="EKS cluster name (its log group is read).")
@click.option("--since", required=True, help="Start: a duration back from now (7d, 12h, 30m) or an ISO 8601 time.")
@click.option("--until", help="End, exclusive (duration or ISO 8601). Default and upper bound: now minus --lag.")
@click.option(
    "--lag",
    default="5m",
    show_default=True,
    help="Stay this far behind now: CloudWatch may still be ingesting the last minutes (the subscription has them).",
)
@click.option(
    "--stack", help="Deployed stack: its raw bucket, state table and the forwarder's own policy and redaction."
)
@lake_option(required=False)
@click.option("--region", help="AWS region of the cluster's log group (default: the SDK's).")
@click.option("--restart", is_flag=True, help="Start over instead of resuming an unfinished backfill of this cluster.")
@click.option(
    "--page-size",
    default=PAGE_LIMIT,
    show_default=True,
    type=click.IntRange(1, PAGE_LIMIT),
    help="Log events per CloudWatch page (one checkpoint per page); smaller pages resume closer to a stop.",
)
@pipeline_options
@rules_options
def backfill(
    eks_cluster: str,
    since: str,
    until: str | None,
    lag: str,
    stack: str | None,
    lake: Path | None,
    region: str | None,
    restart: bool,
    page_size: int,
    policy_file: Path | None,
    redact_configmaps: bool,
    redact: tuple[str, ...],
    rule_dirs: tuple[Path, ...],
    no_builtin_rules: bool,
    alert_level: str,
) -> None:
    """Read an EKS cluster's audit history from CloudWatch Logs into the archive, resumably.

    Re-running the command after an interruption resumes where it stopped (the checkpoint is in the
    stack's state table, or under <lake>/state/checkpoints). Overlapping the live subscription is safe:
    the archive keeps each (cluster, auditID, stage) once.
    """
    import boto3
    from botocore.config import Config

    from auditlake.ingest.backfill import Backfill
    from auditlake.ingest.cloudwatch import EksAuditForwarder, log_group_of

    if (stack is None) == (lake is None):
        raise click.UsageError("give exactly one of --stack, --lake")
    now = datetime.now(UTC)
    if not DURATION.match(lag.strip()):
        raise click.BadParameter("a duration such as 5m or 30s", param_hint="--lag")
    latest = instant(lag, now)
    try:
        start = instant(since, now)
        end = instant(until, now) if until else latest
    except ValueError as exc:
        raise click.BadParameter(f"not a duration (7d) or an ISO 8601 time: {exc}") from None
    if end > latest:
        err.print(f"until moved back to {latest:%Y-%m-%dT%H:%M:%SZ} (now minus --lag)")
        end = latest
    session = boto3.session.Session(region_name=region)
    if stack is not None:
        if (
            policy_file
            or redact
            or rule_dirs
            or no_builtin_rules
            or click.get_current_context().get_parameter_source("redact_configmaps")
            not in (
                None,
                click.core.ParameterSource.DEFAULT,
            )
        ):
            raise click.UsageError(
                "with --stack the deployed forwarder's policy, redaction and rules apply: "
                "drop --policy/--redact/--rules"
            )
        forwarder, checkpoints = _stack_backfill(session, stack)
    else:
        assert lake is not None
        pipeline = build_pipeline(policy_file, redact_configmaps, redact)
        pipeline.detector, rules = build_detector(lake, rule_dirs, no_builtin_rules)
        local = LocalLake(lake)
        watch = lake_watch(lake, rules=rules, alert_level=alert_level)
        forwarder, checkpoints = EksAuditForwarder(pipeline, local.landing(), watch=watch), local.checkpoints()
    logs = session.client("logs", config=Config(retries={"mode": "adaptive", "max_attempts": 10}))
    with Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[counts]}"), TimeRemainingColumn(),
        console=err,
    ) as progress:  # fmt: skip
        task = progress.add_task(eks_cluster, total=1, counts="")

        def show(job: Any) -> None:
            t = job.totals
            counts = f"{t.events} events, {t.accepted} stored, {t.quarantined} quarantined, {job.pages} pages"
            progress.update(
                task, total=job.end_ms - job.start_ms, completed=job.cursor_ms - job.start_ms, counts=counts
            )

        runner = Backfill(logs, forwarder, checkpoints, page_limit=page_size, progress=show)
        try:
            job, resumed = runner.plan(eks_cluster, start, end, restart=restart)
        except (ValueError, CheckpointError) as exc:
            fail(str(exc))
        if resumed:
            err.print(f"resuming the unfinished backfill of {eks_cluster} ({_span(job)}); --restart starts over")
        show(job)
        try:
            job = runner.run(job)
        except CheckpointConflict:
            fail(f"another backfill of {eks_cluster} is running (its checkpoint moved); this one stopped")
        except CheckpointError as exc:
            fail(f"{exc}; run the same command again to resume")
        except KeyboardInterrupt:
            progress.stop()
            err.print(f"interrupted after {job.pages} pages; run the same command again to resume")
            raise SystemExit(130) from None
        except StoreError as exc:
            fail(f"storage failed ({exc}); run the same command again to resume")
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ResourceNotFoundException":
                fail(f"log group {log_group_of(eks_cluster)} not found: is the cluster's audit logging enabled?")
            raise
    print_counts(f"backfilled {_span(job)}", {**vars(job.totals), "pages": job.pages})


def _span(job: Any) -> str:
    def iso(ms: int) -> str:
        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    return f"{iso(job.start_ms)} to {iso(job.end_ms)}"


def _stack_backfill(session: Any, stack: str) -> tuple[EksAuditForwarder, Any]:
    """The deployed forwarder's own settings (read from its configuration, which holds no credential),
    so backfilled events get exactly the policy and redaction of the live ones."""
    from auditlake.assembly import build_forwarder
    from auditlake.settings import RAW_BUCKET, Settings, SettingsError

    outputs = stack_outputs(session, stack)
    function, table = outputs.get(CLOUDWATCH_FUNCTION), outputs.get(STATE_TABLE)
    if not function or not table:
        fail(f"stack {stack} has no {CLOUDWATCH_FUNCTION}/{STATE_TABLE} outputs")
    config = session.client("lambda").get_function_configuration(FunctionName=function)
    try:
        settings = Settings.from_env(config.get("Environment", {}).get("Variables", {}), required=(RAW_BUCKET,))
    except SettingsError as exc:
        fail(f"{function}: {exc}")
    forwarder = build_forwarder(settings, s3=session.client("s3"), ssm=session.client("ssm"))
    return forwarder, DynamoCheckpoints(session.client("dynamodb"), str(table))
