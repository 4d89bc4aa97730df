"""``auditlake cluster``: register clusters, their webhook tokens and their Events polling."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from auditlake.cli.options import cluster_name
from auditlake.cli.render import err, fail
from auditlake.cli.stack import STATE_TABLE, WEBHOOK_URL, stack_outputs
from auditlake.clusters.registry import (
    AlreadyRegistered,
    DynamoRegistry,
    PollConfig,
    RegistryError,
    new_token,
    token_hash,
)
from auditlake.clusters.webhook_kubeconfig import (
    DEFAULT_KUBECONFIG_PATH,
    DEFAULT_POLICY_PATH,
    apiserver_flags,
    render_kubeconfig,
)
from auditlake.local_lake import LocalLake


@click.group()
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
            fail(str(exc))
        err.print(f"cluster {name!r} registered in {table}: its Events are polled with the poller role's IAM token.")
        err.print("Give that role read access to Events (README: Poll Kubernetes Events):")
        err.print(f"  aws eks create-access-entry --cluster-name {poll.eks_name} --principal-arn <EventsPollerRoleArn>"
                  " --kubernetes-groups auditlake:events-reader", highlight=False, soft_wrap=True)  # fmt: skip
        err.print("  kubectl apply -f infra/kubernetes/events-reader-rbac.yaml", highlight=False)
        return
    token = new_token()
    if lake is not None:
        token_file = LocalLake(lake).token_file(name)
        if token_file.exists():
            fail(f"{token_file} exists: cluster {name!r} is already registered in this lake")
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
        except AlreadyRegistered as exc:
            if poll is None:
                fail(str(exc))
            registry.set_polling(name, poll, created_at=_now())
            err.print(f"cluster {name!r} was registered already: its Events are now polled from {poll.server}")
            return
        except RegistryError as exc:
            fail(str(exc))
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
        fail(str(exc))
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
        fail(str(exc))
    err.print(f"token {sha256[:12]}... of {name!r} revoked; the webhook refuses it within a minute (its cache)")


def _registry(table: str | None, stack: str | None, region: str | None) -> tuple[DynamoRegistry, str, str | None]:
    """The registry and table name of --table or --stack, and the stack's webhook URL when it has one."""
    import boto3

    if (table is None) == (stack is None):
        raise click.UsageError("give exactly one of --table, --stack")
    session = boto3.session.Session(region_name=region)
    url = None
    if stack is not None:
        outputs = stack_outputs(session, stack)
        table, url = outputs.get(STATE_TABLE), outputs.get(WEBHOOK_URL)
        if not table:
            fail(f"stack {stack} has no {STATE_TABLE} output")
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
