"""The ``auditlake`` command line: the same core as the Lambda functions, on a local lake or AWS."""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from botocore.exceptions import ClientError
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table

from auditlake import __version__
from auditlake.audit.parse import iter_decoded
from auditlake.audit.pipeline import AuditPipeline, PipelineConfig
from auditlake.audit.policy import PolicyError, attributes_of, load_policy
from auditlake.audit.policy_lint import lint
from auditlake.audit.redact import RedactionConfig
from auditlake.cli.doctor import doctor
from auditlake.clusters.registry import DynamoRegistry, PollConfig, RegistryError, StaticTokens, new_token, token_hash
from auditlake.clusters.webhook_kubeconfig import (
    DEFAULT_KUBECONFIG_PATH,
    DEFAULT_POLICY_PATH,
    apiserver_flags,
    render_kubeconfig,
)
from auditlake.ingest.backfill import PAGE_LIMIT, Backfill
from auditlake.ingest.checkpoints import CheckpointConflict, CheckpointError, DynamoCheckpoints, LocalCheckpoints
from auditlake.ingest.cloudwatch import EKS_NAME, EksAuditForwarder, ForwardStats, forward_saved, log_group_of
from auditlake.ingest.files import FileIngest, IngestStats, ingest_events
from auditlake.jsonio import dumps_str
from auditlake.landing import Landing, valid_cluster_name
from auditlake.model import SOURCE_WEBHOOK
from auditlake.query.summary import LakeSummary, summarise
from auditlake.stores import Store, StoreError
from auditlake.stores.local import LocalStore
from auditlake.timestamps import DURATION, format_millis, format_utc, instant
from auditlake.trust.alerts import Watch, local_bursts, subject

err = Console(stderr=True, soft_wrap=True)  # diagnostics stay one line each, whatever the path length
F = TypeVar("F", bound=Callable[..., Any])


def _fail(message: str) -> NoReturn:
    err.print(f"[red]error:[/red] {message}")
    raise SystemExit(1)


@click.group()
@click.version_option(__version__)
def main() -> None:
    """auditlake: Kubernetes audit events and Events into a queryable, tamper-evident lake."""


main.add_command(doctor)  # the post-deploy checks live in doctor.py

# ---------------------------------------------------------------- shared options


def pipeline_options(func: F) -> F:
    func = click.option(
        "--redact",
        "redact",
        multiple=True,
        metavar="RESOURCE",
        help="Also drop bodies of this resource (resource[.group][/subresource]); repeatable.",
    )(func)
    func = click.option(
        "--redact-configmaps/--keep-configmaps",
        default=True,
        show_default=True,
        help="Drop configmap bodies (they often hold credentials).",
    )(func)
    func = click.option(
        "--policy",
        "policy_file",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="Pipeline audit policy (audit.k8s.io/v1). Default: keep every event as received.",
    )(func)
    return func


def build_pipeline(policy_file: Path | None, redact_configmaps: bool, redact: tuple[str, ...]) -> AuditPipeline:
    try:
        redaction = RedactionConfig.build(configmaps=redact_configmaps, extra=redact)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--redact") from None
    policy = None
    if policy_file is not None:
        try:
            policy = load_policy(policy_file.read_bytes())
        except PolicyError as exc:
            _fail(f"{policy_file}: " + "; ".join(exc.errors))
        for warning in policy.warnings if policy else ():
            err.print(f"[yellow]policy warning:[/yellow] {warning}")
    return AuditPipeline(PipelineConfig(policy, redaction))


def lake_option(func: F) -> F:
    return click.option(
        "--lake",
        required=True,
        type=click.Path(file_okay=False, path_type=Path),
        help="Local lake directory (created if missing).",
    )(func)


def alert_options(func: F) -> F:
    func = click.option(
        "--secrets-alert-threshold",
        type=click.IntRange(min=0),
        default=0,
        show_default=True,
        help="Also alert at this many 403s on secrets in a minute (0: off).",
    )(func)
    func = click.option(
        "--alert-threshold",
        type=click.IntRange(min=1),
        default=10,
        show_default=True,
        help="Alert when one identity gets this many 403s in a minute (to LAKE/alerts/).",
    )(func)
    return func


def lake_watch(lake: Path, alert_threshold: int, secrets_alert_threshold: int) -> Watch:
    def show(alert: dict[str, Any]) -> None:
        err.print(f"[bold red]ALERT[/bold red] {subject(alert)}: {', '.join(alert['resources'])} "
                  f"from {', '.join(alert['source_ips']) or '?'}", highlight=False)  # fmt: skip

    return Watch(local_bursts(lake, alert_threshold, secrets_alert_threshold, also=show))


