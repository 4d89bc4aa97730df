"""``auditlake policy lint`` findings."""

from __future__ import annotations

from typing import Any

from auditlake.audit.policy import load_policy, policy_from_dict
from auditlake.audit.policy_lint import lint
from auditlake.clusters.webhook_kubeconfig import asset
from tests.helpers import corpus_path


def findings(*rules: Any, **top: Any) -> list[str]:
    return lint(policy_from_dict({"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": list(rules), **top}))


OMIT = {"omitStages": ["RequestReceived"]}


def test_the_recommended_policy_has_no_findings() -> None:
    assert lint(load_policy(asset("audit-policy.yaml"))) == []


def test_secret_bodies_logged_by_a_catch_all() -> None:
    out = findings({"level": "RequestResponse"}, **OMIT)
    assert len(out) == 4 and all("secret material" in w for w in out)
    assert any("serviceaccounts/token" in w for w in out) and any(
        "tokenreviews (authentication.k8s.io)" in w for w in out
    )


def test_metadata_rule_first_protects_the_sensitive_resources() -> None:
    secrets = {
        "level": "Metadata",
        "resources": [
            {"group": "", "resources": ["secrets", "configmaps", "serviceaccounts/token"]},
            {"group": "authentication.k8s.io", "resources": ["tokenreviews"]},
        ],
    }
    assert findings(secrets, {"level": "RequestResponse"}, **OMIT) == []


def test_conditional_rules_are_reported_for_some_requests() -> None:
    out = findings(
        {"level": "Request", "namespaces": ["kube-system"], "resources": [{"group": "", "resources": ["configmaps"]}]},
        {"level": "Metadata"},
        **OMIT,
    )
    assert out == [
        "rules[0] logs Request bodies of configmaps for some requests: "
        "secret material would be written to the audit log (use Metadata)"
    ]


def test_reads_and_deletes_at_request_level_log_no_secret_material() -> None:
    assert (
        findings(
            {"level": "Request", "verbs": ["get", "list", "watch", "deletecollection"]}, {"level": "Metadata"}, **OMIT
        )
        == []
    )
    assert (
        findings(
            {"level": "Request", "resources": [{"group": "", "resources": ["serviceaccounts/token"]}]},
            {"level": "Metadata"},
            **OMIT,
        )
        == []
    )


def test_falco_policy_logs_configmap_bodies() -> None:
    out = lint(load_policy(corpus_path("policy/falcosecurity-plugins__k8saudit__audit-policy.yaml").read_bytes()))
    assert [w.split(":")[0] for w in out] == [
        "rules[6] logs Request bodies of configmaps for some requests",
        "rules[7] logs RequestResponse bodies of configmaps",
    ]


def test_request_received_not_omitted() -> None:
    out = findings({"level": "None", "users": ["system:kube-proxy"]}, {"level": "Metadata"})
    assert out == [
        'RequestReceived is not omitted (rules 1): it doubles the event volume; add omitStages: ["RequestReceived"] at '
        "the policy level"
    ]
    assert findings({"level": "Metadata", "omitStages": ["RequestReceived"]}) == []


def test_shadowed_rules() -> None:
    out = findings(
        {"level": "Metadata", "verbs": ["get", "list"]},
        {"level": "None", "verbs": ["get"], "resources": [{"group": "", "resources": ["pods"]}]},
        {"level": "None", "resources": [{"group": "*", "resources": ["pods/*"]}]},
        {"level": "None", "resources": [{"group": "", "resources": ["pods/log"], "resourceNames": ["a"]}]},
        {"level": "None", "nonResourceURLs": ["/logs*"]},
        {"level": "None", "nonResourceURLs": ["/logs/kubelet*", "/logs"]},
        {"level": "None", "users": ["bob"], "nonResourceURLs": ["/metrics"]},
        {"level": "Metadata"},
        {"level": "Request", "verbs": ["create"]},
        **OMIT,
    )
    assert out == [
        "rules[1] never matches: rules[0] matches every request it would",
        "rules[3] never matches: rules[2] matches every request it would",
        "rules[5] never matches: rules[4] matches every request it would",
        "rules[8] never matches: rules[7] matches every request it would",
    ]


def test_narrower_earlier_rules_do_not_shadow() -> None:
    assert (
        findings(
            {"level": "None", "users": ["alice"]},
            {"level": "None", "userGroups": ["devs"]},
            {"level": "None", "namespaces": ["kube-system"]},
            {"level": "None", "resources": [{"group": "", "resources": ["pods"], "resourceNames": ["a"]}]},
            {"level": "None", "resources": [{"group": "", "resources": ["pods"]}]},
            {"level": "Metadata"},
            **OMIT,
        )
        == []
    )
