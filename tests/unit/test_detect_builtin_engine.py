"""The engine's shortcuts change no answer on the built-in rules: for realistic traffic (the demo's
synthetic cluster with its planted incidents) and for the built-in rules' hand-made cases, the
indexed engine on the typed AuditEvent (resource/verb, response-code and user indexes, scalar
readers, merged ORs, memoised single-field rules, lazily decoded bodies) gives exactly the rules
that evaluating every audit rule's condition, without any shortcut, on the event's plain JSON gives;
RequestReceived copies excepted (never evaluated)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from auditlake.audit.schema import event_decoder
from auditlake.demo.synth import Synth
from auditlake.detect.compile import Doc, Pred, predicate
from auditlake.detect.engine import RuleEngine
from auditlake.detect.rulesets import builtin_rules
from tests.helpers import ROOT

INGESTED_AT = "2026-11-01T00:10:00.000000Z"
CASES = ROOT / "tests/fixtures/builtin-rules/cases.json"


@pytest.fixture(scope="module")
def engine() -> RuleEngine:
    return RuleEngine(builtin_rules())


@pytest.fixture(scope="module")
def every_rule() -> list[tuple[str, Pred]]:
    """Each audit rule's condition compiled with no scalar readers: the generic path over a dict."""
    return [(rule.id, predicate(rule.condition)) for rule in builtin_rules().rules if rule.logsource == "audit"]


def synth_traffic() -> list[dict[str, Any]]:
    # A fixed start: the traffic, and so the test, is the same whatever the date.
    synth = Synth(minutes=3, rate=40, seed=7, start=datetime(2026, 11, 1, tzinfo=UTC))
    return [msgspec.json.decode(msgspec.json.encode(event)) for event in synth.events()]


def audit_cases() -> list[dict[str, Any]]:
    return [case for case in json.loads(CASES.read_text())["cases"] if case["source"] == "audit"]


def disagreements(engine: RuleEngine, every_rule: list[tuple[str, Pred]], events: list[dict[str, Any]]) -> list[Any]:
    found = []
    for plain in events:
        typed = event_decoder.decode(msgspec.json.encode(plain))
        got = sorted(match.rule for match in engine.audit(typed, "c1", INGESTED_AT))
        want = [] if plain["stage"] == "RequestReceived" else sorted(i for i, test in every_rule if test(Doc(plain)))
        if got != want:
            found.append((plain["auditID"], got, want))
    return found


def test_on_synthetic_traffic_the_index_finds_what_every_rule_finds(
    engine: RuleEngine, every_rule: list[tuple[str, Pred]]
) -> None:
    events = synth_traffic()
    assert disagreements(engine, every_rule, events) == []
    fired = {
        m.name for e in events for m in engine.audit(event_decoder.decode(msgspec.json.encode(e)), "c1", INGESTED_AT)
    }
    # Not a vacuous comparison: the planted incidents and the background's secrets traffic fire.
    assert {"configmap-credentials", "pod-privileged-container", "binding-privileged-role", "secret-read"} <= fired
    assert any(e["stage"] == "RequestReceived" for e in events)  # the skipped stage is in the traffic


def test_on_the_hand_made_cases_the_index_finds_what_every_rule_finds(
    engine: RuleEngine, every_rule: list[tuple[str, Pred]]
) -> None:
    cases = audit_cases()
    events = [case["event"] for case in cases]
    assert disagreements(engine, every_rule, events) == []
    fired = {
        m.name for e in events for m in engine.audit(event_decoder.decode(msgspec.json.encode(e)), "c1", INGESTED_AT)
    }
    assert {case["rule"] for case in cases if case["expect"]} <= fired  # every positive case's rule took part