def cluster_name(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    if not valid_cluster_name(value):
        raise click.BadParameter("use a DNS label: a-z, 0-9 and '-', at most 63 characters")
    return value


def optional_cluster_name(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    return None if value is None else cluster_name(ctx, param, value)


def _bytes_progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn(), console=err)


# ---------------------------------------------------------------- cluster


@main.group()
def cluster() -> None:
    """Register clusters that send audit events."""


@cluster.command("add")
@click.argument("name", callback=cluster_name)
@click.option("--lake", type=click.Path(file_okay=False, path_type=Path), help="Local lake (for `serve`).")
@click.option(
    "--eks", is_flag=True, help="Poll this EKS cluster's Events with IAM tokens (audit comes via CloudWatch)."
)
@click.option("--eks-name", help="The cluster's name in EKS (default: NAME).")
@click.option("--server", help="Poll this cluster's Events at this https:// API server URL (static token).")
@click.option("--ca-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="API server CA bundle.")
@click.option("--token-secret", help="ARN of the Secrets Manager secret holding the poller's token.")
@click.option("--token-ttl", type=click.IntRange(min=1), default=600, show_default=True,
              help="Seconds before the poller reads the token secret again (it also does on 401).")  # fmt: skip
@click.option("--event-ttl", type=click.IntRange(min=60), default=3600, show_default=True,
              help="The API server's --event-ttl: how far back a relist sees (coverage gaps beyond it).")  # fmt: skip
@click.option("--insecure-skip-tls-verify", is_flag=True, help="Skip TLS verification (warned on every poll).")
@click.option("--table", help="State table of a deployed stack.")
@click.option("--stack", help="Deployed stack name: its state table and webhook URL are looked up.")
@click.option("--url", help="Webhook URL (default: the stack's WebhookUrl, or the local serve URL).")
@click.option("--region", help="AWS region (default: the SDK's).")
@click.option(
    "--kubeconfig-out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the webhook kubeconfig here (mode 0600) instead of stdout.",
)
@click.option("--policy-path", default=DEFAULT_POLICY_PATH, show_default=True, help="Policy path on the node.")
@click.option(
    "--kubeconfig-path",
    default=DEFAULT_KUBECONFIG_PATH,
    show_default=True,
    help="Kubeconfig path on the node.",
)
def cluster_add(
    name: str,
    lake: Path | None,
    table: str | None,
    stack: str | None,
    url: str | None,
    region: str | None,
    kubeconfig_out: Path | None,
    policy_path: str,
    kubeconfig_path: str,
    **poll_options: Any,  # --eks ... --insecure-skip-tls-verify, read by _poll_config
) -> None:
    """Create a token for cluster NAME and print its webhook kubeconfig and kube-apiserver flags.

    Only the token's SHA-256 is stored. The kubeconfig goes to stdout (or --kubeconfig-out);
    instructions go to stderr, so `auditlake cluster add c1 --stack s > c1.kubeconfig` works.

    With --eks, or --server/--ca-file/--token-secret, the stack's Events poller also polls the
    cluster (an EKS cluster needs no webhook token; a cluster already registered only gains polling).
    """
    if sum(x is not None for x in (lake, table, stack)) != 1:
        raise click.UsageError("give exactly one of --lake, --table, --stack")
    poll = _poll_config(name, **poll_options)
    if poll is not None and lake is not None:
        raise click.UsageError("a local lake polls with `auditlake poll --kubeconfig`; --eks/--server need --stack")
    if poll is not None and poll.auth == "eks":
        registry, table, _ = _registry(table, stack, region)
        try:
            registry.set_polling(name, poll, created_at=_now())
        except RegistryError as exc:
            _fail(str(exc))
        err.print(f"cluster {name!r} registered in {table}: its Events are polled with the poller role's IAM token.")
        err.print("Give that role read access to Events (README: Poll Kubernetes Events):")
        err.print(f"  aws eks create-access-entry --cluster-name {poll.eks_name} --principal-arn <EventsPollerRoleArn>"
                  " --kubernetes-groups auditlake:events-reader", highlight=False, soft_wrap=True)  # fmt: skip
        err.print("  kubectl apply -f infra/kubernetes/events-reader-rbac.yaml", highlight=False)
        return
    token = new_token()
    if lake is not None:
        token_file = lake / "tokens" / f"{name}.token"
        if token_file.exists():
            _fail(f"{token_file} exists: cluster {name!r} is already registered in this lake")
        _write_private(token_file, token + "\n")
        url = url or "http://127.0.0.1:8080/v1/audit"
        err.print(f"token written to {token_file} (0600)")
        err.print(
            f"serve it with: auditlake serve --lake {lake} --port 8080 --cluster {name} --token-file {token_file}"
        )
    else:
        registry, table, stack_url = _registry(table, stack, region)
        url = _webhook_url(url, stack_url)
        try:
            registry.add_cluster(name, token_hash(token), created_at=_now(), poll=poll)
        except RegistryError as exc:
            if poll is None or "already registered" not in str(exc):
                _fail(str(exc))
            registry.set_polling(name, poll, created_at=_now())
            err.print(f"cluster {name!r} was registered already: its Events are now polled from {poll.server}")
            return
        err.print(f"cluster {name!r} registered in {table} (token stored as SHA-256 only)")
        if poll is not None:
            err.print(f"its Events are polled from {poll.server} with the token in {poll.token_secret}")
    _emit_kubeconfig(render_kubeconfig(str(url), token), kubeconfig_out)
    err.print(f"\nCopy the kubeconfig to {kubeconfig_path} on each control-plane node, the policy")
    err.print(f"(infra/kubernetes/audit-policy.yaml) to {policy_path}, and add to kube-apiserver:")
    for flag in apiserver_flags(policy_path, kubeconfig_path):
        err.print(f"  {flag}", highlight=False, soft_wrap=True)


@cluster.command("rotate-token")
@click.argument("name", callback=cluster_name)
@click.option("--table", help="State table of a deployed stack.")
@click.option("--stack", help="Deployed stack name: its state table and webhook URL are looked up.")
@click.option("--url", help="Webhook URL (default: the stack's WebhookUrl).")
@click.option("--region", help="AWS region (default: the SDK's).")
@click.option("--kubeconfig-out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the new webhook kubeconfig here (mode 0600) instead of stdout.")  # fmt: skip
def cluster_rotate_token(name: str, table: str | None, stack: str | None, url: str | None, region: str | None,
                         kubeconfig_out: Path | None) -> None:  # fmt: skip
    """Give cluster NAME a new webhook token; the old ones keep working until revoked.

    Roll the new kubeconfig out to every control-plane node, then revoke the old token with
    `auditlake cluster revoke-token NAME SHA256` (the webhook forgets it within a minute).
    """
    registry, table, stack_url = _registry(table, stack, region)
    url = _webhook_url(url, stack_url)
    old = registry.tokens(name)
    token = new_token()
    try:
        registry.add_token(name, token_hash(token), created_at=_now())
    except RegistryError as exc:
        _fail(str(exc))
    _emit_kubeconfig(render_kubeconfig(str(url), token), kubeconfig_out)
    err.print(f"new token for {name!r} stored in {table} (SHA-256 {token_hash(token)})")
    target = f"--stack {stack}" if stack else f"--table {table}"
    for entry in old:
        err.print("revoke once every node uses the new kubeconfig: "
                  f"auditlake cluster revoke-token {name} {entry['sha256']} {target}", highlight=False)  # fmt: skip


@cluster.command("revoke-token")
@click.argument("name", callback=cluster_name)
@click.argument("sha256")
@click.option("--table", help="State table of a deployed stack.")
@click.option("--stack", help="Deployed stack name: its state table is looked up.")
@click.option("--region", help="AWS region (default: the SDK's).")
def cluster_revoke_token(name: str, sha256: str, table: str | None, stack: str | None, region: str | None) -> None:
    """Revoke one of cluster NAME's webhook tokens (by its SHA-256, as rotate-token lists it)."""
    registry, table, _ = _registry(table, stack, region)
    try:
        registry.revoke_token(name, sha256.strip().lower())
    except RegistryError as exc:
        _fail(str(exc))
    err.print(f"token {sha256[:12]}... of {name!r} revoked; the webhook refuses it within a minute (its cache)")


def _registry(table: str | None, stack: str | None, region: str | None) -> tuple[DynamoRegistry, str, str | None]:
    """The registry and table name of --table or --stack, and the stack's webhook URL when it has one."""
    import boto3

    if (table is None) == (stack is None):
        raise click.UsageError("give exactly one of --table, --stack")
    session = boto3.session.Session(region_name=region)
    url = None
    if stack is not None:
        outputs = _stack_outputs(session, stack)
        table, url = outputs.get("StateTableName"), outputs.get("WebhookUrl")
        if not table:
            _fail(f"stack {stack} has no StateTableName output")
    return DynamoRegistry(session.client("dynamodb"), str(table)), str(table), url


def _webhook_url(given: str | None, from_stack: str | None) -> str:
    url = given or from_stack
    if not url:
        raise click.UsageError("--url is required with --table (or the stack has no WebhookUrl output)")
    return url


def _emit_kubeconfig(kubeconfig: str, out: Path | None) -> None:
    if out is not None:
        _write_private(out, kubeconfig)
        err.print(f"webhook kubeconfig written to {out} (0600)")
    else:
        click.echo(kubeconfig, nl=False)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _poll_config(
    name: str,
    eks: bool,
    eks_name: str | None,
    server: str | None,
    ca_file: Path | None,
    token_secret: str | None,
    token_ttl: int,
    event_ttl: int,
    insecure_skip_tls_verify: bool,
) -> PollConfig | None:
    """The Events poller's registry entry the options ask for (None: no polling)."""
    static = server is not None or ca_file is not None or token_secret is not None
    if eks and static:
        raise click.UsageError("--eks takes its endpoint and CA from EKS: no --server, --ca-file or --token-secret")
    if not eks and not static:
        return None
    ca_pem = None
    if ca_file is not None:
        ca_pem = ca_file.read_text(encoding="utf-8", errors="replace")
        if "-----BEGIN CERTIFICATE-----" not in ca_pem:
            raise click.BadParameter("not a PEM certificate bundle", param_hint="--ca-file")
    try:
        return PollConfig(
            "eks" if eks else "static", eks_name=(eks_name or name) if eks else None, server=server, ca_pem=ca_pem,
            token_secret=token_secret, token_ttl=token_ttl, event_ttl=event_ttl,
            insecure_skip_tls_verify=insecure_skip_tls_verify,
        )  # fmt: skip
    except RegistryError as exc:
        raise click.UsageError(str(exc)) from None


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def _stack_outputs(session: Any, stack: str) -> dict[str, str]:
    stacks = session.client("cloudformation").describe_stacks(StackName=stack)["Stacks"]
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}


# ---------------------------------------------------------------- serve


@main.command()
@lake_option
@click.option("--port", default=8080, show_default=True, type=int, help="0 picks a free port.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--cluster", "cluster_", required=True, callback=cluster_name, help="Cluster the token maps to.")
@click.option(
    "--token-file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="File holding the bearer token.",
)
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), help="Serve HTTPS with this cert.")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False))
@pipeline_options
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
        _fail(f"{token_file} is empty")
    if bool(tls_cert) != bool(tls_key):
        raise click.UsageError("--tls-cert and --tls-key go together")
    webhook = AuditWebhook(
        StaticTokens({token_hash(token): cluster_}),
        build_pipeline(policy_file, redact_configmaps, redact),
        Landing(LocalStore(lake), "audit"),
        source=SOURCE_WEBHOOK,
        watch=lake_watch(lake, alert_threshold, secrets_alert_threshold),
    )

    def on_reply(reply: Reply) -> None:
        fields = " ".join(f"{k}={v}" for k, v in reply.body.items() if k != "batch")
        click.echo(f"{datetime.now(UTC):%H:%M:%S} {reply.status} {fields}", err=True)

    try:
        server = make_server(webhook, on_reply=on_reply, tls=(tls_cert, tls_key) if tls_cert and tls_key else None)
    except (ssl.SSLError, OSError) as exc:
        _fail(f"cannot load --tls-cert/--tls-key: {exc}")
    try:
        sock = listen(host, port)
    except OverflowError:
        _fail(f"--port {port} is not a port: use 1-65535, or 0 for any free one")
    except OSError as exc:
        _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port (0: any free one)")
    scheme = "https" if tls_cert else "http"
    click.echo(f"listening on {scheme}://{host}:{sock.getsockname()[1]}{PATH}", nl=True)
    sys.stdout.flush()
    # uvicorn drains requests in flight on SIGTERM/SIGINT, then re-raises the signal to the handler it
    # found: make that a clean exit.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(0))
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=[sock])


