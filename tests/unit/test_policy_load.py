"""Loading and validating policy files as kube-apiserver's loader does (SEMANTICS.md section 3)."""

from __future__ import annotations

from typing import Any

import pytest

from auditlake.audit.policy import PolicyError, load_policy, policy_from_dict
from auditlake.clusters.webhook_kubeconfig import asset
from tests.helpers import corpus_path


def doc(*rules: Any, **top: Any) -> dict[str, Any]:
    return {"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": list(rules), **top}


@pytest.mark.parametrize(
    "rule",
    [
        {"level": "Metadata"},
        {"level": "None", "userGroups": ["system:serviceaccounts", "system:nodes"]},
        {
            "level": "RequestResponse",
            "verbs": ["get"],
            "namespaces": ["kube-system"],
            "resources": [{"group": "rbac.authorization.k8s.io", "resources": ["roles", "rolebindings"]}],
        },
        {
            "level": "Metadata",
            "userGroups": ["developers"],
            "nonResourceURLs": ["/logs*", "/healthz*", "/metrics", "*"],
        },
        {"level": "Metadata", "omitStages": ["RequestReceived"]},
        {"level": "Request", "resources": [{"group": "*", "resources": ["*/status"]}]},
    ],
)
def test_valid_rules(rule: dict[str, Any]) -> None:
    assert len(policy_from_dict(doc(rule)).rules) == 1


@pytest.mark.parametrize(
    ("policy", "error"),
    [
        (doc({}), "level: required"),
        (doc({"level": "FooBar"}), "is not one of None, Metadata"),
        (
            doc({"level": "Metadata", "namespaces": ["a"], "nonResourceURLs": ["/x"]}),
            "both regular resources and non-resource",
        ),
        (doc({"level": "Metadata", "resources": [{"group": ""}], "nonResourceURLs": ["/x"]}), "both regular resources"),
        (
            doc({"level": "Metadata", "resources": [{"group": "rbac.authorization.k8s.io/v1beta1"}]}),
            "not a DNS subdomain",
        ),
        (doc({"level": "Metadata", "nonResourceURLs": ["logs"]}), "must start with '/'"),
        (doc({"level": "Metadata", "nonResourceURLs": ["/logs/*/*"]}), "only use '*' as the last character"),
        (doc({"level": "Metadata", "nonResourceURLs": ["/logs/*.log"]}), "only use '*' as the last character"),
        (doc({"level": "Metadata", "resources": [{"resourceNames": ["leader"]}]}), "resourceNames: requires resources"),
        (doc({"level": "Metadata", "omitStages": ["foo"]}), "'foo' is not one of RequestReceived"),
        (doc({"level": "Metadata"}, omitStages=["foo"]), "'foo' is not one of"),
        (doc(), "0 rules"),
        ({**doc({"level": "Metadata"}), "apiVersion": "audit.k8s.io/v1beta1"}, "v1alpha1/v1beta1 were removed"),
        ({**doc({"level": "Metadata"}), "kind": "EventList"}, "kind Policy"),
    ],
)
def test_invalid_policies_are_refused_with_the_reason(policy: dict[str, Any], error: str) -> None:
    with pytest.raises(PolicyError) as caught:
        policy_from_dict(policy)
    assert any(error in message for message in caught.value.errors), caught.value.errors


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(PolicyError) as caught:
        policy_from_dict(doc({"level": "Loud"}, {"level": "Metadata", "nonResourceURLs": ["x"]}))
    assert len(caught.value.errors) == 2


def test_unknown_fields_load_with_a_warning_like_lenient_decoding() -> None:
    policy = policy_from_dict(doc({"level": "Metadata", "verb": ["get"]}))
    assert policy.warnings == ("rules[0]: unknown field 'verb' ignored",)


@pytest.mark.parametrize(
    ("name", "rules"),
    [
        ("kubernetes-website__audit-policy.yaml", 9),
        ("falcosecurity-plugins__k8saudit__audit-policy.yaml", 11),
        ("liggitt-audit2rbac__demo-policy.yaml", 1),
        ("openshift-library-go__base-policy.yaml", None),
        ("kubernetes-gce__configure-helper__audit-policy.expanded.yaml", 17),
    ],
)
def test_published_policies_load(name: str, rules: int | None) -> None:
    policy = load_policy(corpus_path(f"policy/{name}").read_bytes())
    assert rules is None or len(policy.rules) == rules


@pytest.mark.parametrize(
    "name",
    [
        "kubernetes-gce__configure-helper__audit-policy.heredoc.yaml",  # ${known_apis} is not a list
        "openshift-library-go__writerequestbodies-rules.yaml",  # a rule fragment, not a Policy
    ],
)
def test_files_that_are_not_loadable_policies_are_refused(name: str) -> None:
    with pytest.raises(PolicyError):
        load_policy(corpus_path(f"policy/{name}").read_bytes())


def test_not_yaml_is_refused() -> None:
    with pytest.raises(PolicyError, match="not YAML"):
        load_policy("rules: [")


def test_the_recommended_policy_loads() -> None:
    policy = load_policy(asset("audit-policy.yaml"))
    assert policy.omit_stages == frozenset({"RequestReceived"}) and policy.omit_managed_fields
