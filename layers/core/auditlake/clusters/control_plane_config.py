"""Configuration that turns a control-plane node's kube-apiserver into an auditlake sender.

Contract: from the two files kube-apiserver reads (the audit policy and the webhook kubeconfig, on
this machine and at their paths on the node), build

- ``kind_config``: a kind ``Cluster`` (kind.x-k8s.io/v1alpha4) whose control-plane node bind-mounts
  both files (``extraMounts``, read-only) and whose ``kubeadmConfigPatches`` add the audit flags and
  the static pod's ``hostPath`` volumes to kubeadm's ClusterConfiguration, so ``kind create cluster
  --config`` is the only step;
- ``kubeadm_cluster_configuration``: the same apiServer settings as a kubeadm ClusterConfiguration
  (v1beta4: extraArgs is a list of name/value; v1beta3: a map) for ``kubeadm init --config``;
- ``static_pod_edit``: what to add by hand to a running node's
  ``/etc/kubernetes/manifests/kube-apiserver.yaml`` (command flags, volumeMounts, volumes).

Field names follow kind's v1alpha4 Go types and kubeadm's v1beta3/v1beta4 types (the test fixtures
under tests/fixtures/kind/ encode them, with the source commits).

Why the kind patch has no ``apiVersion``: kind applies a patch only to documents its ``kind`` and
``apiVersion`` match, and generates ClusterConfiguration v1beta3 for Kubernetes < 1.36 and v1beta4
from 1.36 (kind v0.32+). A patch without an apiVersion matches either, and kind converts its
map-form ``extraArgs`` to v1beta4's list itself (pkg/internal/patch/kubeadm_merge.go); a v1beta4
list-form patch would replace v1beta3's map and break kubeadm on older node images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from auditlake.clusters.webhook_kubeconfig import apiserver_args

KIND_API_VERSION = "kind.x-k8s.io/v1alpha4"
KUBEADM_GROUP = "kubeadm.k8s.io"
KubeadmVersion = Literal["v1beta4", "v1beta3"]
KUBEADM_VERSIONS: tuple[KubeadmVersion, ...] = ("v1beta4", "v1beta3")
# Volume names in the kube-apiserver static pod: DNS labels, distinct from kubeadm's own (k8s-certs, ...).
POLICY_VOLUME = "auditlake-audit-policy"
KUBECONFIG_VOLUME = "auditlake-webhook-kubeconfig"


@dataclass(frozen=True)
class ApiServerFiles:
    """The files kube-apiserver reads: where they are on this machine and where on the node."""

    policy_host: Path  # absolute: docker resolves a relative bind mount against kind's working directory
    kubeconfig_host: Path
    policy_path: str  # on the node (in kind: in the node container), and the same path in the static pod
    kubeconfig_path: str
    batch_max_wait: str | None = None

    def args(self) -> dict[str, str]:
        return apiserver_args(self.policy_path, self.kubeconfig_path, self.batch_max_wait)

    def volumes(self) -> list[tuple[str, str]]:
        return [(POLICY_VOLUME, self.policy_path), (KUBECONFIG_VOLUME, self.kubeconfig_path)]


def _extra_volumes(files: ApiServerFiles) -> list[dict[str, Any]]:
    # hostPath is the node's path: kubeadm makes it a hostPath volume of the static pod, mounted at
    # the same path in the kube-apiserver container. File: the kubelet refuses to start the pod if
    # the file is missing, rather than creating an empty directory there.
    return [
        {"name": name, "hostPath": path, "mountPath": path, "readOnly": True, "pathType": "File"}
        for name, path in files.volumes()
    ]


def _api_server(files: ApiServerFiles, extra_args_as_list: bool) -> dict[str, Any]:
    args = files.args()
    extra_args: Any = [{"name": k, "value": v} for k, v in args.items()] if extra_args_as_list else args
    return {"extraArgs": extra_args, "extraVolumes": _extra_volumes(files)}


def kind_config(name: str, files: ApiServerFiles) -> dict[str, Any]:
    """A kind Cluster: one control-plane node that mounts both files, and the apiServer patch."""
    patch = {"kind": "ClusterConfiguration", "apiServer": _api_server(files, extra_args_as_list=False)}
    mounts = [
        {"hostPath": str(files.policy_host), "containerPath": files.policy_path, "readOnly": True},
        {"hostPath": str(files.kubeconfig_host), "containerPath": files.kubeconfig_path, "readOnly": True},
    ]
    return {
        "kind": "Cluster",
        "apiVersion": KIND_API_VERSION,
        "name": name,  # kind's cluster name: its kubeconfig context is kind-<name>
        "nodes": [{"role": "control-plane", "extraMounts": mounts}],
        # kind takes each patch as a YAML string (types.go: KubeadmConfigPatches []string).
        "kubeadmConfigPatches": [yaml.safe_dump(patch, sort_keys=False)],
    }


def kubeadm_cluster_configuration(files: ApiServerFiles, version: KubeadmVersion = "v1beta4") -> dict[str, Any]:
    """A kubeadm ClusterConfiguration holding only the apiServer settings (merge it into yours)."""
    return {
        "apiVersion": f"{KUBEADM_GROUP}/{version}",
        "kind": "ClusterConfiguration",
        "apiServer": _api_server(files, extra_args_as_list=version == "v1beta4"),
    }


def static_pod_edit(files: ApiServerFiles) -> dict[str, Any]:
    """What a running node's kube-apiserver static pod needs added (Pod field names): flags to
    ``spec.containers[0].command``, mounts to its ``volumeMounts``, volumes to ``spec.volumes``."""
    return {
        "command": [f"--{k}={v}" for k, v in files.args().items()],
        "volumeMounts": [{"name": name, "mountPath": path, "readOnly": True} for name, path in files.volumes()],
        "volumes": [{"name": name, "hostPath": {"path": path, "type": "File"}} for name, path in files.volumes()],
    }


def static_pod_text(files: ApiServerFiles) -> str:
    """``static_pod_edit`` as the YAML lines to paste, each list under the field it belongs to."""
    edit = static_pod_edit(files)

    def block(items: list[Any], indent: int) -> str:
        text = yaml.safe_dump(items, sort_keys=False, width=1000)
        return "".join(" " * indent + line + "\n" for line in text.splitlines())

    return (
        "# /etc/kubernetes/manifests/kube-apiserver.yaml: add to spec.containers[0].command:\n"
        + block(edit["command"], 4)
        + "# ... to spec.containers[0].volumeMounts:\n"
        + block(edit["volumeMounts"], 4)
        + "# ... and to spec.volumes:\n"
        + block(edit["volumes"], 2)
    )


class _LiteralDumper(yaml.SafeDumper):
    """Multi-line strings (kind's patches) as literal blocks, readable as the YAML they hold."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_LiteralDumper.add_representer(str, _str)


def dump(document: dict[str, Any], header: str) -> str:
    """YAML with a comment header (each line of ``header`` commented)."""
    comment = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines())
    return comment + yaml.dump(document, Dumper=_LiteralDumper, sort_keys=False, width=1000)