# ---------------------------------------------------------------- ingest


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--cluster", "cluster_", callback=optional_cluster_name, help="Required except with cloudwatch.")
@lake_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "eventlist", "cloudwatch"]),
    default="jsonl",
    show_default=True,
    help="jsonl: one Event per line (the log backend). eventlist: one JSON document, an EventList or an Event. "
    'cloudwatch: saved EKS subscription payloads ({"awslogs": {"data": ...}}, decoded documents, '
    "Firehose objects); the cluster comes from each payload's log group.",
)
@click.option(
    "--kind",
    type=click.Choice(["audit", "events"]),
    default="audit",
    show_default=True,
    help="events: Kubernetes Events (kubectl get events -o json, or JSON Lines of Event objects).",
)
@pipeline_options
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
    alert_threshold: int,
    secrets_alert_threshold: int,
) -> None:
    """Import audit logs (JSON Lines, EventList, CloudWatch payloads) or Kubernetes Events into the local lake."""
    if fmt == "cloudwatch":
        if cluster_ is not None or kind != "audit":
            raise click.UsageError("--format cloudwatch takes the cluster from each log group: no --cluster or --kind")
        forwarder = EksAuditForwarder(
            build_pipeline(policy_file, redact_configmaps, redact),
            Landing(LocalStore(lake)),
            watch=lake_watch(lake, alert_threshold, secrets_alert_threshold),
        )
        stats = ForwardStats()
        for path in files:
            stats.add(forward_saved(forwarder, path.read_bytes()))
        _print_counts("ingested", vars(stats))
        return
    if cluster_ is None:
        raise click.UsageError("--cluster is required")
    if kind == "events":
        total = IngestStats()
        for path in files:
            total.add(ingest_events(path, Landing(LocalStore(lake), "events"), cluster_))
        _print_counts("ingested Events", {"events": total.events, "accepted": total.accepted,
                                          "quarantined": total.quarantined})  # fmt: skip
        return
    pipeline = build_pipeline(policy_file, redact_configmaps, redact)
    watch = lake_watch(lake, alert_threshold, secrets_alert_threshold)
    total = IngestStats()
    with _bytes_progress() as progress:
        for path in files:
            task = progress.add_task(path.name, total=path.stat().st_size)

            def advance(done: int, task: TaskID = task) -> None:
                progress.update(task, completed=done)

            importer = FileIngest(pipeline, Landing(LocalStore(lake), "audit"), cluster_, progress=advance,
                                  watch=watch)  # fmt: skip
            total.add(importer.jsonl(path) if fmt == "jsonl" else importer.eventlist(path))
    _print_counts("ingested", vars(total))


