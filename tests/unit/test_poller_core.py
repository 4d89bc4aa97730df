"""The poller core on recorded answers (no sockets): odd input is quarantined, state writes do not
grow with the number of Events, the checkpoint never runs ahead of what was landed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from bench.polling import seed_checkpoint, watch_lines

from auditlake.events.api import KubeError
from auditlake.events.leases import LocalLeases
from auditlake.events.poller import EventsPoller, PollerFleet, newer, round_robin
from auditlake.landing import Landing
from auditlake.stores.local import LocalStore
from tests.fakes.kube_client import Recording
from tests.fakes.leases import CountingLeases


def poller(tmp_path: Path, source: Recording, leases: LocalLeases | None = None, **kwargs: object) -> EventsPoller:
    leases = leases or LocalLeases(tmp_path / "leases")
    return EventsPoller(source, Landing(LocalStore(tmp_path), "events"), leases, "bench", holder="t", **kwargs)  # type: ignore[arg-type]


def checkpoint(tmp_path: Path) -> dict[str, str]:
    return orjson.loads((tmp_path / "leases" / "bench.json").read_bytes())["checkpoint"]


def test_state_writes_do_not_grow_with_the_number_of_events(tmp_path: Path) -> None:
    leases = CountingLeases(tmp_path / "leases")
    seed_checkpoint(leases)
    lines = watch_lines(10_000)
    counts = []
    for n in (10, 10_000):
        before = leases.writes
        assert poller(tmp_path, Recording(watches=[lines[:n]]), leases).poll(30, keep_watching=False).emitted == n
        counts.append(leases.writes - before)
    assert counts == [3, 3]  # take the lease, move the checkpoint, release


def test_odd_watch_lines_are_quarantined_and_the_watch_goes_on(tmp_path: Path) -> None:
    leases = LocalLeases(tmp_path / "leases")
    seed_checkpoint(leases)
    good = watch_lines(3)
    stream = [good[0], b"{not json", b'{"type":"SURPRISE","object":{"metadata":{}}}', good[1], b"[1,2]", good[2]]
    stats = poller(tmp_path, Recording(watches=[stream]), leases).poll(30, keep_watching=False)
    assert (stats.emitted, stats.quarantined) == (3, 3)
    [manifest] = LocalStore(tmp_path).list("quarantine/events/bench/")
    doc = orjson.loads(LocalStore(tmp_path).get(manifest))
    assert [item.get("line") for item in doc["items"]] == ["{not json", stream[2].decode(), "[1,2]"]
    assert checkpoint(tmp_path)["resource_version"] == "1002"


def test_a_watch_error_keeps_what_was_read_and_the_checkpoint_at_it(tmp_path: Path) -> None:
    leases = LocalLeases(tmp_path / "leases")
    seed_checkpoint(leases)
    error = orjson.dumps({"type": "ERROR", "object": {"kind": "Status", "code": 403, "message": "forbidden"}})
    with pytest.raises(KubeError, match="403 forbidden"):  # not transient (a 500 is retried in the poll)
        poller(tmp_path, Recording(watches=[[*watch_lines(2), error]]), leases).poll(30, keep_watching=False)
    assert len(list(LocalStore(tmp_path).list("raw/events/"))) == 1
    assert checkpoint(tmp_path)["resource_version"] == "1001"


def test_a_list_answer_that_is_not_an_event_list_is_kept_and_stops_the_poll(tmp_path: Path) -> None:
    with pytest.raises(KubeError, match="not an EventList"):
        poller(tmp_path, Recording(lists=[b"<html>proxy error</html>"])).poll(30, keep_watching=False)
    [body] = [k for k in LocalStore(tmp_path).list("quarantine/events/bench/") if k.endswith(".body")]
    assert LocalStore(tmp_path).get(body) == b"<html>proxy error</html>"
    assert "checkpoint" not in orjson.loads((tmp_path / "leases" / "bench.json").read_bytes())


def test_a_long_list_lands_in_parts_but_checkpoints_once_at_its_end(tmp_path: Path) -> None:
    objects = [orjson.loads(line)["object"] for line in watch_lines(25)]
    pages = [
        orjson.dumps({"metadata": {"resourceVersion": "5000", "continue": "a"}, "items": objects[:12]}),
        orjson.dumps({"metadata": {"resourceVersion": "5000"}, "items": objects[12:]}),
    ]
    leases = CountingLeases(tmp_path / "leases")
    stats = poller(tmp_path, Recording(lists=pages), leases, max_buffer=10).poll(30, keep_watching=False)
    assert (stats.listed, stats.emitted, stats.raw_objects) == (25, 25, 2)  # landed after each page past the cap
    assert leases.writes == 3 and checkpoint(tmp_path)["resource_version"] == "5000"


def test_resource_versions_compare_as_numbers() -> None:
    assert newer("10", "9") and not newer("9", "10") and not newer("9", "9")
    assert newer("anything", None) and newer("opaque", "12")  # not comparable: emitted, deduplicated later


# ---------------------------------------------------------------- the schedule's fan-out

SCHEDULED = datetime(2026, 11, 21, 5, 30, tzinfo=UTC)


class Clusters:
    def __init__(self, count: int) -> None:
        # Registered in no particular order: the fan-out sorts.
        self.names = [f"cluster-{i:02d}" for i in range(count)][::-1]

    def polled(self) -> dict[str, Any]:
        return dict.fromkeys(self.names)


class Metrics:
    def __init__(self) -> None:
        self.values: list[tuple[str, float]] = []

    def add_metric(self, name: str, unit: str, value: float) -> None:
        self.values.append((name, value))


def fleet(count: int, max_fanout: int, metrics: Metrics | None = None, now: datetime = SCHEDULED) -> PollerFleet:
    return PollerFleet(Clusters(count), None, None, lambda config: None, max_fanout=max_fanout,  # type: ignore[arg-type]
                       metrics=metrics, clock=lambda: now)  # fmt: skip


def started(poller: PollerFleet, at: datetime) -> list[str]:
    names: list[str] = []
    assert poller.dispatch(names.append, at=at) == names
    return names


def test_a_bounded_fan_out_polls_every_cluster_within_ceil_k_over_n_minutes() -> None:
    metrics = Metrics()
    poller = fleet(25, 10, metrics)
    minutes = [started(poller, SCHEDULED + timedelta(minutes=m)) for m in range(3)]
    assert [len(names) for names in minutes] == [10, 10, 10]  # never more than the bound at once
    assert {name for names in minutes for name in names} == {f"cluster-{i:02d}" for i in range(25)}
    # Any 3 consecutive minutes, not only these: the rotation has no seams.
    for first in range(3, 40):
        window = [started(poller, SCHEDULED + timedelta(minutes=first + m)) for m in range(3)]
        assert len({name for names in window for name in names}) == 25
    assert [v for name, v in metrics.values if name == "PollsDeferred"][:3] == [15, 15, 15]
    assert [v for name, v in metrics.values if name == "PollsDispatched"][:3] == [10, 10, 10]


def test_within_the_bound_every_cluster_is_polled_every_minute() -> None:
    for count, bound in ((10, 10), (3, 10), (0, 10)):
        poller = fleet(count, bound)
        for m in range(3):
            assert started(poller, SCHEDULED + timedelta(minutes=m)) == sorted(Clusters(count).names)


def test_the_order_is_stable_and_a_repeated_schedule_starts_the_same_clusters() -> None:
    poller = fleet(25, 10)
    at = SCHEDULED + timedelta(minutes=7)
    first = started(poller, at)
    # The same minute again (EventBridge delivers at least once; a retry): the same clusters, in
    # the same order, whatever order the registry lists them in.
    assert started(poller, at + timedelta(seconds=42)) == first
    shuffled = fleet(25, 10)
    shuffled.registry.names.sort()
    assert started(shuffled, at) == first
    assert round_robin(["a", "b", "c", "d", "e"], 2, 0) == ["a", "b"]
    assert round_robin(["a", "b", "c", "d", "e"], 2, 2) == ["e", "a"]  # wraps around


def test_the_scheduled_events_time_picks_the_minute_else_the_clock() -> None:
    class Lambda:
        def __init__(self) -> None:
            self.payloads: list[bytes] = []

        def invoke(self, **kwargs: Any) -> None:
            self.payloads.append(kwargs["Payload"])

    later = SCHEDULED + timedelta(minutes=1)
    poller = fleet(25, 10, now=later)
    poller.invoker = Lambda()
    scheduled = {"source": "aws.events", "detail-type": "Scheduled Event", "time": "2026-11-21T05:30:00Z"}
    answer = poller.handle(scheduled, function_arn="arn", seconds_left=60, request_id="r")
    assert answer == {"dispatched": started(poller, SCHEDULED)}
    assert [orjson.loads(p)["cluster"] for p in poller.invoker.payloads] == answer["dispatched"]
    for unreadable in ({"source": "aws.scheduler"}, {"time": "soon"}):
        assert poller.handle(unreadable, function_arn="arn", seconds_left=60, request_id="r") == {
            "dispatched": started(poller, later)
        }
    assert started(poller, later) != started(poller, SCHEDULED)


def test_a_fan_out_bound_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        fleet(3, 0)


def test_a_source_that_fails_to_load_releases_the_lease(tmp_path: Path) -> None:
    """Asking the source whether it verifies TLS loads its kubeconfig or token; a failure there used to
    leave the lease held, so the next poll was skipped ("held by another run") until it ended."""

    class Broken(Recording):
        @property
        def verifies_tls(self) -> bool:
            raise KubeError("kubeconfig did not load")

    with pytest.raises(KubeError):
        poller(tmp_path, Broken(watches=[])).poll(30, keep_watching=False)
    assert LocalLeases(tmp_path / "leases").acquire("bench", "next run", 30) is not None  # not LeaseHeld
