"""The pipeline policy reproduces every case of kube-apiserver's checker_test.go."""

from __future__ import annotations

import json
from typing import Any

import pytest

from auditlake.audit.policy import RequestAttributes, policy_from_dict
from tests.helpers import corpus_path

TABLE = json.loads(corpus_path("policy/checker_test_cases.json").read_text())


def _attributes(request: dict[str, Any]) -> RequestAttributes:
    user = request.get("user")
    return RequestAttributes(
        user_name=None if user is None else user["name"],
        user_groups=() if user is None else tuple(user.get("groups", ())),
        verb=request["verb"],
        resource_request=request["resourceRequest"],
        path=request.get("path", ""),
        namespace=request.get("namespace", ""),
        api_group=request.get("apiGroup", ""),
        api_version=request.get("apiVersion", ""),
        resource=request.get("resource", ""),
        subresource=request.get("subresource", ""),
        name=request.get("name", ""),
    )


def _case_id(case: dict[str, Any]) -> str:
    return f"{case['test']}-{case['request']}-{'+'.join(case['rules'])}-{case['policyOmitStages']}"


@pytest.mark.parametrize("case", TABLE["cases"], ids=_case_id)
def test_checker_case(case: dict[str, Any]) -> None:
    policy = policy_from_dict(
        {
            "apiVersion": "audit.k8s.io/v1",
            "kind": "Policy",
            "omitStages": case["policyOmitStages"],
            "rules": [TABLE["rules"][name] for name in case["rules"]],
        }
    )
    decision = policy.evaluate(_attributes(TABLE["requests"][case["request"]]))
    assert decision.level == case["expectedLevel"]
    assert decision.omit_stages == frozenset(case["expectedOmitStages"])


@pytest.mark.parametrize("case", TABLE["unionStagesCases"], ids=json.dumps)
def test_omit_stages_union(case: dict[str, Any]) -> None:
    policy = policy_from_dict(
        {
            "apiVersion": "audit.k8s.io/v1",
            "kind": "Policy",
            "omitStages": case["s1"],
            "rules": [{"level": "Metadata", "omitStages": case["s2"]}],
        }
    )
    decision = policy.evaluate(RequestAttributes("tim", (), "get", False, "/"))
    assert decision.omit_stages == frozenset(case["expected"])


@pytest.mark.parametrize("case", TABLE["omitManagedFieldsCases"], ids=lambda c: c["name"])
def test_omit_managed_fields(case: dict[str, Any]) -> None:
    rule: dict[str, Any] = {"level": "RequestResponse", "verbs": ["get"]}
    if case["ruleOmitManagedFields"] is not None:
        rule["omitManagedFields"] = case["ruleOmitManagedFields"]
    policy = policy_from_dict(
        {
            "apiVersion": "audit.k8s.io/v1",
            "kind": "Policy",
            "omitManagedFields": case["policyOmitManagedFields"],
            "rules": [rule],
        }
    )
    decision = policy.evaluate(RequestAttributes(None, (), "get", True))
    assert decision.omit_managed_fields is case["expected"]


def test_table_is_complete() -> None:
    # Guards against the corpus file being truncated: the transcription has 104 + 7 + 4 cases.
    assert (len(TABLE["cases"]), len(TABLE["unionStagesCases"]), len(TABLE["omitManagedFieldsCases"])) == (
        104,
        7,
        4,
    )
