"""Rules are evaluated in the audit pipeline, before its policy and before redaction, on both decode
paths; a quarantined event's matches are not kept."""

from __future__ import annotations

import copy
import json
from typing import Any

from auditlake.audit.pipeline import AuditPipeline, PipelineConfig
from auditlake.audit.policy import load_policy
from tests.fakes.detector import AUDIT_RULE, FakeDetector
from tests.helpers import eventlist_body

FIXTURES = "tests/fixtures/detect"
KEY = b"AKIAIOSFODNN7EXAMPLE"


def planted() -> dict[str, Any]:
    with open(f"{FIXTURES}/configmap-aws-key.json", "rb") as handle:
        event: dict[str, Any] = json.load(handle)
    return event


def other(n: int) -> dict[str, Any]:
    event = planted()
    event["auditID"] = f"00000000-0000-4000-8000-{n:012d}"
    event["objectRef"]["resource"] = "services"
    event.pop("requestObject")
    event.pop("responseObject")
    return event


def run(pipeline: AuditPipeline, items: list[dict[str, Any]]) -> Any:
    return pipeline.eventlist(
        eventlist_body(items), cluster="prod", source="webhook", ingested_at="2026-11-21T05:30:00.000000Z"
    )


def test_the_typed_path_evaluates_every_event_and_keeps_the_matches() -> None:
    detector = FakeDetector()
    result = run(AuditPipeline(PipelineConfig(), detector), [other(1), planted(), other(2)])
    assert len(detector.seen) == 3
    assert [m.rule for m in result.matches] == [AUDIT_RULE]
    finding = result.matches[0].finding
    assert (finding.cluster, finding.audit_id, finding.ingested_at) == (
        "prod",
        planted()["auditID"],
        "2026-11-21T05:30:00.000000Z",
    )
    assert result.accepted == 3


def test_the_lenient_path_evaluates_too() -> None:
    event = planted()
    event["futureField"] = {"x": 1}  # unknown to the schema: the item is decoded on its own
    detector = FakeDetector()
    result = run(AuditPipeline(PipelineConfig(), detector), [event])
    assert [m.rule for m in result.matches] == [AUDIT_RULE]
    assert b"futureField" in result.lines[0]  # it went the lenient way, into extra


def test_rules_see_the_body_before_redaction_and_nothing_stored_holds_the_key() -> None:
    detector = FakeDetector()
    result = run(AuditPipeline(PipelineConfig(), detector), [planted()])
    assert KEY in detector.bodies[0]  # what the cluster sent
    assert result.redacted == 1 and KEY not in b"".join(result.lines)  # configmap bodies are redacted
    assert result.matches and KEY not in json.dumps(result.matches[0].finding.details).encode()


def test_rules_run_before_the_policy_a_dropped_event_still_yields_its_finding() -> None:
    with open(f"{FIXTURES}/drop-configmaps-policy.yaml", "rb") as handle:
        policy = load_policy(handle.read())
    result = run(AuditPipeline(PipelineConfig(policy), FakeDetector()), [planted(), other(1)])
    assert (result.filtered, result.accepted) == (1, 1)
    assert [m.finding.audit_id for m in result.matches] == [planted()["auditID"]]


def test_a_quarantined_event_yields_no_finding() -> None:
    bad = copy.deepcopy(planted())
    bad["stageTimestamp"] = "yesterday"  # normalise refuses it: quarantined
    detector = FakeDetector()
    result = run(AuditPipeline(PipelineConfig(), detector), [bad, other(1)])
    assert len(result.failures) == 1 and result.accepted == 1
    assert result.matches == []


def test_without_a_detector_nothing_is_evaluated() -> None:
    result = run(AuditPipeline(PipelineConfig()), [planted()])
    assert result.matches == [] and result.accepted == 1
