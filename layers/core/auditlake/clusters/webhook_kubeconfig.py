"""What a cluster operator needs to point kube-apiserver at auditlake: the webhook kubeconfig and the
kube-apiserver flags (batching bounded so no POST passes the webhook's body limit; http_api.py says why)."""

from __future__ import annotations

import string
from importlib import resources

from auditlake.http_api import BATCH_MAX_EVENTS, TRUNCATE_MAX_BATCH_BYTES, TRUNCATE_MAX_EVENT_BYTES

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
    """kube-apiserver flags: batch mode, at most BATCH_MAX_EVENTS events of at most
    TRUNCATE_MAX_EVENT_BYTES each per POST, so every batch stays under the webhook's body limit."""
    return [
        f"--audit-policy-file={policy_path}",
        f"--audit-webhook-config-file={kubeconfig_path}",
        "--audit-webhook-mode=batch",
        f"--audit-webhook-batch-max-size={BATCH_MAX_EVENTS}",
        "--audit-webhook-truncate-enabled=true",
        f"--audit-webhook-truncate-max-event-size={TRUNCATE_MAX_EVENT_BYTES}",
        f"--audit-webhook-truncate-max-batch-size={TRUNCATE_MAX_BATCH_BYTES}",
    ]
