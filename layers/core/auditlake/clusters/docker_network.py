"""Where a kind node's kube-apiserver reaches ``auditlake serve`` on this machine, asked of Docker.

Contract: ``find_webhook_host(run)`` returns the address (and why that one) that the API server in a
kind node container connects to for a webhook served on the host, and the address ``serve`` should
listen on. ``run`` executes a ``docker`` command and returns its stdout, or raises
``DockerUnavailable``; tests pass a fake.

The order, and why:

1. Docker Desktop (macOS, Windows, and Docker Desktop on Linux) or any Docker that is not native
   Linux: containers run in a VM, so the docker networks' gateways are the VM's, not this machine's.
   The VM forwards the name ``host.docker.internal`` to this machine (OrbStack and colima name it
   too); ``serve`` then listens on 0.0.0.0.
2. Native Linux with a ``kind`` network (kind made it for an earlier cluster, and reuses it; or the
   network ``KIND_EXPERIMENTAL_DOCKER_NETWORK`` names, as kind reads that variable): its
   IPv4 gateway is this machine's address on that bridge. ``serve`` listens on it alone, so only
   containers (and this machine) can connect, not the rest of the network.
3. Native Linux, no ``kind`` network yet: the default ``bridge`` network's gateway (docker0, usually
   172.17.0.1) is also an address of this machine, and a kind node reaches it through its own
   gateway (the host accepts packets for any of its addresses). Same listening rule as 2.

Rootless Docker keeps its networks in its own namespace: their gateways are not this machine's, so
``find_webhook_host`` refuses to guess (``--webhook-host`` then). A host firewall that drops traffic
from containers to the host (ufw's default INPUT policy) blocks all three: allow the port from the
docker subnets.
"""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass

DOCKER_DESKTOP_HOST = "host.docker.internal"
KIND_NETWORK = "kind"  # kind's network; KIND_EXPERIMENTAL_DOCKER_NETWORK names another, as kind reads it
GATEWAYS = "{{range .IPAM.Config}}{{.Gateway}} {{end}}"
INFO = (
    "{{.OperatingSystem}}|{{range .SecurityOptions}}{{.}} {{end}}"  # e.g. "Ubuntu 24.04|name=seccomp,... name=rootless"
)


class DockerUnavailable(RuntimeError):
    """The docker CLI is missing, the daemon does not answer, or the command failed (its message)."""


Run = Callable[[list[str]], str]


@dataclass(frozen=True)
class WebhookHost:
    host: str  # what the webhook kubeconfig's URL and the serve certificate name
    listen: str  # what `auditlake serve --host` binds
    why: str


def run_docker(args: list[str]) -> str:
    """``docker ARGS``' stdout; DockerUnavailable with docker's own message when it fails."""
    try:
        # The user's docker on PATH, as kind itself runs it; the arguments are built here.
        done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=20, check=False)  # noqa: S603, S607
    except FileNotFoundError:
        raise DockerUnavailable("docker is not installed (no `docker` on PATH)") from None
    except subprocess.TimeoutExpired:
        raise DockerUnavailable("`docker` did not answer within 20 s") from None
    if done.returncode != 0:
        message = (done.stderr or done.stdout).strip().splitlines()
        raise DockerUnavailable(message[-1] if message else f"docker {' '.join(args)} exited {done.returncode}")
    return done.stdout


def ipv4_gateway(run: Run, network: str) -> str | None:
    """The network's IPv4 gateway, or None when it does not exist or has none (IPv6 only)."""
    try:
        out = run(["network", "inspect", network, "--format", GATEWAYS])
    except DockerUnavailable:
        return None
    for word in out.split():
        try:
            if ipaddress.ip_address(word).version == 4:
                return word
        except ValueError:
            continue
    return None


def find_webhook_host(
    run: Run = run_docker, platform: str = sys.platform, environ: Mapping[str, str] = os.environ
) -> WebhookHost:
    """Where a kind node reaches this machine (see the module docstring); DockerUnavailable when the
    daemon cannot be asked."""
    network = environ.get("KIND_EXPERIMENTAL_DOCKER_NETWORK") or KIND_NETWORK
    system, _, security = run(["info", "--format", INFO]).strip().partition("|")
    if platform != "linux" or "Docker Desktop" in system:
        return WebhookHost(DOCKER_DESKTOP_HOST, "0.0.0.0",  # noqa: S104 - the VM connects from outside the loopback
                           f"Docker runs in a VM ({system or platform}): its containers reach this machine "
                           f"as {DOCKER_DESKTOP_HOST}")  # fmt: skip
    if "rootless" in security:
        raise DockerUnavailable(
            "Docker runs rootless: its networks' gateways are in its own network namespace, not this machine's "
            "addresses, so the address kind's nodes reach this machine at cannot be told from here"
        )
    gateway = ipv4_gateway(run, network)
    if gateway is not None:
        return WebhookHost(gateway, gateway, f"the gateway of the docker network {network!r}")
    gateway = ipv4_gateway(run, "bridge")
    if gateway is not None:
        return WebhookHost(
            gateway, gateway,
            f"no docker network {network!r} yet: the default bridge's gateway, an address of this machine "
            "that kind's nodes reach too",
        )  # fmt: skip
    raise DockerUnavailable(f"neither the {network!r} nor the 'bridge' docker network has an IPv4 gateway")


def listen_address(host: str) -> str:
    """Where serve listens for a webhook host given by hand: the address itself when it is an IP (one
    interface only), every interface for a name (it may resolve to any of them)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return "0.0.0.0"  # noqa: S104 - a DNS name: the address it resolves to is not known here
    return host


_DNS_NAME = re.compile(
    r"(?=.{1,253}$)([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*", re.I
)


def valid_host(host: str) -> bool:
    """An IP address or a DNS name (what a URL's host and a certificate's subjectAltName can be)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return bool(_DNS_NAME.fullmatch(host))
    return True
