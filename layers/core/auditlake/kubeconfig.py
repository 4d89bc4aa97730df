"""What a cluster operator needs to point kube-apiserver at auditlake."""

from __future__ import annotations

import string
from importlib import resources

from .webhook import TRUNCATE_MAX_BATCH_BYTES

DEFAULT_POLICY_PATH = "/etc/kubernetes/audit/audit-policy.yaml"
DEFAULT_KUBECONFIG_PATH = "/etc/kubernetes/audit/auditlake-webhook.kubeconfig"


def asset(name: str) -> str:
    return resources.files("auditlake").joinpath("assets", name).read_text(encoding="utf-8")


def render_kubeconfig(url: str, token: str) -> str:
    template = string.Template(asset("audit-webhook-kubeconfig.yaml.tmpl"))
    return template.substitute(AUDITLAKE_WEBHOOK_URL=url, AUDITLAKE_TOKEN=token)


def apiserver_flags(
    policy_path: str = DEFAULT_POLICY_PATH, kubeconfig_path: str = DEFAULT_KUBECONFIG_PATH
) -> list[str]:
    """kube-apiserver flags: batch mode, and batch truncation so no POST exceeds Lambda's 6 MB."""
    return [
        f"--audit-policy-file={policy_path}",
        f"--audit-webhook-config-file={kubeconfig_path}",
        "--audit-webhook-mode=batch",
        "--audit-webhook-batch-max-size=400",
        "--audit-webhook-truncate-enabled=true",
        f"--audit-webhook-truncate-max-batch-size={TRUNCATE_MAX_BATCH_BYTES}",
    ]
