"""Synthetic audit traffic of a small cluster, with planted incidents.

Three nodes, kubelets, controllers, the scheduler, CoreDNS, two humans with kubectl, a CI bot, health
probes and discovery. Every request emits the stages kube-apiserver emits (RequestReceived,
ResponseStarted for long-running requests, ResponseComplete). The simulated cluster runs a careless
policy: Metadata for most reads, Request for writes, RequestResponse for about 10% of events,
including Secret bodies - the pipeline's redaction has to catch those.

Planted incidents (all inside the window, at fixed fractions of it):

* ``mallory@example.com`` reads and then deletes the secret ``prod/db-pass``;
* ``system:serviceaccount:default:build-robot`` is denied 15 times within a minute (403 burst);
* ``bob@example.com`` execs into ``prod/payments-api-...``;
* ``carol@example.com`` evicts ``default/web-...``;
* node ``node-d`` joins the cluster (its kubelet creates the Node; RegisteredNode and NodeReady Events);
* ``alice@example.com`` creates a privileged pod mounting the node's root (``default/debug-root``);
* ``dave@example.com`` binds himself to ClusterRole ``cluster-admin`` (ClusterRoleBinding ``dave-admin``);
* the CI bot creates a ConfigMap ``prod/billing-env`` carrying an AWS access key (a detection
  finds it before redaction; its value must never be stored, like the Secret's).

``kube_events()`` gives the Kubernetes Events of the same story (core/v1, as a poller reads them).
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from auditlake.timestamps import format_utc

NODES = ("node-a", "node-b", "node-c")
NAMESPACES = ("default", "prod", "kube-system", "monitoring")
KUBECTL = "kubectl/v1.31.2 (linux/amd64) kubernetes/5864a46"
HUMANS = {
    "alice@example.com": ("system:authenticated", "devs"),
    "bob@example.com": ("system:authenticated", "sre"),
}
CI_BOT = "system:serviceaccount:ci:deployer"
INCIDENT_SECRET = ("prod", "db-pass")
INCIDENT_DELETER = "mallory@example.com"
INCIDENT_DENIED = "system:serviceaccount:default:build-robot"
INCIDENT_EXEC = "bob@example.com"
INCIDENT_EVICTOR = "carol@example.com"
JOINING_NODE = "node-d"
INCIDENT_PRIVILEGED = ("default", "debug-root")
INCIDENT_ESCALATOR = "dave@example.com"
INCIDENT_CONFIGMAP = ("prod", "billing-env")
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
# What a planted secret holds; the redaction tests assert it never reaches storage.
PLANTED_SECRET_VALUE = "cGFzc3dvcmQtdGhhdC1tdXN0LW5ldmVyLWJlLXN0b3JlZA=="  # noqa: S105 - planted on purpose
# The AWS documentation's example key id, planted in a ConfigMap: found by the rules, never stored.
PLANTED_AWS_KEY = "AKIAIOSFODNN7EXAMPLE"


@dataclass
class _Request:
    at: datetime
    verb: str
    uri: str
    user: str
    groups: tuple[str, ...]
    agent: str
    ip: str
    code: int
    ref: dict[str, str] | None = None
    level: str = "Metadata"
    request_object: Any = None
    response_object: Any = None
    duration_ms: float = 5.0
    long_running: bool = False
    annotations: dict[str, str] = field(default_factory=dict)
    status: dict[str, Any] | None = None


class Synth:
    def __init__(self, *, minutes: float, rate: float, seed: int, start: datetime | None = None) -> None:
        if minutes <= 0 or rate <= 0:
            raise ValueError("minutes and rate must be positive")
        self.minutes = minutes
        self.rate = rate
        self.rng = random.Random(seed)  # noqa: S311 - reproducible test data, not cryptography
        if start is None:
            now = datetime.now(UTC).replace(second=0, microsecond=0)
            start = now - timedelta(minutes=minutes)
        self.start = start.astimezone(UTC)
        self.window = timedelta(minutes=minutes)
        pods = {}
        for ns in NAMESPACES:
            app = {
                "default": "web",
                "prod": "payments-api",
                "kube-system": "coredns",
                "monitoring": "prometheus",
            }[ns]
            pods[ns] = [f"{app}-{self._hex(9)}-{self._hex(5)}" for _ in range(3)]
        self.pods = pods

    # ------------------------------------------------------------------ helpers

    def _hex(self, n: int) -> str:
        return "".join(self.rng.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(n))

    def _uid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _at(self, fraction: float) -> datetime:
        return self.start + self.window * fraction

    def _ref(self, resource: str, ns: str = "", name: str = "", group: str = "", sub: str = "") -> dict[str, str]:
        ref = {"resource": resource, "apiVersion": "v1"}
        if ns:
            ref["namespace"] = ns
        if name:
            ref["name"] = name
        if group:
            ref["apiGroup"] = group
        if sub:
            ref["subresource"] = sub
        return ref

    def _pod(self, ns: str, name: str) -> dict[str, Any]:
        return {
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": {
                "name": name,
                "namespace": ns,
                "uid": self._uid(),
                "resourceVersion": str(self.rng.randint(10_000, 999_999)),
                "labels": {"app": name.rsplit("-", 2)[0], "pod-template-hash": name.rsplit("-", 2)[1]},
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "ReplicaSet",
                        "name": name.rsplit("-", 1)[0],
                        "controller": True,
                    }
                ],
                "managedFields": [
                    {
                        "manager": "kube-controller-manager",
                        "operation": "Update",
                        "apiVersion": "v1",
                        "fieldsType": "FieldsV1",
                        "fieldsV1": {
                            "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                            "f:spec": {"f:containers": {}},
                        },
                    }
                ],
            },
            "spec": {
                "containers": [
                    {
                        "name": "app",
                        "image": f"registry.example.com/{name.rsplit('-', 2)[0]}:1.{self.rng.randint(0, 9)}.0",
                        "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                        "env": [{"name": "LOG_LEVEL", "value": "info"}],
                    }
                ],
                "nodeName": self.rng.choice(NODES),
                "serviceAccountName": "default",
            },
            "status": {
                "phase": "Running",
                "podIP": f"10.244.{self.rng.randint(0, 3)}.{self.rng.randint(2, 250)}",
            },
        }

    @staticmethod
    def _allow(reason: str) -> dict[str, str]:
        return {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": reason}

    # ------------------------------------------------------------------ background traffic

    def _background(self, at: datetime) -> _Request:
        rng = self.rng
        roll = rng.random()
        if roll < 0.22:  # node heartbeats: lease renewals
            node = rng.choice(NODES)
            return _Request(
                at,
                "update",
                f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{node}?timeout=10s",
                f"system:node:{node}",
                ("system:nodes", "system:authenticated"),
                "kubelet/v1.31.2 (linux/amd64)",
                f"10.0.1.{NODES.index(node) + 10}",
                200,
                self._ref("leases", "kube-node-lease", node, "coordination.k8s.io"),
                annotations=self._allow(""),
                duration_ms=3,
            )
        if roll < 0.34:  # kubelet reads its node and mounted configmaps/secrets
            node = rng.choice(NODES)
            ns = rng.choice(NAMESPACES)
            resource, name = rng.choice((("nodes", node), ("configmaps", "kube-root-ca.crt"), ("secrets", "app-tls")))
            uri = f"/api/v1/nodes/{node}" if resource == "nodes" else f"/api/v1/namespaces/{ns}/{resource}/{name}"
            return _Request(
                at,
                "get",
                uri,
                f"system:node:{node}",
                ("system:nodes", "system:authenticated"),
                "kubelet/v1.31.2 (linux/amd64)",
                f"10.0.1.{NODES.index(node) + 10}",
                200,
                self._ref(resource, "" if resource == "nodes" else ns, name),
                annotations=self._allow(""),
            )
        if roll < 0.44:  # controllers: leader election and status updates
            user = rng.choice(("system:kube-controller-manager", "system:kube-scheduler"))
            name = user.split(":")[1]
            return _Request(
                at,
                "update",
                f"/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/{name}?timeout=5s",
                user,
                ("system:authenticated",),
                f"{name}/v1.31.2 (linux/amd64) leader-election",
                "10.0.0.5",
                200,
                self._ref("leases", "kube-system", name, "coordination.k8s.io"),
                annotations=self._allow('RBAC: allowed by ClusterRoleBinding "system:' + name + '"'),
            )
        if roll < 0.52:  # replicaset controller and endpointslice controller writes
            ns = rng.choice(NAMESPACES)
            pod = rng.choice(self.pods[ns])
            sa = rng.choice(("replicaset-controller", "endpointslice-controller"))
            if sa == "replicaset-controller":
                ref = self._ref("replicasets", ns, pod.rsplit("-", 1)[0], "apps", "status")
                uri = f"/apis/apps/v1/namespaces/{ns}/replicasets/{ref['name']}/status"
            else:
                ref = self._ref("endpointslices", ns, pod.rsplit("-", 2)[0] + "-" + self._hex(5), "discovery.k8s.io")
                uri = f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices/{ref['name']}"
            return _Request(
                at,
                "update",
                uri,
                f"system:serviceaccount:kube-system:{sa}",
                ("system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"),
                "kube-controller-manager/v1.31.2 (linux/amd64) kubernetes/5864a46/system:serviceaccount:kube-system:"
                + sa,
                "10.0.0.5",
                200,
                ref,
                level="Request",
                request_object={"kind": "ReplicaSet"},
                annotations=self._allow('RBAC: allowed by ClusterRoleBinding "system:controller:' + sa + '"'),
            )
        if roll < 0.60:  # watches: kubelets on pods, CoreDNS on endpointslices
            if rng.random() < 0.5:
                node = rng.choice(NODES)
                return _Request(
                    at,
                    "watch",
                    f"/api/v1/pods?allowWatchBookmarks=true&fieldSelector=spec.nodeName%3D{node}"
                    f"&resourceVersion={rng.randint(10_000, 999_999)}"
                    f"&timeoutSeconds={rng.randint(300, 540)}&watch=true",
                    f"system:node:{node}",
                    ("system:nodes", "system:authenticated"),
                    "kubelet/v1.31.2 (linux/amd64)",
                    f"10.0.1.{NODES.index(node) + 10}",
                    200,
                    self._ref("pods"),
                    annotations=self._allow(""),
                    duration_ms=rng.uniform(30_000, 300_000),
                    long_running=True,
                )
            return _Request(
                at,
                "watch",
                "/apis/discovery.k8s.io/v1/endpointslices?allowWatchBookmarks=true&watch=true",
                "system:serviceaccount:kube-system:coredns",
                ("system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"),
                "coredns/v1.11.3",
                "10.244.0.3",
                200,
                self._ref("endpointslices", group="discovery.k8s.io"),
                annotations=self._allow('RBAC: allowed by ClusterRoleBinding "system:coredns"'),
                duration_ms=rng.uniform(30_000, 300_000),
                long_running=True,
            )
        if roll < 0.70:  # health probes and discovery
            path = rng.choice(("/healthz", "/readyz", "/livez", "/version", "/api", "/apis", "/openapi/v3"))
            anonymous = path in ("/healthz", "/readyz", "/livez", "/version")
            return _Request(
                at,
                "get",
                path,
                "system:anonymous" if anonymous else "alice@example.com",
                ("system:unauthenticated",) if anonymous else HUMANS["alice@example.com"],
                "kube-probe/1.31" if anonymous else KUBECTL,
                "10.0.0.1" if anonymous else "192.0.2.10",
                200,
                annotations=self._allow('RBAC: allowed by ClusterRoleBinding "system:public-info-viewer"'),
            )
        if roll < 0.93:  # humans with kubectl
            return self._human(at)
        return self._ci(at)

    def _human(self, at: datetime) -> _Request:
        rng = self.rng
        user = rng.choice(tuple(HUMANS))
        groups = HUMANS[user]
        ip = "192.0.2.10" if user.startswith("alice") else "192.0.2.20"
        ns = rng.choice(("default", "prod", "monitoring"))
        pod = rng.choice(self.pods[ns])
        allow = self._allow(
            f'RBAC: allowed by RoleBinding "{groups[1]}-edit/{ns}" of ClusterRole "edit" to Group "{groups[1]}"'
        )
        choice = rng.random()
        if choice < 0.4:
            return _Request(
                at,
                "list",
                f"/api/v1/namespaces/{ns}/pods?limit=500",
                user,
                groups,
                KUBECTL,
                ip,
                200,
                self._ref("pods", ns),
                annotations=allow,
                duration_ms=12,
            )
        if choice < 0.7:
            detailed = rng.random() < 0.35
            return _Request(
                at,
                "get",
                f"/api/v1/namespaces/{ns}/pods/{pod}",
                user,
                groups,
                KUBECTL,
                ip,
                200,
                self._ref("pods", ns, pod),
                annotations=allow,
                level="RequestResponse" if detailed else "Metadata",
                response_object=self._pod(ns, pod) if detailed else None,
            )
        if choice < 0.85:
            return _Request(
                at,
                "get",
                f"/api/v1/namespaces/{ns}/pods/{pod}/log?container=app&tailLines=100",
                user,
                groups,
                KUBECTL,
                ip,
                200,
                self._ref("pods", ns, pod, sub="log"),
                annotations=allow,
                duration_ms=rng.uniform(50, 800),
                long_running=True,
            )
        deployment = pod.rsplit("-", 2)[0]
        patch = {
            "spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": format_utc(at)}}}}
        }
        return _Request(
            at,
            "patch",
            f"/apis/apps/v1/namespaces/{ns}/deployments/{deployment}?fieldManager=kubectl-rollout",
            user,
            groups,
            KUBECTL,
            ip,
            200,
            self._ref("deployments", ns, deployment, "apps"),
            level="Request",
            request_object=patch,
            annotations=allow,
            duration_ms=25,
        )

    def _ci(self, at: datetime) -> _Request:
        rng = self.rng
        ns = rng.choice(("default", "prod"))
        groups = ("system:serviceaccounts", "system:serviceaccounts:ci", "system:authenticated")
        allow = self._allow('RBAC: allowed by ClusterRoleBinding "ci-deployer" of ClusterRole "deployer"')
        if rng.random() < 0.5:
            name = f"{'web' if ns == 'default' else 'payments-api'}-config"
            body = {
                "kind": "ConfigMap",
                "apiVersion": "v1",
                "metadata": {"name": name, "namespace": ns},
                "data": {"FEATURE_FLAGS": "checkout-v2=true", "DB_HOST": "db.internal"},
            }
            return self._helm_update(at, "configmaps", ns, name, body, groups, allow)
        name = "registry-credentials"
        secret = {
            "kind": "Secret",
            "apiVersion": "v1",
            "type": "kubernetes.io/dockerconfigjson",
            "metadata": {"name": name, "namespace": ns},
            "data": {".dockerconfigjson": PLANTED_SECRET_VALUE},
        }
        if rng.random() < 0.5:
            return self._helm_update(at, "secrets", ns, name, secret, groups, allow)
        # A Crossplane provider-kubernetes Object embeds a whole manifest: the Secret inside must be
        # found and stubbed although the resource itself is not a secret; `kubectl apply` repeats the
        # whole object, Secret included, as JSON text in the last-applied annotation.
        wrapper: dict[str, Any] = {
            "kind": "Object",
            "apiVersion": "kubernetes.crossplane.io/v1alpha2",
            "metadata": {"name": f"{ns}-registry-credentials"},
            "spec": {"forProvider": {"manifest": secret}, "providerConfigRef": {"name": "in-cluster"}},
        }
        wrapper["metadata"]["annotations"] = {LAST_APPLIED: json.dumps(wrapper, separators=(",", ":")) + "\n"}
        return _Request(
            at,
            "create",
            "/apis/kubernetes.crossplane.io/v1alpha2/objects",
            CI_BOT,
            groups,
            "Helm/3.16.2",
            "10.0.9.4",
            201,
            self._ref("objects", "", "", "kubernetes.crossplane.io"),
            level="Request",
            request_object=wrapper,
            annotations=allow,
            duration_ms=30,
        )

    def _helm_update(  # noqa: PLR0917
        self,
        at: datetime,
        resource: str,
        ns: str,
        name: str,
        body: dict[str, Any],
        groups: tuple[str, ...],
        allow: dict[str, str],
    ) -> _Request:
        """The CI bot writing a configmap or secret with Helm, logged (carelessly) with its bodies."""
        return _Request(
            at, "update", f"/api/v1/namespaces/{ns}/{resource}/{name}?fieldManager=helm", CI_BOT, groups,
            "Helm/3.16.2", "10.0.9.4", 200, self._ref(resource, ns, name), level="RequestResponse",
            request_object=body, response_object=body, annotations=allow, duration_ms=self.rng.uniform(10, 25),
        )  # fmt: skip

    # ------------------------------------------------------------------ incidents

    def _incidents(self) -> list[_Request]:
        out: list[_Request] = []
        ns, name = INCIDENT_SECRET
        mallory = ("system:authenticated", "contractors")
        allow = self._allow(
            f'RBAC: allowed by RoleBinding "contractors-admin/{ns}" of ClusterRole "admin" to Group "contractors"'
        )
        secret = {
            "kind": "Secret",
            "apiVersion": "v1",
            "type": "Opaque",
            "metadata": {
                "name": name,
                "namespace": ns,
                "uid": self._uid(),
                "annotations": {
                    LAST_APPLIED: '{"apiVersion":"v1","data":{"password":"'
                    + PLANTED_SECRET_VALUE
                    + '"},"kind":"Secret"}'
                },
            },
            "data": {"password": PLANTED_SECRET_VALUE},
        }
        delete_options = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        for fraction, verb, request_body in ((0.40, "get", None), (0.41, "delete", delete_options)):
            out.append(
                _Request(
                    self._at(fraction),
                    verb,
                    f"/api/v1/namespaces/{ns}/secrets/{name}",
                    INCIDENT_DELETER,
                    mallory,
                    KUBECTL,
                    "198.51.100.77",
                    200,
                    self._ref("secrets", ns, name),
                    level="RequestResponse",
                    request_object=request_body,
                    response_object=secret,
                    annotations=allow,
                )
            )
        robot_groups = ("system:serviceaccounts", "system:serviceaccounts:default", "system:authenticated")
        burst_start = self._at(0.55)
        for i in range(15):
            target = NAMESPACES[i % len(NAMESPACES)]
            verb = "list" if i % 3 else "get"
            message = (
                f'secrets is forbidden: User "{INCIDENT_DENIED}" cannot {verb} resource "secrets" '
                f'in API group "" in the namespace "{target}"'
            )
            uri = f"/api/v1/namespaces/{target}/secrets" + ("" if verb == "list" else "/db-pass")
            out.append(
                _Request(
                    burst_start + timedelta(seconds=3.5 * i),
                    verb,
                    uri,
                    INCIDENT_DENIED,
                    robot_groups,
                    "curl/8.5.0",
                    "10.244.2.66",
                    403,
                    self._ref("secrets", target, "" if verb == "list" else "db-pass"),
                    annotations={
                        "authorization.k8s.io/decision": "forbid",
                        "authorization.k8s.io/reason": "",
                    },
                    status={
                        "metadata": {},
                        "status": "Failure",
                        "message": message,
                        "reason": "Forbidden",
                        "details": {"kind": "secrets"},
                        "code": 403,
                    },
                )
            )
        pod = self.pods["prod"][0]
        out.append(
            _Request(
                self._at(0.70),
                "create",
                f"/api/v1/namespaces/prod/pods/{pod}/exec?command=sh&container=app&stdin=true&stdout=true&tty=true",
                INCIDENT_EXEC,
                HUMANS[INCIDENT_EXEC],
                KUBECTL,
                "192.0.2.20",
                101,
                self._ref("pods", "prod", pod, sub="exec"),
                annotations=self._allow(
                    'RBAC: allowed by ClusterRoleBinding "sre-admin" of ClusterRole "cluster-admin"'
                ),
                duration_ms=95_000,
                long_running=True,
            )
        )
        node_groups = ("system:nodes", "system:authenticated")
        out.append(
            _Request(
                self._at(0.30),
                "create",
                "/api/v1/nodes",
                f"system:node:{JOINING_NODE}",
                node_groups,
                "kubelet/v1.31.2 (linux/amd64)",
                "10.0.1.13",
                201,
                self._ref("nodes", "", JOINING_NODE),
                level="Request",
                request_object={"kind": "Node", "apiVersion": "v1", "metadata": {"name": JOINING_NODE}},
                annotations=self._allow('RBAC: allowed by ClusterRoleBinding "system:node"'),
            )
        )
        out.extend(self._detected_incidents())
        victim = self.pods["default"][1]
        out.append(
            _Request(
                self._at(0.80),
                "create",
                f"/api/v1/namespaces/default/pods/{victim}/eviction",
                INCIDENT_EVICTOR,
                ("system:authenticated", "sre"),
                KUBECTL,
                "192.0.2.30",
                201,
                self._ref("pods", "default", victim, sub="eviction"),
                level="Request",
                request_object={
                    "kind": "Eviction",
                    "apiVersion": "policy/v1",
                    "metadata": {"name": victim, "namespace": "default"},
                },
                annotations=self._allow('RBAC: allowed by RoleBinding "sre-edit/default" of ClusterRole "edit"'),
            )
        )
        return out

    def _detected_incidents(self) -> list[_Request]:
        """What only the detection rules point at: a privileged pod, a cluster-admin binding, an
        AWS key in a ConfigMap (its body is redacted before storage; the rule sees it first)."""
        ns, pod = INCIDENT_PRIVILEGED
        privileged = {
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": {"name": pod, "namespace": ns},
            "spec": {
                "hostPID": True,
                "containers": [
                    {
                        "name": "shell",
                        "image": "docker.io/library/busybox:1.36",
                        "command": ["sleep", "infinity"],
                        "securityContext": {"privileged": True},
                        "volumeMounts": [{"name": "host", "mountPath": "/host"}],
                    }
                ],
                "volumes": [{"name": "host", "hostPath": {"path": "/"}}],
            },
        }
        binding = {
            "kind": "ClusterRoleBinding",
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "metadata": {"name": "dave-admin"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": INCIDENT_ESCALATOR}],
        }
        cm_ns, cm_name = INCIDENT_CONFIGMAP
        configmap = {
            "kind": "ConfigMap",
            "apiVersion": "v1",
            "metadata": {"name": cm_name, "namespace": cm_ns},
            "data": {"aws_access_key_id": PLANTED_AWS_KEY, "region": "eu-west-1"},
        }
        return [
            _Request(
                self._at(0.60),
                "create",
                f"/api/v1/namespaces/{ns}/pods?fieldManager=kubectl-client-side-apply",
                "alice@example.com",
                HUMANS["alice@example.com"],
                KUBECTL,
                "192.0.2.10",
                201,
                self._ref("pods", ns, pod),
                level="Request",
                request_object=privileged,
                annotations=self._allow('RBAC: allowed by RoleBinding "devs-edit/default" of ClusterRole "edit"'),
            ),
            _Request(
                self._at(0.65),
                "create",
                "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
                INCIDENT_ESCALATOR,
                ("system:authenticated", "platform"),
                KUBECTL,
                "203.0.113.45",
                201,
                self._ref("clusterrolebindings", name="dave-admin", group="rbac.authorization.k8s.io"),
                level="Request",
                request_object=binding,
                annotations=self._allow(
                    'RBAC: allowed by ClusterRoleBinding "platform-rbac" of ClusterRole "rbac-admin"'
                ),
            ),
            _Request(
                self._at(0.75),
                "create",
                f"/api/v1/namespaces/{cm_ns}/configmaps",
                CI_BOT,
                ("system:serviceaccounts", "system:serviceaccounts:ci", "system:authenticated"),
                "argocd-application-controller/v2.12.0",
                "10.244.1.17",
                201,
                self._ref("configmaps", cm_ns, cm_name),
                level="Request",
                request_object=configmap,
                annotations=self._allow('RBAC: allowed by RoleBinding "deployer/prod" of ClusterRole "edit"'),
            ),
        ]

    # ------------------------------------------------------------------ events

    def _stages(self, req: _Request) -> list[dict[str, Any]]:
        audit_id = self._uid()
        end = req.at + timedelta(milliseconds=req.duration_ms)
        base: dict[str, Any] = {
            "kind": "Event",
            "apiVersion": "audit.k8s.io/v1",
            "level": req.level,
            "auditID": audit_id,
            "requestURI": req.uri,
            "verb": req.verb,
            "user": {"username": req.user, "groups": list(req.groups)},
            "sourceIPs": [req.ip],
            "userAgent": req.agent,
        }
        if req.user.startswith("system:serviceaccount:"):
            base["user"]["uid"] = str(uuid.uuid5(uuid.NAMESPACE_URL, req.user))
            base["user"]["extra"] = {"authentication.kubernetes.io/credential-id": ["JTI=" + self._uid()]}
        if req.ref is not None:
            base["objectRef"] = req.ref
        if req.level in ("Request", "RequestResponse") and req.request_object is not None:
            base["requestObject"] = req.request_object
        # The body is not read yet when RequestReceived is emitted.
        received = {
            **{k: v for k, v in base.items() if k != "requestObject"},
            "stage": "RequestReceived",
            "requestReceivedTimestamp": format_utc(req.at),
            "stageTimestamp": format_utc(req.at),
        }
        status = req.status or {"metadata": {}, "code": req.code}
        events = [received]
        if req.long_running:
            started_at = req.at + timedelta(milliseconds=2)
            events.append(
                {
                    **base,
                    "stage": "ResponseStarted",
                    "requestReceivedTimestamp": format_utc(req.at),
                    "stageTimestamp": format_utc(started_at),
                    "responseStatus": status,
                    "annotations": req.annotations,
                }
            )
        complete = {
            **base,
            "stage": "ResponseComplete",
            "requestReceivedTimestamp": format_utc(req.at),
            "stageTimestamp": format_utc(end),
            "responseStatus": status,
            "annotations": req.annotations,
        }
        if req.level == "RequestResponse" and req.response_object is not None:
            complete["responseObject"] = req.response_object
        events.append(complete)
        return events

    def requests(self) -> list[_Request]:
        total_events = self.minutes * 60 * self.rate
        count = max(1, int(total_events / 2.15))  # ~2.15 stage events per request on this mix
        seconds = self.window.total_seconds()
        reqs = [self._background(self.start + timedelta(seconds=self.rng.random() * seconds)) for _ in range(count)]
        # The careless cluster policy: about 10% of events at RequestResponse.
        for req in reqs:
            if req.level == "Metadata" and req.verb == "get" and req.ref and req.ref.get("resource") == "pods":
                continue
            if self.rng.random() < 0.03 and req.ref is not None:
                req.level = "RequestResponse"
                if req.response_object is None and req.ref.get("resource") == "pods" and req.ref.get("name"):
                    req.response_object = self._pod(req.ref.get("namespace", "default"), req.ref["name"])
        return reqs + self._incidents()

    def kube_events(self) -> list[dict[str, Any]]:
        """Kubernetes Events (core/v1 objects): background pod lifecycle, the node join, the eviction."""
        out = []

        def event(  # noqa: PLR0917 - a local helper with the fields of an Event
            at: datetime,
            kind: str,
            ns: str,
            name: str,
            reason: str,
            message: str,
            component: str,
            instance: str,
            type_: str = "Normal",
        ) -> None:
            stamp = at.replace(microsecond=0)
            out.append({
                "kind": "Event", "apiVersion": "v1",
                "metadata": {"name": f"{name}.{self.rng.getrandbits(64):016x}", "namespace": ns or "default",
                             "uid": self._uid(), "resourceVersion": str(self.rng.randint(10_000, 999_999)),
                             "creationTimestamp": format_utc(stamp)[:19] + "Z"},
                "involvedObject": {"kind": kind, "namespace": ns, "name": name, "apiVersion": "v1"},
                "reason": reason, "message": message, "source": {"component": component, "host": instance},
                "firstTimestamp": format_utc(stamp)[:19] + "Z", "lastTimestamp": format_utc(stamp)[:19] + "Z",
                "count": 1, "type": type_, "eventTime": None, "reportingComponent": component,
                "reportingInstance": instance,
            })  # fmt: skip

        for _ in range(max(3, int(self.minutes))):
            ns = self.rng.choice(("default", "prod"))
            pod = self.rng.choice(self.pods[ns])
            at = self.start + self.window * self.rng.random()
            node = self.rng.choice(NODES)
            event(at, "Pod", ns, pod, "Pulled", f'Container image "registry.example.com/{pod.split("-")[0]}:1.0.0" '
                  "already present on machine", "kubelet", node)  # fmt: skip
            event(at + timedelta(seconds=1), "Pod", ns, pod, "Started", "Started container app", "kubelet", node)
        joined = self._at(0.30)
        event(
            joined + timedelta(seconds=2),
            "Node",
            "",
            JOINING_NODE,
            "RegisteredNode",
            f"Node {JOINING_NODE} event: Registered Node {JOINING_NODE} in Controller",
            "node-controller",
            "",
        )
        event(joined + timedelta(seconds=20), "Node", "", JOINING_NODE, "NodeReady",
              f"Node {JOINING_NODE} status is now: NodeReady", "kubelet", JOINING_NODE)  # fmt: skip
        victim = self.pods["default"][1]
        event(self._at(0.80) + timedelta(seconds=1), "Pod", "default", victim, "Killing",
              "Stopping container app", "kubelet", NODES[1])  # fmt: skip
        return sorted(out, key=lambda e: e["lastTimestamp"])

    def events(self) -> Iterator[dict[str, Any]]:
        """All stage events, ordered by stage time as the audit log backend writes them."""
        events = [event for req in self.requests() for event in self._stages(req)]
        events.sort(key=lambda e: e["stageTimestamp"])
        yield from events
