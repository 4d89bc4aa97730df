"""What a cluster operator needs to point kube-apiserver at auditlake: the webhook kubeconfig and the
kube-apiserver flags (batching bounded so no POST passes the webhook's body limit; http_api.py says why).

A webhook served with a private CA (``auditlake serve --tls-cert``, the certificate ``cluster add
--kind-config`` makes) is trusted through the kubeconfig's ``certificate-authority-data``: the API
server then verifies serve's certificate against that CA alone, never with verification off.
"""

from __future__ import annotations

import base64
import json
import string
from importlib import resources

import yaml

from auditlake.http_api import BATCH_MAX_EVENTS, TRUNCATE_MAX_BATCH_BYTES, TRUNCATE_MAX_EVENT_BYTES

DEFAULT_POLICY_PATH = "/etc/kubernetes/audit/audit-policy.yaml"
DEFAULT_KUBECONFIG_PATH = "/etc/kubernetes/audit/auditlake-webhook.kubeconfig"


def asset(name: str) -> str:
    return resources.files("auditlake").joinpath("assets", name).read_text(encoding="utf-8")


def render_kubeconfig(url: str, token: str, ca_pem: bytes | None = None) -> str:
    """The webhook kubeconfig; with ``ca_pem``, its cluster trusts that CA (certificate-authority-data)."""
    template = string.Template(asset("audit-webhook-kubeconfig.yaml.tmpl"))
    text = template.substitute(AUDITLAKE_WEBHOOK_URL=url, AUDITLAKE_TOKEN=token)
    if ca_pem is None:
        return text
    # The template has no CA field (the stack's API Gateway has a public certificate): add it to the
    # parsed document rather than splicing text, and say so in place of the template's TLS comment.
    # A plain dict, whatever constructors other code in the process registered on PyYAML's SafeLoader
    # (samcli.yamlhelper.yaml_parse makes its mappings OrderedDicts, which safe_dump cannot write).
    config = json.loads(json.dumps(yaml.safe_load(text)))
    config["clusters"][0]["cluster"]["certificate-authority-data"] = base64.b64encode(ca_pem).decode("ascii")
    header = (
        "# kube-apiserver --audit-webhook-config-file for auditlake serve, as `auditlake cluster add` wrote it.\n"
        "# TLS is verified against the private CA in certificate-authority-data (it signed serve's certificate\n"
        "# only). Keep this file readable by kube-apiserver only (0600): the token is the cluster's identity.\n"
    )
    return header + yaml.safe_dump(config, sort_keys=False)


def apiserver_args(
    policy_path: str = DEFAULT_POLICY_PATH,
    kubeconfig_path: str = DEFAULT_KUBECONFIG_PATH,
    batch_max_wait: str | None = None,
) -> dict[str, str]:
    """kube-apiserver flags by name (no dashes, as kubeadm's extraArgs take them): batch mode, at most
    BATCH_MAX_EVENTS events of at most TRUNCATE_MAX_EVENT_BYTES each per POST, so every batch stays
    under the webhook's body limit. ``batch_max_wait`` (kube-apiserver's default: 30s) is how long a
    batch that is not full waits before it is sent."""
    args = {
        "audit-policy-file": policy_path,
        "audit-webhook-config-file": kubeconfig_path,
        "audit-webhook-mode": "batch",
        "audit-webhook-batch-max-size": str(BATCH_MAX_EVENTS),
    }
    if batch_max_wait is not None:
        args["audit-webhook-batch-max-wait"] = batch_max_wait
    return args | {
        "audit-webhook-truncate-enabled": "true",
        "audit-webhook-truncate-max-event-size": str(TRUNCATE_MAX_EVENT_BYTES),
        "audit-webhook-truncate-max-batch-size": str(TRUNCATE_MAX_BATCH_BYTES),
    }


def apiserver_flags(
    policy_path: str = DEFAULT_POLICY_PATH,
    kubeconfig_path: str = DEFAULT_KUBECONFIG_PATH,
    batch_max_wait: str | None = None,
) -> list[str]:
    """``apiserver_args`` as command-line flags."""
    return [f"--{name}={value}" for name, value in apiserver_args(policy_path, kubeconfig_path, batch_max_wait).items()]
