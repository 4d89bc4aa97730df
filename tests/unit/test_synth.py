"""Synthetic traffic: reproducible, shaped like a real cluster's, with the planted incidents."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from auditlake.audit.pipeline import AuditPipeline, PipelineConfig
from auditlake.demo import synth

START = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def events(seed: int = 7) -> list[dict]:
    return list(synth.Synth(minutes=10, rate=30, seed=seed, start=START).events())


def test_same_seed_same_traffic() -> None:
    assert events() == events()
    assert events() != events(seed=8)


def test_shape() -> None:
    out = events()
    assert 17_000 < len(out) < 19_000  # 10 min x 30/s
    levels = Counter(e["level"] for e in out)
    assert 0.07 < levels["RequestResponse"] / len(out) < 0.13
    stages = Counter(e["stage"] for e in out)
    assert stages["RequestReceived"] == stages["ResponseComplete"] and stages["ResponseStarted"] > 0
    assert [e["stageTimestamp"] for e in out] == sorted(e["stageTimestamp"] for e in out)
    assert all(START.isoformat()[:13] <= e["requestReceivedTimestamp"][:13] for e in out)
    result = AuditPipeline(PipelineConfig()).process(out[:500], cluster="c", source="file", ingested_at="x")
    assert result.accepted == 500
    assert not any("requestObject" in e for e in out if e["stage"] == "RequestReceived")


def test_incidents_are_planted() -> None:
    out = [e for e in events() if e["stage"] == "ResponseComplete"]
    deletes = [e for e in out if e["verb"] == "delete" and e.get("objectRef", {}).get("name") == "db-pass"]
    assert [e["user"]["username"] for e in deletes] == [synth.INCIDENT_DELETER]
    denied = [e for e in out if e["user"]["username"] == synth.INCIDENT_DENIED]
    assert len(denied) == 15 and {e["responseStatus"]["code"] for e in denied} == {403}
    first, last = denied[0]["requestReceivedTimestamp"], denied[-1]["requestReceivedTimestamp"]
    assert (datetime.fromisoformat(last) - datetime.fromisoformat(first)).total_seconds() < 60
    execs = [e for e in out if e.get("objectRef", {}).get("subresource") == "exec"]
    assert [e["user"]["username"] for e in execs] == [synth.INCIDENT_EXEC]
    evictions = [e for e in out if e.get("objectRef", {}).get("subresource") == "eviction"]
    assert [e["user"]["username"] for e in evictions] == [synth.INCIDENT_EVICTOR]


def test_incidents_only_rules_find_are_planted() -> None:
    out = [e for e in events() if e["stage"] == "ResponseComplete" and e["verb"] == "create"]
    by_name = {e.get("objectRef", {}).get("name"): e for e in out}
    pod = by_name[synth.INCIDENT_PRIVILEGED[1]]["requestObject"]
    assert pod["spec"]["containers"][0]["securityContext"]["privileged"] is True
    binding = by_name["dave-admin"]
    assert binding["user"]["username"] == synth.INCIDENT_ESCALATOR
    assert binding["requestObject"]["roleRef"]["name"] == "cluster-admin"
    configmap = by_name[synth.INCIDENT_CONFIGMAP[1]]
    assert configmap["requestObject"]["data"]["aws_access_key_id"] == synth.PLANTED_AWS_KEY
    # The pipeline's default redaction drops the ConfigMap's body: only a rule evaluated before it sees the key.
    result = AuditPipeline(PipelineConfig()).process([configmap], cluster="c", source="file", ingested_at="x")
    assert result.accepted == 1 and synth.PLANTED_AWS_KEY.encode() not in b"".join(result.lines)
