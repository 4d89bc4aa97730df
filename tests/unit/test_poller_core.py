"""The poller core on recorded answers (no sockets): odd input is quarantined, state writes do not
grow with the number of Events, the checkpoint never runs ahead of what was landed."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from bench.polling import CountingLeases, Recording, seed_checkpoint, watch_lines

from auditlake.kube_api import KubeError
from auditlake.landing import Landing
from auditlake.leases import LocalLeases
from auditlake.poller import EventsPoller, newer
from auditlake.stores.local import LocalStore


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
    error = orjson.dumps({"type": "ERROR", "object": {"kind": "Status", "code": 500, "message": "etcd down"}})
    with pytest.raises(KubeError, match="500 etcd down"):
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
