"""Kubernetes Events of both APIs -> the events archive's columns, nothing silently lost."""

from __future__ import annotations

import json
from typing import Any

import pytest

from auditlake.events.normalise import EVENTS_V1, api_of, normalise_event
from auditlake.landing import Invalid
from auditlake.model import EVENT_COLUMN_NAMES
from tests.helpers import CORPUS, corpus_path, read_jsonl

OBSERVED = "2026-11-21T00:00:00.000000Z"


def normalised(obj: dict[str, Any]) -> dict[str, Any]:
    return normalise_event(obj, cluster="c", api=api_of(obj), observed_at=OBSERVED)


def test_every_real_event_in_the_corpus_normalises() -> None:
    files = sorted(CORPUS.glob("events/*.jsonl"))
    assert files
    for path in files:
        for obj in read_jsonl(path):
            record = normalised(obj)
            assert set(record) <= set(EVENT_COLUMN_NAMES)
            assert record["uid"] == obj["metadata"]["uid"] and record["event_time"]


def test_core_v1_written_through_events_api_reads_back_with_its_event_time() -> None:
    # k3s wrote these through events.k8s.io/v1; read via core/v1 they have null first/lastTimestamp.
    objs = read_jsonl(corpus_path("events/replicatedhq__troubleshoot__supportbundle_k3s__events_default.jsonl"))
    scheduled = next(o for o in objs if o["reason"] == "Scheduled")
    record = normalised(scheduled)
    assert record["event_time"] == "2022-12-21T16:43:07.860897Z" and "first_timestamp" not in record
    assert (record["action"], record["reporting_controller"]) == ("Binding", "default-scheduler")
    assert (record["regarding_kind"], record["regarding_name"]) == ("Pod", "static-hi")


def test_both_apis_map_to_the_same_columns() -> None:
    core = json.loads(corpus_path("events/kubernetes__api__testdata_HEAD__core.v1.Event.json").read_text())
    events = json.loads(corpus_path("events/kubernetes__api__testdata_HEAD__events.k8s.io.v1.Event.json").read_text())
    a, b = normalised(core), normalised(events)
    assert b["api"] == EVENTS_V1 and a["api"] == "v1"
    for column in ("note", "reporting_controller", "regarding_kind", "regarding_name", "series_count", "count"):
        assert column in a and column in b, column
    assert b["event_time"] == b["series_last_observed"] or b["event_time"]
    assert json.loads(b["extra"])["metadata.labels"] == {"labelsKey": "labelsValue"}  # kept, not dropped
    assert "managedFields" not in (a.get("extra") or "")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"metadata": {"name": "x"}}, "uid and metadata.resourceVersion are required"),
        ({"kind": "Pod"}, "kind must be Event"),
        ({"count": "7"}, "count must be"),
        ({"series": {"count": "7", "lastObservedTime": "2026-11-21T12:00:00Z"}}, "series.count must be a 32-bit"),
        ({"series": {"count": 2**31, "lastObservedTime": "2026-11-21T12:00:00Z"}}, "series.count must be a 32-bit"),
        ({"eventTime": "2026-W47-6T12:00:00.000000Z"}, "eventTime: .*RFC 3339"),
        (
            {"lastTimestamp": "9999-12-31T23:59:59Z", "eventTime": None, "firstTimestamp": "0001-01-01T00:30:00+01:00"},
            "firstTimestamp: outside the supported range",
        ),
        ({"eventTime": "soon"}, "eventTime: not an RFC 3339 timestamp"),
        ({"message": 5}, "message must be a string"),
    ],
)
def test_bad_events_are_refused_with_the_reason(change: dict[str, Any], reason: str) -> None:
    sample = corpus_path("events/replicatedhq__troubleshoot__analyze_events__message-image-pull-fail.jsonl")
    obj = {**read_jsonl(sample)[0], **change}
    with pytest.raises(Invalid, match=reason):
        normalised(obj)
