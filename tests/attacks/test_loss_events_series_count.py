"""11.6: an Events ``series.count`` that is a string or above int32 passed ingest, and the compactor
then quarantined the whole raw object, the good Events of the batch with it. It is refused at ingest
(that Event quarantined) and its neighbours archived."""

from __future__ import annotations

import json
from pathlib import Path

from auditlake.events.files import ingest_events
from auditlake.landing import Landing
from auditlake.stores.local import LocalStore
from tests.attacks.delivery import CLUSTER
from tests.attacks.loss import LANDED, archived, compact, manifests


def event(n: int, count: object = 2) -> dict[str, object]:
    return {"apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": f"e{n}", "namespace": "prod", "uid": f"uid-{n}", "resourceVersion": str(n)},
            "eventTime": "2026-11-21T12:00:00.000000Z", "reason": "BackOff", "type": "Warning",
            "series": {"count": count, "lastObservedTime": "2026-11-21T12:00:00.000000Z"}}  # fmt: skip


def test_a_bad_series_count_is_quarantined_alone(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    path = tmp_path / "events.jsonl"
    events = [event(1), event(2, count="7"), event(3, count=2**31), event(4)]
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    stats = ingest_events(path, Landing(LocalStore(lake), "events"), CLUSTER, clock=lambda: LANDED)
    assert stats.quarantined == 2
    compact(lake)
    assert sorted(archived(lake, "events")["uid"].to_pylist()) == ["uid-1", "uid-4"]
    items = [i for m in manifests(lake).values() for i in m["items"]]
    assert len(items) == 2 and all("series.count" in i["reason"] for i in items)