def _print_counts(title: str, counts: dict[str, int]) -> None:
    err.print(f"{title}: " + ", ".join(f"{k} {v}" for k, v in counts.items()), highlight=False)


# ---------------------------------------------------------------- backfill


def eks_name(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    if not EKS_NAME.match(value):
        raise click.BadParameter("an EKS cluster name: letters, digits, '-' and '_', at most 100 characters")
    return value


@main.command()
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
@click.option("--lake", type=click.Path(file_okay=False, path_type=Path), help="Local lake instead of a stack.")
@click.option("--region", help="AWS region of the cluster's log group (default: the SDK's).")
@click.option("--restart", is_flag=True, help="Start over instead of resuming an unfinished backfill of this cluster.")
@click.option("--page-size", default=PAGE_LIMIT, show_default=True, type=click.IntRange(1, PAGE_LIMIT))
@pipeline_options
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
) -> None:
    """Read an EKS cluster's audit history from CloudWatch Logs into the archive, resumably.

    Re-running the command after an interruption resumes where it stopped (the checkpoint is in the
    stack's state table, or under <lake>/checkpoints). Overlapping the live subscription is safe:
    the archive keeps each (cluster, auditID, stage) once.
    """
    import boto3
    from botocore.config import Config

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
            or click.get_current_context().get_parameter_source("redact_configmaps")
            not in (
                None,
                click.core.ParameterSource.DEFAULT,
            )
        ):
            raise click.UsageError(
                "with --stack the deployed forwarder's policy and redaction apply; drop --policy/--redact"
            )
        forwarder, checkpoints = _stack_backfill(session, stack)
    else:
        assert lake is not None
        pipeline = build_pipeline(policy_file, redact_configmaps, redact)
        forwarder, checkpoints = (
            EksAuditForwarder(pipeline, Landing(LocalStore(lake))),
            LocalCheckpoints(lake / "checkpoints"),
        )
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
            _fail(str(exc))
        if resumed:
            err.print(f"resuming the unfinished backfill of {eks_cluster} ({_span(job)}); --restart starts over")
        show(job)
        try:
            job = runner.run(job)
        except CheckpointConflict:
            _fail(f"another backfill of {eks_cluster} is running (its checkpoint moved); this one stopped")
        except CheckpointError as exc:
            _fail(f"{exc}; run the same command again to resume")
        except KeyboardInterrupt:
            progress.stop()
            err.print(f"interrupted after {job.pages} pages; run the same command again to resume")
            raise SystemExit(130) from None
        except StoreError as exc:
            _fail(f"storage failed ({exc}); run the same command again to resume")
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ResourceNotFoundException":
                _fail(f"log group {log_group_of(eks_cluster)} not found: is the cluster's audit logging enabled?")
            raise
    _print_counts(f"backfilled {_span(job)}", {**vars(job.totals), "pages": job.pages})


