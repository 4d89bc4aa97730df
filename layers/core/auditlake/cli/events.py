"""``auditlake poll``: a cluster's Kubernetes Events into the local lake."""

from __future__ import annotations

import os
from pathlib import Path

import click

from auditlake.cli.options import build_detector, cluster_name, lake_option, lake_watch, rules_options
from auditlake.cli.render import err, fail, print_counts
from auditlake.local_lake import LocalLake


@click.command()
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
@rules_options
def poll(kubeconfig: Path, context: str | None, cluster_: str, lake: Path, mode: str, timeout: int,
         event_ttl: int, rule_dirs: tuple[Path, ...], no_builtin_rules: bool, alert_level: str) -> None:  # fmt: skip
    """Poll a cluster's Kubernetes Events into the local lake (the deployed poller's core).

    The checkpoint lives in the lake (state/poller/), so the next run resumes where this one stopped;
    without one, or when the server says 410 Gone, Events are listed. `auditlake compact` turns
    the raw Events into the events archive.

    \b
    Examples:
      auditlake poll --context kind-kind --cluster kind --lake /tmp/lake
      auditlake poll --cluster prod --lake /tmp/lake --follow
    """
    import socket

    from auditlake.events.api import KubeApi, KubeError
    from auditlake.events.auth import KubeconfigCredentials
    from auditlake.events.leases import LeaseError
    from auditlake.events.poller import EventsPoller, PollStats

    local = LocalLake(lake)
    detector, rules = build_detector(lake, rule_dirs, no_builtin_rules)
    api = KubeApi(KubeconfigCredentials(str(kubeconfig), context))
    # The kubeconfig is read now, before the poll takes the cluster's lease: one that does not load
    # (not YAML, no such context) is an error line here, not a lease left held until it expires.
    try:
        if not api.verifies_tls:
            err.print("[yellow]warning:[/yellow] TLS verification is OFF for this cluster "
                      "(insecure-skip-tls-verify in its kubeconfig)", highlight=False)  # fmt: skip
    except KubeError as exc:
        fail(f"{exc} (kubectl config get-contexts --kubeconfig {kubeconfig} lists its contexts)")
    poller = EventsPoller(
        api,
        local.landing("events"),
        local.leases(),
        cluster_,
        holder=f"{socket.gethostname()}:{os.getpid()}",
        event_ttl=event_ttl,
        detector=detector,
        watch=lake_watch(lake, rules=rules, alert_level=alert_level),
    )

    def show(stats: PollStats) -> None:
        if stats.skipped:
            fail(f"{stats.skipped}: another `auditlake poll` is running on this lake")
        names = ("listed", "watched", "emitted", "quarantined", "relists", "gaps", "findings")
        counts = {k: getattr(stats, k) for k in names}
        print_counts(f"{cluster_} ({stats.api}) at resourceVersion {stats.resource_version}", counts)

    try:
        if mode == "once":
            show(poller.poll(timeout + 5, keep_watching=False))
            return
        err.print(f"following {cluster_}'s Events into {lake}; Ctrl-C to stop")
        while True:
            show(poller.poll(300))
    except KubeError as exc:
        fail(kube_problem(str(exc), api.server))
    except LeaseError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        err.print("stopped; the next poll resumes from the checkpoint")


# What urllib3 says (inside the client's message) -> what it means for the user, and what to check.
_KUBE_CAUSES = (
    ("Connection refused", "connection refused (is the cluster running? kubectl cluster-info)"),
    ("Name or service not known", "the server's name does not resolve (check the kubeconfig's server)"),
    ("CERTIFICATE_VERIFY_FAILED", "its certificate does not verify against the kubeconfig's certificate-authority"),
    ("timed out", "no answer in time (is the server reachable from here?)"),
)


def kube_problem(message: str, host: str) -> str:
    """A Kubernetes API failure as one line: urllib3's nested retry text replaced by its cause."""
    for needle, meaning in _KUBE_CAUSES:
        if needle in message:
            return f"cannot reach the cluster's API server {host}: {meaning}"
    return " ".join(message.split())
