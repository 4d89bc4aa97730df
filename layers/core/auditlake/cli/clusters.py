"""``auditlake cluster``: register clusters, their webhook tokens and their Events polling.

``cluster add NAME --lake L --kind-config FILE`` (or ``--kubeadm-patch FILE``) also connects a local
cluster to ``auditlake serve``: it writes under ``L/clusters/NAME/`` the audit policy, a TLS
certificate for serve (and the private CA that signed it, trusted by the webhook kubeconfig), the
webhook kubeconfig (0600), and the kind config or kubeadm ClusterConfiguration that mounts and
uses them; it prints the ``serve`` command that matches.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import click

from auditlake.cli.options import cluster_name, lake_option
from auditlake.cli.render import err, fail
from auditlake.cli.stack import STATE_TABLE, WEBHOOK_URL, stack_outputs
from auditlake.clusters.control_plane_config import (
    KUBEADM_VERSIONS,
    ApiServerFiles,
    KubeadmVersion,
    dump,
    kind_config,
    kubeadm_cluster_configuration,
    static_pod_text,
)
from auditlake.clusters.docker_network import (
    DockerUnavailable,
    WebhookHost,
    find_webhook_host,
    listen_address,
    valid_host,
)
from auditlake.clusters.registry import (
    AlreadyRegistered,
    DynamoRegistry,
    PollConfig,
    RegistryError,
    new_token,
    token_hash,
)
from auditlake.clusters.serve_tls import covers, issue_serve_cert
from auditlake.clusters.webhook_kubeconfig import (
    DEFAULT_KUBECONFIG_PATH,
    DEFAULT_POLICY_PATH,
    apiserver_flags,
    asset,
    render_kubeconfig,
)
from auditlake.ingest.serve import PATH as SERVE_PATH
from auditlake.local_lake import LocalLake

DEFAULT_WEBHOOK_PORT = 8443
EXAMPLE_SQL = "SELECT verb, count(*) AS n FROM audit GROUP BY verb ORDER BY n DESC"


@click.group()
def cluster() -> None:
    """Register clusters that send audit events (tokens, webhook kubeconfigs, kind/kubeadm configs).

    \b
    Examples:
      auditlake cluster add kind --lake lake --kind-config kind.yaml     # a local kind cluster
      auditlake cluster add prod --stack my-auditlake > prod.kubeconfig  # a deployed stack
      auditlake cluster rotate-token prod --stack my-auditlake --kubeconfig-out prod.kubeconfig
    """


def _host_name(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    # An address or a DNS name only: it becomes the URL's host and the certificate's subjectAltName.
    if value is None or valid_host(value):
        return value
    raise click.BadParameter(f"{value!r} is not an IP address or a DNS name (no scheme, port or path)")


def _go_duration(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    # kube-apiserver parses the flag with Go's time.ParseDuration: refuse here what it would refuse at start.
    if not re.fullmatch(r"(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+", value):
        raise click.BadParameter(f"{value!r} is not a duration such as 5s, 500ms or 1m30s")
    return value


@cluster.command("add")
@click.argument("name", callback=cluster_name)
@lake_option(required=False)
@click.option(
    "--kind-config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="With --lake: write a kind cluster config here that sends the new cluster's audit events to "
    "`auditlake serve` over TLS (then: kind create cluster --config FILE).",
)
@click.option(
    "--kubeadm-patch",
    type=click.Path(dir_okay=False, path_type=Path),
    help="With --lake: write a kubeadm ClusterConfiguration here (apiServer flags and hostPath volumes) "
    "for `kubeadm init --config`; the static pod lines for a running node are printed.",
)
@click.option(
    "--kubeadm-api-version",
    type=click.Choice(KUBEADM_VERSIONS),
    default=KUBEADM_VERSIONS[0],
    show_default=True,
    help="kubeadm config API of --kubeadm-patch: v1beta4 (kubeadm 1.31+) or v1beta3 (1.22-1.30).",
)
@click.option(
    "--webhook-host",
    callback=_host_name,
    help="Address kube-apiserver reaches this machine at, for --kind-config/--kubeadm-patch "
    "(kind default: asked of Docker: host.docker.internal on Docker Desktop, else the gateway of the "
    "`kind` docker network, else of `bridge`; kubeadm: required).",
)
@click.option(
    "--webhook-port",
    type=click.IntRange(1, 65535),
    help=f"Port `serve` listens on for --kind-config/--kubeadm-patch  [default: {DEFAULT_WEBHOOK_PORT}]",
)
@click.option(
    "--batch-max-wait",
    default="5s",
    show_default=True,
    callback=_go_duration,
    help="kube-apiserver's --audit-webhook-batch-max-wait for --kind-config/--kubeadm-patch: the longest "
    "an event waits for its batch to fill (kube-apiserver's default is 30s).",
)
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
    kind_config: Path | None,
    kubeadm_patch: Path | None,
    kubeadm_api_version: str,
    webhook_host: str | None,
    webhook_port: int | None,
    batch_max_wait: str,
    table: str | None,
    stack: str | None,
    url: str | None,
    region: str | None,
    kubeconfig_out: Path | None,
    policy_path: str,
    kubeconfig_path: str,
    **poll_options: Any,  # --eks ... --insecure-skip-tls-verify, read by _poll_config
) -> None:
    """Create a token for cluster NAME and print its webhook kubeconfig and kube-apiserver flags
    (or, with --kind-config/--kubeadm-patch, write the kind or kubeadm config for a local lake).

    Only the token's SHA-256 is stored. The kubeconfig goes to stdout (or --kubeconfig-out);
    instructions go to stderr, so `auditlake cluster add c1 --stack s > c1.kubeconfig` works.

    With --eks, or --server/--ca-file/--token-secret, the stack's Events poller also polls the
    cluster (an EKS cluster needs no webhook token; a cluster already registered only gains polling).

    With --lake and --kind-config (or --kubeadm-patch), the files kube-apiserver reads are written
    under LAKE/clusters/NAME/ (policy, webhook kubeconfig 0600 trusting serve's private CA, serve's
    certificate and key); the command prints the `serve` line to run. Run again to rewrite them: the
    token, and the certificate while it fits the webhook host, are kept.

    \b
    Examples:
      # a local kind cluster whose audit events land in ./lake
      auditlake cluster add kind --lake lake --kind-config kind.yaml
      kind create cluster --config kind.yaml
    \b
      # a kubeadm control plane that reaches this machine at 192.168.1.20
      auditlake cluster add lab --lake lake --kubeadm-patch kubeadm-audit.yaml --webhook-host 192.168.1.20
    \b
      # a deployed stack: the webhook kubeconfig to stdout, the kube-apiserver flags to stderr
      auditlake cluster add prod-eu --stack my-auditlake > prod-eu-webhook.kubeconfig
    """
    if sum(x is not None for x in (lake, table, stack)) != 1:
        raise click.UsageError("give exactly one of --lake, --table, --stack")
    poll = _poll_config(name, **poll_options)
    if poll is not None and lake is not None:
        raise click.UsageError("a local lake polls with `auditlake poll --kubeconfig`; --eks/--server need --stack")
    if kind_config is not None or kubeadm_patch is not None:
        if lake is None:
            raise click.UsageError("--kind-config/--kubeadm-patch connect a cluster to `auditlake serve`: give --lake")
        if url is not None or kubeconfig_out is not None:
            raise click.UsageError(
                "--url/--kubeconfig-out do not go with --kind-config/--kubeadm-patch: the webhook is "
                "https://<--webhook-host>:<--webhook-port> and its kubeconfig is written under the lake"
            )
        _connect_local_cluster(
            name, lake, kind_config, kubeadm_patch, cast(KubeadmVersion, kubeadm_api_version),
            webhook_host, webhook_port or DEFAULT_WEBHOOK_PORT, batch_max_wait, policy_path, kubeconfig_path,
        )  # fmt: skip
        return
    if webhook_host is not None or webhook_port is not None:
        raise click.UsageError("--webhook-host/--webhook-port go with --kind-config or --kubeadm-patch")
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

    \b
    Example:
      auditlake cluster rotate-token prod --stack my-auditlake --kubeconfig-out prod.kubeconfig
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
    """Revoke one of cluster NAME's webhook tokens (by its SHA-256, as rotate-token lists it).

    \b
    Example:
      auditlake cluster revoke-token prod 3f2a...e9 --stack my-auditlake
    """
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


def _connect_local_cluster(
    name: str,
    lake: Path,
    kind_out: Path | None,
    kubeadm_out: Path | None,
    kubeadm_version: KubeadmVersion,
    given_host: str | None,
    port: int,
    batch_max_wait: str,
    policy_path: str,
    kubeconfig_path: str,
) -> None:
    """Write the files a kind or kubeadm control plane needs to send to `serve` over TLS; print the rest."""

    def say(text: str) -> None:
        err.print(text, highlight=False, markup=False)  # paths, an IPv6 [host] and YAML are text, not markup

    where = _webhook_host(given_host, kind=kind_out is not None)
    token_file = LocalLake(lake).token_file(name)
    if token_file.exists():
        token = token_file.read_text(encoding="utf-8").strip()
        say(f"cluster {name!r} is registered in this lake already: its token ({token_file}) is kept")
    else:
        token = new_token()
        _write_private(token_file, token + "\n")
        say(f"token written to {token_file} (0600)")
    base = LocalLake(lake).cluster_dir(name).resolve()
    base.mkdir(parents=True, exist_ok=True)
    policy, kubeconfig = base / "audit-policy.yaml", base / "webhook.kubeconfig"
    ca_file, cert_file, key_file = base / "ca.crt", base / "serve.crt", base / "serve.key"
    policy.write_text(asset("audit-policy.yaml"), encoding="utf-8")
    if cert_file.exists() and ca_file.exists() and key_file.exists() and covers(cert_file.read_bytes(), where.host):
        say(f"serve's certificate {cert_file} names {where.host} already: kept")
    else:
        issued = issue_serve_cert(where.host)
        ca_file.write_bytes(issued.ca_pem)
        cert_file.write_bytes(issued.cert_pem)
        _write_private(key_file, issued.key_pem.decode("ascii"))
        say(f"serve's TLS certificate for {where.host} written to {cert_file} (key {key_file}, 0600)")
    url_host = f"[{where.host}]" if ":" in where.host else where.host
    url = f"https://{url_host}:{port}{SERVE_PATH}"
    _write_private(kubeconfig, render_kubeconfig(url, token, ca_file.read_bytes()))
    say(f"webhook kubeconfig for {url} written to {kubeconfig} (0600)")
    files = ApiServerFiles(policy, kubeconfig, policy_path, kubeconfig_path, batch_max_wait)
    if kind_out is not None:
        header = (f"kind cluster {name!r} sending its audit events to auditlake serve at {url}\n"
                  f"(written by `auditlake cluster add {name} --lake {lake} --kind-config {kind_out}`).\n"
                  f"Create it with: kind create cluster --config {kind_out}")  # fmt: skip
        kind_out.write_text(dump(kind_config(name, files), header), encoding="utf-8")
        say(f"kind config written to {kind_out}")
    if kubeadm_out is not None:
        header = (f"kubeadm ClusterConfiguration ({kubeadm_version}): kube-apiserver sends its audit events to\n"
                  f"auditlake serve at {url}. Merge apiServer into your kubeadm config for `kubeadm init\n"
                  f"--config`; first copy {policy} to {policy_path} and {kubeconfig}\n"
                  f"to {kubeconfig_path} (mode 0600) on every control-plane node.")  # fmt: skip
        document = kubeadm_cluster_configuration(files, kubeadm_version)
        kubeadm_out.write_text(dump(document, header), encoding="utf-8")
        say(f"kubeadm ClusterConfiguration written to {kubeadm_out}")
    say(f"\nwebhook host {where.host}: {where.why}")
    if where.listen == "0.0.0.0":  # noqa: S104 - comparing, not binding
        say(
            "serve listens on every interface: anyone who reaches this machine can connect; the token and TLS "
            "keep them out (a firewall rule limiting the port to the cluster's nodes is better)"
        )
    serve = shlex.join([_program(), "serve", "--lake", str(lake), "--cluster", name, "--token-file", str(token_file),
                        "--host", where.listen, "--port", str(port), "--tls-cert", str(cert_file),
                        "--tls-key", str(key_file)])  # fmt: skip
    say("\n1. start the webhook and keep it running (stdout holds this line alone: `> serve.sh`, then `sh serve.sh`):")
    say(f"   {serve}")
    click.echo(serve)
    if kind_out is not None:
        say("2. create the cluster:")
        say(f"   kind create cluster --config {shlex.quote(str(kind_out))}")
        say("3. its Events too:")
        poll = [_program(), "poll", "--lake", str(lake), "--cluster", name, "--context", f"kind-{name}"]
        say(f"   {shlex.join(poll)}")
    if kubeadm_out is not None:
        say(
            f"2. on every control-plane node: {policy} to {policy_path} (0644) and {kubeconfig} to "
            f"{kubeconfig_path} (0600: it holds the token)"
        )
        say(
            f"3. a new cluster: merge apiServer of {kubeadm_out} into your kubeadm config (kubeadm init --config);"
            " a running node: edit its static pod (the kubelet restarts kube-apiserver when the file changes):"
        )
        say(static_pod_text(files).rstrip("\n"))
    compact = shlex.join([_program(), "compact", "--lake", str(lake)])
    query = shlex.join([_program(), "query", "--lake", str(lake), "--sql", EXAMPLE_SQL])
    say(f"then: {compact} && {query}")


def _program() -> str:
    """How to run auditlake again as this process was run: ``.venv/bin/auditlake`` stays that (the
    printed serve line then works without activating the venv); ``python -m`` and others: auditlake."""
    argv0 = sys.argv[0] if sys.argv else ""
    return argv0 if Path(argv0).name == "auditlake" else "auditlake"


def _webhook_host(given: str | None, *, kind: bool) -> WebhookHost:
    if given is not None:
        return WebhookHost(given, listen_address(given), "given with --webhook-host")
    if not kind:
        raise click.UsageError(
            "--kubeadm-patch needs --webhook-host: the address the control-plane nodes reach this machine at"
        )
    try:
        return find_webhook_host()
    except DockerUnavailable as exc:
        fail(f"cannot ask Docker where a kind node reaches this machine: {exc} "
             "(start Docker, or pass --webhook-host ADDRESS)")  # fmt: skip


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
