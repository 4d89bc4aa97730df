"""The built-in rules against the detections they cover, on the published test data.

- Falco's k8saudit trace files (``audit/falcosecurity__falco__trace_files_k8s_audit.jsonl``) with
  Falco's own expectations (``test/falco_k8s_audit_tests.yaml`` at the corpus commit, transcribed
  in FALCO_CASES: trace file -> Falco rule -> fires or not).
- Panther's rule tests (``audit/panther-labs__...{complete,partial}_events.jsonl`` and their
  manifests, one expected outcome per test).
- SigmaHQ's 16 Kubernetes audit rules (``tests/fixtures/sigmahq/rules``, unchanged): they load with
  the engine and fire on hand-made positives, not on negatives (``tests/fixtures/sigmahq/cases.json``).
- Precision: over every corpus event, no built-in rule fires on more than MAX_FRACTION of them, and
  on the one real session log (audit2rbac's, 757 events) none fires on more than REAL_MAX_FRACTION.

The mappings (FALCO_RULES, PANTHER_RULES) are data: corpus rule -> our rule name, or None with the
reason we have no counterpart. Where our rule deliberately decides a test case differently, the
case is in PANTHER_DIFFERS / FALCO_DIFFERS with the reason (the README's coverage table says the same).
Events are evaluated the way ingest does: decoded by the audit schema (fields it does not know go
through the pipeline's lenient path), then ``RuleEngine.audit`` before policy and redaction.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ROOT, builtin_engine, builtin_ids, corpus_path

CLUSTER = "corpus"
INGESTED_AT = "2026-11-30T12:00:00.000000Z"
FALCO = "audit/falcosecurity__falco__trace_files_k8s_audit"
PANTHER = "audit/panther-labs__panther-analysis__eks_k8s_rule_tests__"
SIGMAHQ = ROOT / "tests" / "fixtures" / "sigmahq"

# ------------------------------------------------------------------------------------------ Falco
# Falco k8saudit rule -> our rule name, or (None, why not). Source: falcosecurity/plugins
# plugins/k8saudit/rules/k8s_audit_rules.yaml @ 0b3cbd8d84eba83877159cf3c9fdae1820084c26.
NOT_SECURITY = "activity trail (fires on every create/delete of the kind); the archive and `auditlake query` keep it"
FALCO_RULES: dict[str, str | tuple[None, str]] = {
    "Disallowed K8s User": (None, "needs the site's list of users; README: copy-and-edit example"),
    "Create Disallowed Pod": (None, "needs the site's image allowlist (Falco's is always-true); README example"),
    "Create Privileged Pod": "pod-privileged-container",
    "Create Sensitive Mount Pod": "pod-sensitive-hostpath",
    "Create HostNetwork Pod": "pod-host-network",
    "Create HostPid Pod": "pod-host-pid",
    "Create HostIPC Pod": "pod-host-ipc",
    "Create NodePort Service": "service-nodeport",
    "Create/Modify Configmap With Private Credentials": "configmap-credentials",
    "Anonymous Request Allowed": "anonymous-request-allowed",
    "Attach/Exec Pod": "pod-exec-attach",
    "port-forward": "pod-portforward",
    "EphemeralContainers Created": "pod-ephemeral-container",
    "Create Disallowed Namespace": (None, "needs the site's namespace list; README example"),
    "Pod Created in Kube Namespace": "workload-in-system-namespace",
    "Service Account Created in Kube Namespace": "serviceaccount-in-system-namespace",
    "System ClusterRole Modified/Deleted": "system-role-modified",
    "Attach to cluster-admin Role": "binding-privileged-role",
    "ClusterRole With Wildcard Created": "role-wildcard",
    "ClusterRole With Write Privileges Created": "role-write-privileges",
    "ClusterRole With Pod Exec Created": "role-pod-exec",
    "K8s Secret Get Successfully": (None, "every secret read; secret-enumeration counts distinct reads instead"),
    "K8s Secret Get Unsuccessfully Tried": "secret-read-denied",
    "All K8s Audit Events": (None, "matches every event (disabled in Falco)"),
    "Full K8s Administrative Access": (None, "every request of the admin users (disabled in Falco); README example"),
    "Ingress Object without TLS Certificate Created": "ingress-without-tls",
    "Untrusted Node Successfully Joined the Cluster": (None, "needs the site's node list (disabled in Falco)"),
    "Untrusted Node Unsuccessfully Tried to Join the Cluster": (None, "needs the site's node list (disabled in Falco)"),
    **{
        f"K8s {kind} {action}": (None, NOT_SECURITY)
        for kind in (
            "Deployment",
            "Service",
            "ConfigMap",
            "Namespace",
            "Serviceaccount",
            "Role",
            "ClusterRole",
            "RoleBinding",
            "ClusterRoleBinding",
            "Secret",
        )
        for action in ("Created", "Deleted")
    },
    # Names the trace-file tests use for the same activity rules (older rule file).
    "K8s Role/Clusterrole Created": (None, NOT_SECURITY),
    "K8s Role/Clusterrole Deleted": (None, NOT_SECURITY),
    "K8s Role/Clusterrolebinding Created": (None, NOT_SECURITY),
    "K8s Role/Clusterrolebinding Deleted": (None, NOT_SECURITY),
}

# Falco's test expectations for its trace files (falcosecurity/falco @ 2583ea9b
# test/falco_k8s_audit_tests.yaml): (trace file, Falco rule, fires). Negative tests name the rule
# they guard. Tests that only load an allowlist (trust_nginx_container, allow_*) are left out:
# they exercise Falco's list mechanism, not a behaviour.
FALCO_CASES: list[tuple[str, str, bool]] = [
    ("create_nginx_pod_privileged.json", "Create Privileged Pod", True),
    ("create_nginx_pod_no_secctx_1st_container_privileged_2nd_container.json", "Create Privileged Pod", True),
    ("create_nginx_pod_privileged_2nd_container.json", "Create Privileged Pod", True),
    ("create_nginx_pod_unprivileged.json", "Create Privileged Pod", False),
    ("create_nginx_pod_sensitive_mount.json", "Create Sensitive Mount Pod", True),
    ("create_nginx_pod_sensitive_mount_2nd_container.json", "Create Sensitive Mount Pod", True),
    ("create_nginx_pod_unsensitive_mount.json", "Create Sensitive Mount Pod", False),
    ("create_nginx_pod_hostnetwork.json", "Create HostNetwork Pod", True),
    ("create_nginx_pod_nohostnetwork.json", "Create HostNetwork Pod", False),
    ("create_nginx_service_nodeport.json", "Create NodePort Service", True),
    ("create_nginx_service_nonodeport.json", "Create NodePort Service", False),
    ("create_configmap_sensitive_values.json", "Create/Modify Configmap With Private Credentials", True),
    ("create_configmap_no_sensitive_values.json", "Create/Modify Configmap With Private Credentials", False),
    ("create_configmap.json", "Create/Modify Configmap With Private Credentials", False),
    ("anonymous_creates_namespace_foo.json", "Anonymous Request Allowed", True),
    ("exec_pod.json", "Attach/Exec Pod", True),
    ("attach_pod.json", "Attach/Exec Pod", True),
    ("create_pod_kube_system_namespace.json", "Pod Created in Kube Namespace", True),
    ("create_pod_kube_public_namespace.json", "Pod Created in Kube Namespace", True),
    ("create_serviceaccount_kube_system_namespace.json", "Service Account Created in Kube Namespace", True),
    ("create_serviceaccount_kube_public_namespace.json", "Service Account Created in Kube Namespace", True),
    ("create_serviceaccount.json", "Service Account Created in Kube Namespace", False),
    ("delete_cluster_role_kube_aggregator.json", "System ClusterRole Modified/Deleted", True),
    ("modify_cluster_role_node_problem_detector.json", "System ClusterRole Modified/Deleted", True),
    ("delete_clusterrole.json", "System ClusterRole Modified/Deleted", False),
    ("attach_cluster_admin_role.json", "Attach to cluster-admin Role", True),
    ("create_clusterrolebinding.json", "Attach to cluster-admin Role", False),
    ("create_cluster_role_wildcard_resources.json", "ClusterRole With Wildcard Created", True),
    ("create_cluster_role_wildcard_verbs.json", "ClusterRole With Wildcard Created", True),
    ("create_clusterrole.json", "ClusterRole With Wildcard Created", False),
    ("create_cluster_role_write_privileges.json", "ClusterRole With Write Privileges Created", True),
    ("create_cluster_role_pod_exec.json", "ClusterRole With Pod Exec Created", True),
]
# (trace file, Falco rule) -> (our outcome, why).
FALCO_DIFFERS: dict[tuple[str, str], tuple[bool, str]] = {
    ("create_pod_kube_system_namespace.json", "Pod Created in Kube Namespace"): (
        False,
        "the pod is created by kube-system's replicaset-controller; ours names the user's Deployment/pod"
        " create instead of keeping an image allowlist",
    ),
    ("create_pod_kube_public_namespace.json", "Pod Created in Kube Namespace"): (
        False,
        "as above: created by kube-system's replicaset-controller",
    ),
}

# ---------------------------------------------------------------------------------------- Panther
# Panther rule id -> our rule name(s) (any of them firing counts), or (None, why not). Source:
# panther-labs/panther-analysis @ daa10c888566839e9918dfba1cd652743781e5fe rules/{aws_eks,kubernetes}_rules.
PANTHER_RULES: dict[str, str | tuple[str, ...] | tuple[None, str]] = {
    "Amazon.EKS.AnonymousAPIAccess": "anonymous-request-allowed",
    "Kubernetes.API.AnonymousAccess": "anonymous-request-allowed",
    "Amazon.EKS.Audit.Multiple403": (None, "the forbidden-burst correlation rules (detect/builtin/forbidden*.yml)"),
    "Kubernetes.API.Multiple403.PublicIP": (
        None,
        "the forbidden-burst correlation rules (detect/builtin/forbidden*.yml)",
    ),
    "Amazon.EKS.Audit.SystemNamespaceFromPublicIP": "system-principal-public-ip",
    "Kubernetes.System.Principal.PublicIP": "system-principal-public-ip",
    "Kubernetes.AdmissionController.Created": "admission-webhook-changed",
    "Kubernetes.ClientCertificate.Created": "csr-client-certificate",
    "Kubernetes.ClusterRoleBinding.Privileged": "binding-privileged-role",
    "Kubernetes.CronJob.CreatedOrModified": "cronjob-changed",
    "Kubernetes.DaemonSet.Created": "daemonset-created",
    "Kubernetes.Pod.Exec": "pod-exec-attach",
    "Kubernetes.Ingress.NoTLS": "ingress-without-tls",
    "Kubernetes.API.IOC.Activity": (
        None,
        "needs threat-intel enrichment (Tor exit nodes) the audit event does not carry",
    ),
    "Kubernetes.Kubectl.CP.Operation": "pod-exec-kubectl-cp",
    "Kubernetes.Pod.SystemNamespace": "workload-in-system-namespace",
    "Kubernetes.Pod.Dangerous.Capabilities": "pod-dangerous-capabilities",
    "Kubernetes.Pod.Host.IPC": "pod-host-ipc",
    "Kubernetes.Pod.Host.Network": "pod-host-network",
    "Kubernetes.Pod.Host.PID": "pod-host-pid",
    "Kubernetes.Pod.HostPath.Volume": ("pod-hostpath-volume", "pod-sensitive-hostpath"),
    "Kubernetes.Pod.Privileged.Created": ("pod-privileged-container", "pod-runs-as-root"),
    "Kubernetes.Role.NodeProxyPermissions": "role-nodes-proxy",
    "Kubernetes.Role.PodExec": "role-pod-exec",
    "Kubernetes.Role.Wildcard": "role-wildcard",
    "Kubernetes.Role.WritePermissions": "role-write-privileges",
    "Kubernetes.Secret.AccessDenied": "secret-read-denied",
    "Kubernetes.BulkSecretAccess": (
        None,
        "a threshold over many events: the secret-enumeration correlation (value_count)",
    ),
    "Kubernetes.Secrets.DumpAllNamespaces": "secrets-listed-all-namespaces",
    "Kubernetes.Service.NodePort.Deployed": "service-nodeport",
    "Kubernetes.ServiceAccount.TokenCreated": "serviceaccount-token-requested",
    "Kubernetes.Pod.StealServiceAccountToken": "pod-exec-serviceaccount-token",
    "Kubernetes.SystemRole.Modified": "system-role-modified",
}
ENRICHMENT = "Panther decides with IP-reputation enrichment (AWS ranges) the audit event does not carry"
UPDATES_TOO = "ours also watches update/patch: changing an existing role grants the same"
# (Panther rule, test name) -> (our outcome, why).
PANTHER_DIFFERS: dict[tuple[str, str], tuple[bool, str]] = {
    ("Amazon.EKS.AnonymousAPIAccess", "Anonymous API Access Web Scanner Allowed"): (
        False,
        "/version is open to everyone by default RBAC (Panther rates it INFO)",
    ),
    ("Amazon.EKS.AnonymousAPIAccess", "Anonymous API Access Web Scanner Denied"): (
        False,
        "ours is anonymous *allowed*; refused probes are the forbidden-burst rule's (Panther rates it INFO)",
    ),
    ("Amazon.EKS.AnonymousAPIAccess", "ELB Health Check from Public IP"): (
        False,
        "health endpoints are open to everyone by default RBAC",
    ),
    ("Amazon.EKS.Audit.SystemNamespaceFromPublicIP", "legitimate EKS node from AWS IP - should not alert"): (
        True,
        ENRICHMENT,
    ),
    ("Kubernetes.System.Principal.PublicIP", "EKS Legitimate Node from AWS IP"): (True, ENRICHMENT),
    ("Kubernetes.ClusterRoleBinding.Privileged", "RoleBinding (not ClusterRoleBinding)"): (
        True,
        "a RoleBinding to cluster-admin makes its subject admin of the namespace",
    ),
    ("Kubernetes.Pod.SystemNamespace", "Deployment creating pod (not direct pod creation)"): (
        True,
        "ours names the workload created in the system namespace, not only bare pods",
    ),
    ("Kubernetes.Role.NodeProxyPermissions", "Updating existing role (not creating)"): (True, UPDATES_TOO),
    ("Kubernetes.Role.PodExec", "Updating existing role (not creating)"): (True, UPDATES_TOO),
    ("Kubernetes.Role.Wildcard", "Updating existing role (not creating)"): (True, UPDATES_TOO),
    ("Kubernetes.ServiceAccount.TokenCreated", "System principal in user namespace (alert)"): (
        False,
        "every system principal is left out: kubelets request a token per pod and refresh it hourly",
    ),
}

MAX_FRACTION = 0.05  # of all corpus events (most of them hand-picked positives)
REAL_MAX_FRACTION = 0.01  # of audit2rbac's real kubectl session


@pytest.fixture(scope="module")
def engine() -> Any:
    return builtin_engine()


@pytest.fixture(scope="module")
def ids() -> dict[str, str]:
    """Our rule names -> ids (findings carry the id)."""
    return builtin_ids()


def decode(item: dict[str, Any]) -> Any:
    """An item as ingest reads it: the typed decoder, else the pipeline's lenient path (fields the
    schema does not know, such as Panther's p_* columns, go to the record's extra)."""
    import msgspec

    from auditlake.audit.pipeline import _lenient
    from auditlake.audit.schema import event_decoder

    raw = json.dumps(item).encode()
    try:
        return event_decoder.decode(raw)
    except msgspec.ValidationError:
        return _lenient(raw)[0]


def fired(engine: Any, item: dict[str, Any]) -> set[str]:
    return {match.finding.rule_id for match in engine.audit(decode(item), CLUSTER, INGESTED_AT) if match.generate}


def names_of(ids: dict[str, str], fired_ids: set[str]) -> set[str]:
    by_id = {rule_id: name for name, rule_id in ids.items()}
    return {by_id.get(rule_id, rule_id) for rule_id in fired_ids}


def falco_events() -> dict[str, list[dict[str, Any]]]:
    lines = [json.loads(line) for line in corpus_path(FALCO + ".jsonl").read_bytes().splitlines() if line.strip()]
    manifest = json.loads(corpus_path(FALCO + ".manifest.json").read_text())["lines"]
    by_file: dict[str, list[dict[str, Any]]] = {}
    for entry in manifest:
        by_file.setdefault(Path(entry["file"]).name, []).append(lines[entry["line"] - 1])
    return by_file


def panther_cases() -> list[tuple[str, str, bool, dict[str, Any]]]:
    """(rule id, test name, expected, event) for every Panther rule test in the corpus. Partial
    fragments lack the fields every audit event has (auditID, level, stage): filled with
    placeholders, as a real event of that request would carry them."""
    cases = []
    for part in ("complete_events", "partial_events"):
        lines = corpus_path(PANTHER + part + ".jsonl").read_bytes().splitlines()
        manifest = json.loads(corpus_path(PANTHER + part + ".manifest.json").read_text())["lines"]
        for entry in manifest:
            event = json.loads(lines[entry["line"] - 1])
            event.setdefault("auditID", f"panther-{part}-{entry['line']}")
            event.setdefault("level", "RequestResponse")
            event.setdefault("stage", "ResponseComplete")
            cases.append((entry["rule"], entry["test"], bool(entry["expected"]), event))
    return cases


def test_the_mappings_name_every_corpus_rule_and_only_our_rules(ids: dict[str, str]) -> None:
    tested_falco = {rule for _, rule, _ in FALCO_CASES}
    assert tested_falco <= FALCO_RULES.keys()
    assert {rule for rule, *_ in panther_cases()} <= PANTHER_RULES.keys()
    ours = [v for v in [*FALCO_RULES.values(), *PANTHER_RULES.values()] if not (isinstance(v, tuple) and v[0] is None)]
    named = {name for v in ours for name in ((v,) if isinstance(v, str) else v)}
    assert named <= ids.keys(), named - ids.keys()


@pytest.mark.parametrize(("trace", "falco_rule", "expected"), FALCO_CASES, ids=str)
def test_falco_trace_files(engine: Any, ids: dict[str, str], trace: str, falco_rule: str, expected: bool) -> None:
    ours = FALCO_RULES[falco_rule]
    assert isinstance(ours, str), f"{falco_rule} has no counterpart: {ours}"
    expected, _why = FALCO_DIFFERS.get((trace, falco_rule), (expected, ""))
    events = falco_events()[trace]
    for event in events:  # a trace file with several events: each one is a case (Falco counts 6 of 6)
        assert (ids[ours] in fired(engine, event)) is expected, (trace, falco_rule, ours)


def test_panther_rule_tests(engine: Any, ids: dict[str, str]) -> None:
    wrong = []
    checked = Counter[str]()
    for rule, test, expected, event in panther_cases():
        ours = PANTHER_RULES[rule]
        if isinstance(ours, tuple) and ours[0] is None:
            continue
        names = (ours,) if isinstance(ours, str) else ours
        outcome, _why = PANTHER_DIFFERS.get((rule, test), (expected, ""))
        got = fired(engine, event)
        if any(ids[name] in got for name in names) is not outcome:
            wrong.append((rule, test, outcome, sorted(names_of(ids, got))))
        checked[rule] += 1
    assert not wrong, "\n".join(map(str, wrong))
    # Every mapped Panther rule had tests in the corpus, positives and negatives both.
    mapped = {rule for rule, ours in PANTHER_RULES.items() if not (isinstance(ours, tuple) and ours[0] is None)}
    assert mapped <= checked.keys(), mapped - checked.keys()


def test_every_difference_is_still_a_case() -> None:
    """A stale entry in the difference tables would hide nothing; keep them honest."""
    panther = {(rule, test) for rule, test, *_ in panther_cases()}
    assert PANTHER_DIFFERS.keys() <= panther
    assert FALCO_DIFFERS.keys() <= {(trace, rule) for trace, rule, _ in FALCO_CASES}


def all_corpus_events() -> dict[str, list[dict[str, Any]]]:
    files: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(corpus_path("audit").glob("*.jsonl")):
        events = [json.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
        for index, event in enumerate(events):
            event.setdefault("auditID", f"{path.stem}-{index}")
            event.setdefault("level", "RequestResponse")
            event.setdefault("stage", "ResponseComplete")
        files[path.name] = events
    return files


def test_precision_over_the_corpus(engine: Any, ids: dict[str, str]) -> None:
    files = all_corpus_events()
    counts = Counter[str]()
    total = 0
    for events in files.values():
        for event in events:
            counts.update(fired(engine, event))
            total += 1
    by_id = {rule_id: name for name, rule_id in ids.items()}
    noisy = {by_id.get(rule_id, rule_id): n for rule_id, n in counts.items() if n > MAX_FRACTION * total}
    assert not noisy, f"rules firing on more than {MAX_FRACTION:.0%} of {total} corpus events: {noisy}"
    # The real session (a person using kubectl for an afternoon) is where a verb-wide rule shows.
    real = files["liggitt__audit2rbac__demo_v1beta1_original.jsonl"]
    real_counts = Counter[str]()
    for event in real:
        real_counts.update(fired(engine, event))
    assert all(n <= REAL_MAX_FRACTION * len(real) for n in real_counts.values()), real_counts


# ---------------------------------------------------------------------------------------- SigmaHQ


def sigmahq_cases() -> list[dict[str, Any]]:
    return json.loads((SIGMAHQ / "cases.json").read_text())["cases"]


def test_sigmahq_rules_load_unchanged_with_no_problems() -> None:
    from auditlake.detect.sigma import load_rules

    rules = load_rules([SIGMAHQ / "rules"], builtin=False)
    assert rules.problems == ()
    assert len(rules.rules) == 16
    # Every rule either has hand-made cases or is listed with why it cannot fire.
    covered = {case["rule"] for case in sigmahq_cases()}
    assert {rule.id for rule in rules.rules} == covered | NEVER_FIRES.keys()


# SigmaHQ rules that cannot fire on a real audit event, and why.
NEVER_FIRES = {
    # kubernetes_audit_potential_enumeration_activity: selection_status wants responseStatus.code
    # 'ALLOW' (a string; the code is a number), ANDed with every other selection.
    "597a7e84-187d-458b-9e4f-2f5a0e676711": "responseStatus.code: 'ALLOW' matches no audit event",
}


@pytest.mark.parametrize("case", sigmahq_cases(), ids=lambda case: f"{case['file']}-{case['expect']}-{case['why']}")
def test_sigmahq_rule_on_hand_made_events(case: dict[str, Any]) -> None:
    from auditlake.detect.engine import RuleEngine
    from auditlake.detect.sigma import load_rules

    engine = RuleEngine(load_rules([SIGMAHQ / "rules"], builtin=False))
    assert (case["rule"] in fired(engine, case["event"])) is case["expect"], case["why"]
