"""The built-in rule set (``layers/core/auditlake/detect/builtin/*.yml``): well-formed Sigma with
stable identities, loaded by the engine without problems, narrower than a verb, and each rule the
shared corpus does not exercise firing on a hand-made positive and not on its negative
(``tests/fixtures/builtin-rules/cases.json``). The corpus-driven checks (Falco, Panther, SigmaHQ,
precision) are in ``tests/integration/test_rule_coverage.py``."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from auditlake.model import SIGMA_LEVELS
from tests.helpers import ROOT, builtin_engine, builtin_ids

BUILTIN = ROOT / "layers" / "core" / "auditlake" / "detect" / "builtin"
CASES = ROOT / "tests" / "fixtures" / "builtin-rules" / "cases.json"
CLUSTER = "unit"
INGESTED_AT = "2026-11-30T12:00:00.000000Z"
# Helper D's 403-burst rules live in the same directory (forbidden*.yml); their checks are D's.
OURS = sorted(path for path in BUILTIN.glob("*.yml") if not path.name.startswith("forbidden"))


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def all_documents() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, doc) for path in OURS for doc in documents(path)]


def test_every_rule_is_well_formed_with_a_stable_identity() -> None:
    docs = all_documents()
    assert len(docs) >= 40
    ids = [doc["id"] for _, doc in docs]
    names = [doc["name"] for _, doc in docs]
    assert len(set(ids)) == len(ids) and len(set(names)) == len(names)
    for path, doc in docs:
        assert str(uuid.UUID(doc["id"])) == doc["id"], path
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", doc["name"]), path
        assert doc["level"] in SIGMA_LEVELS, path
        assert doc["title"] and doc["description"], path
        if "correlation" in doc:
            continue
        assert doc["logsource"] == {"product": "kubernetes", "service": doc["logsource"]["service"]}, path
        assert doc["logsource"]["service"] in ("audit", "events"), path
    # One rule per file, named after it; a correlation shares its file with its base rule only.
    for path in OURS:
        assert path.stem in {doc["name"] for doc in documents(path)}, path


def test_pysigma_parses_every_rule_and_its_validators_find_nothing() -> None:
    from sigma.collection import SigmaCollection
    from sigma.rule import SigmaRule
    from sigma.validators.core import validators

    collection = SigmaCollection.load_ruleset([str(path) for path in OURS])
    collection.resolve_rule_references()
    # The network-bound validators (ATT&CK / D3FEND data) are left out: tests run without sockets.
    checks = [cls() for name, cls in validators.items() if name not in ("attacktag", "d3_fendtag")]
    issues = []
    for rule in collection.rules:
        assert not rule.errors, (rule.source, rule.errors)
        if isinstance(rule, SigmaRule):
            for condition in rule.detection.parsed_condition:
                condition.parsed  # noqa: B018 - parsing the condition is the check
        issues += [(str(rule.source), type(issue).__name__) for check in checks for issue in check.validate(rule)]
    assert not issues, issues


@pytest.fixture(scope="module")
def engine() -> Any:
    return builtin_engine()


@pytest.fixture(scope="module")
def ids() -> dict[str, str]:
    """Our rule names -> ids (findings carry the id)."""
    return builtin_ids()


def test_the_engine_loads_all_of_them(ids: dict[str, str]) -> None:
    expected = {doc["name"] for _, doc in all_documents() if "correlation" not in doc}
    assert expected <= ids.keys()


def audit_event(verb: str, resource: str, **fields: Any) -> Any:
    from auditlake.audit.schema import event_decoder

    event = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "RequestResponse",
        "auditID": f"{verb}-{resource}",
        "stage": "ResponseComplete",
        "requestURI": f"/api/v1/namespaces/default/{resource}/x",
        "verb": verb,
        "user": {"username": "alice@example.com", "groups": ["system:authenticated"]},
        "sourceIPs": ["10.0.0.5"],
        "userAgent": "kubectl/v1.30.0",
        "objectRef": {"resource": resource, "namespace": "default", "name": "x", "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 200},
        "requestObject": {"kind": "Object", "metadata": {"name": "x", "namespace": "default"}},
        "requestReceivedTimestamp": "2026-11-20T10:00:00.000000Z",
        "stageTimestamp": "2026-11-20T10:00:00.010000Z",
        **fields,
    }
    return event_decoder.decode(json.dumps(event).encode())


VERBS = ("create", "update", "patch", "delete", "deletecollection", "get", "list", "watch")
RESOURCES = (
    "pods",
    "deployments",
    "daemonsets",
    "cronjobs",
    "services",
    "ingresses",
    "configmaps",
    "secrets",
    "serviceaccounts",
    "roles",
    "clusterroles",
    "rolebindings",
    "clusterrolebindings",
    "namespaces",
    "nodes",
    "events",
    "mutatingwebhookconfigurations",
    "certificatesigningrequests",
)


# The rules whose signal is the kind of object itself (a plain request of that kind IS the
# behaviour): (verb, resource) -> rule name. Nothing else may fire on a plain request.
KIND_RULES = {
    ("create", "daemonsets"): "daemonset-created",  # a pod on every node
    ("create", "cronjobs"): "cronjob-changed",  # scheduled execution
    ("update", "cronjobs"): "cronjob-changed",
    ("patch", "cronjobs"): "cronjob-changed",
    ("create", "ingresses"): "ingress-without-tls",  # the plain body has no spec.tls
    ("create", "mutatingwebhookconfigurations"): "admission-webhook-changed",
    ("delete", "mutatingwebhookconfigurations"): "admission-webhook-changed",
    ("delete", "events"): "events-deleted",
    ("deletecollection", "events"): "events-deleted",
}


@pytest.mark.parametrize("verb", VERBS)
def test_no_rule_fires_on_a_plain_request_of_any_verb_and_kind(engine: Any, ids: dict[str, str], verb: str) -> None:
    """Precision: an ordinary, successful request by an ordinary user with an unremarkable body is
    no finding, whatever its verb and resource, except where the kind is the behaviour (KIND_RULES);
    every rule needs more than the verb."""
    fired = {
        (resource, match.finding.rule_id)
        for resource in RESOURCES
        for match in engine.audit(audit_event(verb, resource), CLUSTER, INGESTED_AT)
        if match.generate
    }
    expected = {(resource, ids[name]) for (v, resource), name in KIND_RULES.items() if v == verb}
    assert fired == expected


def cases() -> list[dict[str, Any]]:
    return json.loads(CASES.read_text())["cases"]


@pytest.mark.parametrize("case", cases(), ids=lambda case: f"{case['rule']}-{case['expect']}")
def test_hand_made_cases(engine: Any, ids: dict[str, str], case: dict[str, Any]) -> None:
    if case["source"] == "events":
        matches = engine.events(case["event"], CLUSTER, INGESTED_AT)
    else:
        from auditlake.audit.schema import event_decoder

        matches = engine.audit(event_decoder.decode(json.dumps(case["event"]).encode()), CLUSTER, INGESTED_AT)
    assert (ids[case["rule"]] in {m.finding.rule_id for m in matches if m.generate}) is case["expect"], case["why"]


def test_every_events_rule_has_cases() -> None:
    """The Events rules have no corpus expectations: each has a positive and a negative here."""
    positive = {case["rule"] for case in cases() if case["expect"]}
    negative = {case["rule"] for case in cases() if not case["expect"]}
    events_rules = {doc["name"] for _, doc in all_documents() if doc.get("logsource", {}).get("service") == "events"}
    assert events_rules <= positive & negative


def test_a_credential_finding_names_the_key_never_the_value(engine: Any, ids: dict[str, str]) -> None:
    key = "AKIAIOSFODNN7EXAMPLE"  # AWS's documented example access key id
    event = audit_event("create", "configmaps", requestObject={"data": {"backup.env": f"AWS_KEY={key}"}})
    matches = [
        m for m in engine.audit(event, CLUSTER, INGESTED_AT) if m.finding.rule_id == ids["configmap-credentials"]
    ]
    assert matches
    for match in matches:
        stored = json.dumps([repr(match.finding), dict(match.fields)])
        assert key not in stored and "AWS_KEY" not in stored
        assert "backup.env" in match.finding.details