def _span(job: Any) -> str:
    def iso(ms: int) -> str:
        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    return f"{iso(job.start_ms)} to {iso(job.end_ms)}"


def _stack_backfill(session: Any, stack: str) -> tuple[EksAuditForwarder, Any]:
    """The deployed forwarder's own settings (read from its configuration, which holds no credential),
    so backfilled events get exactly the policy and redaction of the live ones."""
    from auditlake.assembly import build_forwarder
    from auditlake.settings import RAW_BUCKET, Settings, SettingsError

    outputs = _stack_outputs(session, stack)
    function, table = outputs.get("CloudWatchFunctionName"), outputs.get("StateTableName")
    if not function or not table:
        _fail(f"stack {stack} has no CloudWatchFunctionName/StateTableName outputs")
    config = session.client("lambda").get_function_configuration(FunctionName=function)
    try:
        settings = Settings.from_env(config.get("Environment", {}).get("Variables", {}), required=(RAW_BUCKET,))
    except SettingsError as exc:
        _fail(f"{function}: {exc}")
    forwarder = build_forwarder(settings, s3=session.client("s3"), ssm=session.client("ssm"))
    return forwarder, DynamoCheckpoints(session.client("dynamodb"), str(table))


# ---------------------------------------------------------------- replay


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--url", required=True, help="Webhook URL, e.g. https://.../v1/audit")
@click.option("--token-file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--ca-file", type=click.Path(exists=True, dir_okay=False), help="CA bundle to verify the server.")
@click.option("--batch-size", default=400, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--attempts", default=5, show_default=True, type=click.IntRange(1, 20))
@click.option("--initial-backoff", default=1.0, show_default=True, type=float, help="Seconds; grows 1.5x.")
def replay(
    file: Path,
    url: str,
    token_file: Path,
    ca_file: str | None,
    batch_size: int,
    attempts: int,
    initial_backoff: float,
) -> None:
    """Send a JSON Lines audit log to a webhook as kube-apiserver does (EventList batches, retries)."""
    from auditlake.demo.replay import Replayer, ReplayError, batches

    replayer = Replayer(
        url,
        token_file.read_text().strip(),
        ca_file=ca_file,
        attempts=attempts,
        initial_backoff=initial_backoff,
    )
    skipped = 0

    def events(handle: Any) -> Iterator[dict[str, Any]]:
        nonlocal skipped
        for _, value, _ in iter_decoded(handle):
            if isinstance(value, dict):
                yield value
            else:
                skipped += 1

    with _bytes_progress() as progress, file.open("rb") as handle:
        task = progress.add_task(f"replay {file.name}", total=file.stat().st_size)
        try:
            for batch in batches(events(handle), max_events=batch_size):
                replayer.send(batch)
                progress.update(task, completed=handle.tell())
        except ReplayError as exc:
            _fail(str(exc))
    stats = replayer.stats
    _print_counts(
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


# ---------------------------------------------------------------- synth


@main.command()
@click.option("--minutes", default=30.0, show_default=True, type=click.FloatRange(min=0, min_open=True))
@click.option("--rate", default=20.0, show_default=True, type=click.FloatRange(min=0, min_open=True), help="Events/s.")
@click.option("--seed", default=7, show_default=True, type=int)
@click.option(
    "--start",
    type=click.DateTime(["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"]),
    help="UTC start (default: now - minutes).",
)
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--events-out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the Kubernetes Events of the same story here (JSON Lines).",
)
def synth(minutes: float, rate: float, seed: int, start: datetime | None, out: Path, events_out: Path | None) -> None:
    """Write realistic synthetic audit traffic with planted incidents as JSON Lines."""
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


# ---------------------------------------------------------------- policy


@main.group()
def policy() -> None:
    """Evaluate and check audit policies."""


@policy.command("eval")
@click.option("--policy", "policy_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--events", "events_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
def policy_eval(policy_file: Path, events_file: Path) -> None:
    """One JSON line per event: the level the policy gives it and whether its stage is omitted."""
    try:
        compiled = load_policy(policy_file.read_bytes())
    except PolicyError as exc:
        _fail("; ".join(exc.errors))
        return
    with events_file.open("rb") as handle:
        for line, event, error in iter_decoded(handle):
            if error is not None:
                click.echo(dumps_str({"line": line.number, "error": error}))
                continue
            if not isinstance(event, dict):
                click.echo(dumps_str({"line": line.number, "error": "not a JSON object"}))
                continue
            decision = compiled.evaluate(attributes_of(event))
            stage = event.get("stage")
            click.echo(
                dumps_str(
                    {
                        "auditID": event.get("auditID"),
                        "stage": stage,
                        "level": decision.level,
                        "omitted": decision.drops(str(stage)),
                        "rule": decision.rule_index,
                    }
                )
            )


@policy.command("lint")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--strict", is_flag=True, help="Exit 1 on warnings too.")
def policy_lint(file: Path, strict: bool) -> None:
    """Warn about secret bodies logged, RequestReceived kept, and rules shadowed by earlier ones."""
    try:
        warnings = lint(load_policy(file.read_bytes()))
    except PolicyError as exc:
        for error in exc.errors:
            err.print(f"[red]error:[/red] {error}", highlight=False)
        raise SystemExit(1) from None
    for warning in warnings:
        err.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
    if not warnings:
        err.print(f"{file}: no findings")
    if warnings and strict:
        raise SystemExit(1)


# ---------------------------------------------------------------- Events poller


@main.command()
@click.option(
    "--kubeconfig",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=lambda: os.environ.get("KUBECONFIG", str(Path.home() / ".kube" / "config")),
    show_default="$KUBECONFIG or ~/.kube/config",
    help="Kubeconfig to reach the cluster with (tokens, client certificates, exec plugins).",
)
@click.option("--context", help="Kubeconfig context (default: its current-context).")
@click.option("--cluster", "cluster_", required=True, callback=cluster_name, help="Cluster name in the lake.")
@lake_option
@click.option("--once", "mode", flag_value="once", default=True, help="One poll cycle, then exit (default).")
@click.option("--follow", "mode", flag_value="follow", help="Keep watching until interrupted.")
@click.option("--timeout", type=click.IntRange(min=3), default=10, show_default=True,
              help="--once: seconds to watch from the checkpoint.")  # fmt: skip
@click.option("--event-ttl", type=click.IntRange(min=60), default=3600, show_default=True,
              help="The API server's --event-ttl (coverage gaps beyond it).")  # fmt: skip
def poll(kubeconfig: Path, context: str | None, cluster_: str, lake: Path, mode: str, timeout: int,
         event_ttl: int) -> None:  # fmt: skip
    """Poll a cluster's Kubernetes Events into the local lake (the deployed poller's core).

    The checkpoint lives in the lake (state/poller/), so the next run resumes where this one stopped;
    without one, or when the server says 410 Gone, Events are listed. `auditlake compact` turns
    the raw Events into the events archive.
    """
    import socket

    from auditlake.events.api import KubeApi, KubeError
    from auditlake.events.auth import KubeconfigCredentials
    from auditlake.events.leases import LeaseError, LocalLeases
    from auditlake.events.poller import EventsPoller, PollStats

    poller = EventsPoller(
        KubeApi(KubeconfigCredentials(str(kubeconfig), context)),
        Landing(LocalStore(lake), "events"),
        LocalLeases(lake / "state" / "poller"),
        cluster_,
        holder=f"{socket.gethostname()}:{os.getpid()}",
        event_ttl=event_ttl,
    )

    def show(stats: PollStats) -> None:
        if stats.skipped:
            _fail(f"{stats.skipped}: another `auditlake poll` is running on this lake")
        counts = {k: getattr(stats, k) for k in ("listed", "watched", "emitted", "quarantined", "relists", "gaps")}
        _print_counts(f"{cluster_} ({stats.api}) at resourceVersion {stats.resource_version}", counts)

    try:
        if mode == "once":
            show(poller.poll(timeout + 5, keep_watching=False))
            return
        err.print(f"following {cluster_}'s Events into {lake}; Ctrl-C to stop")
        while True:
            show(poller.poll(300))
    except (KubeError, LeaseError) as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        err.print("stopped; the next poll resumes from the checkpoint")


# ---------------------------------------------------------------- compaction and queries


@main.command()
@lake_option
def compact(lake: Path) -> None:
    """Compact the local lake's raw landing into its Parquet archive (idempotent: run it any time)."""
    from auditlake.archive.compactor import Compactor
    from auditlake.archive.locks import LocalLocks
    from auditlake.trust.ledger import LocalLedger

    store = LocalStore(lake)
    archive = LocalStore(lake / "archive")
    keys = list(store.list("raw/"))
    started = time.perf_counter()
    compactor = Compactor(store, {"audit": archive, "events": archive}, LocalLocks(lake / ".locks"),
                          ledger=LocalLedger(lake / "state" / "ledger"))  # fmt: skip
    report = compactor.compact(keys)
    _print_counts(
        f"compacted {len(keys)} raw objects in {time.perf_counter() - started:.1f}s",
        {"rows read": report.rows_read, "rows archived": report.rows_written, "duplicates dropped": report.duplicates,
         "files": len(report.files), "quarantined objects": len(report.quarantined), "to retry": len(report.failed)},
    )  # fmt: skip
    if report.failed:
        raise SystemExit(1)


# ---------------------------------------------------------------- tamper evidence


def _local_digests(lake: Path, *, public_key: Path | None = None) -> tuple[dict[str, Store], Any]:
    """The local lake's archive and its signing key (made on first use; when verifying, pass
    ``public_key`` or have the lake's key: verifying never makes one)."""
    from auditlake.trust.digest import LocalSigner, PublicKey

    archive = LocalStore(lake / "archive")
    if public_key is not None:
        return {"audit": archive, "events": archive}, PublicKey.load(public_key)
    return {"audit": archive, "events": archive}, LocalSigner(lake / "state" / "digest-key.pem")


@main.command()
@lake_option
@click.option("--export-public-key", "export", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the signing key's public half (PEM) here: keep it away from the lake, "
                   "for verify --public-key.")  # fmt: skip
def digest(lake: Path, export: Path | None) -> None:
    """Seal everything archived in the local lake so far: a signed digest chained to the last one.

    The key (RSA-3072) is made on first use in LAKE/state/digest-key.pem; a deployed stack signs
    its hourly digests with a KMS key instead. A file whose ledger entry is younger than 10
    minutes and that is not there yet is left for the next digest.
    """
    from auditlake.trust.digest import Digester, DigestError, LocalChainHead
    from auditlake.trust.ledger import LocalLedger

    if not lake.is_dir():
        _fail(f"no lake at {lake}")
    ledger = LocalLedger(lake / "state" / "ledger")
    first = ledger.first_hour()
    # Digests end on a whole second: wait for the next one (and a clock tick more: file times come
    # from the kernel's coarse clock), so whatever the ledger does not hold yet is written after it.
    now = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    time.sleep(max(0.0, (now - datetime.now(UTC)).total_seconds() + 0.05))
    start = datetime.fromisoformat(f"{first}:00:00+00:00") if first else now
    archives, signer = _local_digests(lake)
    try:
        report = Digester(ledger, archives, LocalChainHead(lake / "state" / "digest-head.json"), signer).seal(
            now, start=start, hourly=False
        )
    except DigestError as exc:
        _fail(str(exc))
    for line in report.damaged:
        err.print(f"[yellow]ledger entry unreadable, skipped:[/yellow] {line}")
    for key in report.adopted:
        err.print(f"{key} was written by a digest run that stopped before moving the chain head: adopted")
    for key in report.dropped:
        err.print(f"[yellow]recorded in the ledger, never written (verify reports it):[/yellow] {key}")
    _print_counts("sealed", {"digests": len(report.digests), "files": report.objects,
                             "never written (left out)": len(report.dropped),
                             "still being written (next digest)": len(report.waiting),
                             "unreadable ledger lines": len(report.damaged)})  # fmt: skip
    head = LocalChainHead(lake / "state" / "digest-head.json").load()
    if head:
        err.print(f"chain head {head['sequence']}:{head['sha256']} (record it: verify --expect-head)")
    if export is not None:
        export.write_bytes(signer.public.pem())
        err.print(f"public key written to {export} (keep it away from the lake: verify --public-key)")


@main.command()
@click.option("--lake", type=click.Path(file_okay=False, path_type=Path), help="Local lake.")
@click.option("--stack", help="Deployed stack: its archive buckets, digest key and state table are looked up.")
@click.option("--region", help="AWS region (default: the SDK's).")
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
    """
    from auditlake.trust.digest import ChainHead, DigestError, DynamoChainHead, KmsSigner, LocalChainHead, parse_head
    from auditlake.trust.digest import verify as verify_chain
    from auditlake.trust.ledger import DynamoLedger, Ledger, LocalLedger
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
    head: ChainHead
    ledger: Ledger
    try:
        if lake is not None:
            if not lake.is_dir():
                _fail(f"no lake at {lake}")
            archives, signer = _local_digests_to_verify(lake, public_key)
            head = LocalChainHead(lake / "state" / "digest-head.json")
            ledger = LocalLedger(lake / "state" / "ledger")
        else:
            import boto3

            from auditlake.stores.s3 import S3Store

            session = boto3.session.Session(region_name=region)
            outputs = _stack_outputs(session, str(stack))
            s3 = session.client("s3")
            archives = {"audit": S3Store(s3, outputs["AuditArchiveBucketName"]),
                        "events": S3Store(s3, outputs["EventsArchiveBucketName"])}  # fmt: skip
            # Compared with the retention the digests record (a rule expiring sooner is a finding);
            # never what decides expiry: whoever may change the rules could excuse any removal.
            lifecycle = {name: bucket_rules(s3, outputs[f"{name.capitalize()}ArchiveBucketName"])
                         for name in ("audit", "events")}  # fmt: skip
            signer = KmsSigner(session.client("kms"), outputs["DigestKeyArn"])
            dynamodb = session.client("dynamodb")
            head = DynamoChainHead(dynamodb, outputs["StateTableName"])
            ledger = DynamoLedger(dynamodb, outputs["StateTableName"])
        report = verify_chain(archives, signer, start=since, end=until, head=head, expected=expected,
                              ledger=ledger, now=now, max_age=age, lifecycle=lifecycle)  # fmt: skip
    except (DigestError, StoreError) as exc:
        _fail(str(exc))
    for finding in report.findings:
        click.echo(f"{finding.kind.upper():14} {finding.key}  {finding.detail}")
    if report.expired_files or report.expired_digests:
        err.print(f"expired by retention: {len(report.expired_files)} files, "
                  f"{_sequences(report.expired_digests)} ({report.retention})", highlight=False)  # fmt: skip
    for note in report.notes:
        err.print(note, highlight=False)
    if report.expected_head:
        err.print(report.expected_head, highlight=False)
    if report.unprovable:
        err.print(f"past retention, not yet removed: {len(report.unprovable)} files whose digests S3 "
                  "expired first (no longer provable; S3 removes them next)", highlight=False)  # fmt: skip
    if report.archived:
        err.print(f"in an archive tier (Deep Archive): {len(report.archived)} sealed files present, "
                  "their size checked, their content not read (restore them to check it)", highlight=False)  # fmt: skip
    for line in sorted(set(ledger.damaged)):
        err.print(f"[yellow]ledger entry unreadable, skipped:[/yellow] {line}")
    summary = {"digests": report.digests, "files checked": report.objects, "problems": len(report.findings),
               "not yet sealed": len(report.unsealed)}  # fmt: skip
    _print_counts(f"sealed until {report.sealed_until or 'never'}", summary)
    if report.head:
        err.print(f"chain head {report.head}")
    if not report.ok:
        raise SystemExit(1)
    # Said with what it assumed: what expired by the recorded retention, and whether the head an
    # auditor recorded was checked at all (it may have expired with no digest after it to name it).
    assumed = ""
    if report.expired_files or report.expired_digests:
        assumed = (f"; expired by retention: {len(report.expired_files)} files, "
                   f"{_sequences(report.expired_digests)} ({report.retention})")  # fmt: skip
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


def _local_digests_to_verify(lake: Path, public_key: Path | None) -> tuple[dict[str, Store], Any]:
    from auditlake.trust.digest import DigestError, LocalSigner

    if public_key is not None:
        return _local_digests(lake, public_key=public_key)
    archive = LocalStore(lake / "archive")
    try:
        signer: Any = LocalSigner(lake / "state" / "digest-key.pem", create=False)
    except DigestError:
        signer = _NoKey(lake / "state" / "digest-key.pem")
    return {"audit": archive, "events": archive}, signer


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


@main.command()
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
            engine: queries.LocalEngine | queries.AthenaEngine = _athena_engine(workgroup, database, stack)
        elif lake is not None:
            engine = queries.LocalEngine(lake / "archive")
        else:
            raise click.UsageError("give --lake DIR or --athena")
        result = engine.run(text, values)
    except queries.QueryError as exc:
        _fail(str(exc))
        return
    print_result(result, fmt)


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"expected K=V, got {text!r}", param_hint="--param")
    return key.strip(), value


def _athena_engine(workgroup: str | None, database: str | None, stack: str | None) -> Any:
    import boto3

    from auditlake.query.named import AthenaEngine

    session = boto3.session.Session()
    if stack is not None:
        outputs = _stack_outputs(session, stack)
        workgroup = workgroup or outputs.get("AthenaWorkGroupName")
        database = database or outputs.get("GlueDatabaseName")
    if not workgroup or not database:
        raise click.UsageError("--athena needs --stack, or --workgroup and --database")
    return AthenaEngine(session.client("athena"), workgroup, database)


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


# ---------------------------------------------------------------- summary and demo


@main.command()
@lake_option
def summary(lake: Path) -> None:
    """Counts of what the local lake holds."""
    print_summary(summarise(LocalStore(lake)))


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
    console.print(table)


def _top(counter: Any, n: int = 6) -> str:
    return ", ".join(f"{k} {v}" for k, v in counter.most_common(n)) or "-"


@main.command()
@lake_option
@click.option("--minutes", default=30.0, show_default=True, type=float)
@click.option("--rate", default=20.0, show_default=True, type=float)
@click.option("--seed", default=7, show_default=True, type=int)
def demo(lake: Path, minutes: float, rate: float, seed: int) -> None:
    """synth -> serve (real HTTP) <- replay -> local lake, then a summary."""
    from auditlake.demo.run import run_demo

    run_demo(lake, minutes=minutes, rate=rate, seed=seed)


if __name__ == "__main__":
    main()
