"""The 403 burst's subject (the SNS subject read at 3 a.m.) says what was denied, with no empty placeholder."""

from __future__ import annotations

from typing import Any

import pytest

from auditlake.trust.alerts import RULE_ALL, RULE_SECRETS, denied_what, subject


def burst(rule: str = RULE_ALL, **details: Any) -> dict[str, Any]:
    identity = "system:serviceaccount:ci:bot"
    return {"rule": rule, "title": "t", "level": "high", "cluster": "kind-kind", "identity": identity,
            "count": 12, "window_start": "2026-11-30T06:24:00Z", **details}  # fmt: skip


@pytest.mark.parametrize(
    ("details", "expected"),
    [
        ({"verbs": ["list"], "resources": ["secrets"]}, "denied 12x: list secrets cluster-wide in kind-kind"),
        ({"verbs": ["list"], "resources": ["secrets ci"]}, "denied 12x: list secrets in namespace ci in kind-kind"),
        ({"verbs": ["get"], "resources": ["secrets prod/db-pass"]},
         "denied 12x: get secrets prod/db-pass in kind-kind"),
        ({"verbs": ["get", "list"], "resources": ["configmaps a/b", "secrets a/c", "secrets"]},
         "denied 12x: get,list configmaps, secrets (3 objects) in kind-kind"),
        ({"verbs": ["?"], "resources": ["pods"]}, "denied 12x: pods cluster-wide in kind-kind"),
        ({}, "denied 12x in kind-kind"),  # an alert without details: the count alone, no ": " or "on in"
    ],
)  # fmt: skip
def test_the_subject_says_what_was_denied(details: dict[str, Any], expected: str) -> None:
    text = subject(burst(**details))
    assert text == f"auditlake: system:serviceaccount:ci:bot {expected} at 2026-11-30T06:24:00Z"[:100]
    assert "  " not in text and " on in " not in text and ": in" not in text


def test_the_secrets_rule_names_secrets_and_long_subjects_stay_100_characters() -> None:
    many = {"verbs": ["get"], "resources": [f"secrets ns/s{i}" for i in range(40)]}
    assert denied_what(burst(RULE_SECRETS, **many)) == "get secrets (40 objects)"
    long = burst(RULE_SECRETS, verbs=["list"], resources=["secrets " + "n" * 63])
    assert len(subject(long)) == 100 and subject(long).startswith(
        "auditlake: system:serviceaccount:ci:bot denied 12x: list"
    )
