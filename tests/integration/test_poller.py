"""The Events poller against a fake API server over HTTPS: the scenarios where event exporters lose
or duplicate Events. In every one the archive (after compaction) holds each (uid, resource_version)
the server ever had exactly once, and what could not be recovered is a coverage-gap record."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from auditlake.events.api import KubeApi
from auditlake.events.auth import StaticCredentials
from auditlake.events.leases import Lease, LeaseLost, LocalLeases
from auditlake.events.poller import GAP_API, EventsPoller
from auditlake.landing import Landing, decode_lines
from auditlake.local_lake import LocalLake
from auditlake.query import named as query
from auditlake.stores.local import LocalStore
from tests.fakes.kube import FakeKube
from tests.helpers import archived_events, corpus_kube_events, raw_keys_of

CLUSTER = "prod"


class Clock:
    """Wall time the test moves (leases, checkpoints, gap horizons), from the real now (the corpus'
    Events are years old: nothing may compare them with the date the suite runs)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def seconds(self) -> float:
        return self.now.timestamp()

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class Secret:
    """What Secrets Manager holds, and how often it was read."""

    def __init__(self, value: str) -> None:
        self.value, self.reads = value, 0

    def __call__(self, _force: bool) -> str:
        self.reads += 1
        return self.value


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def seeded(fake_kube: FakeKube) -> FakeKube:
    for event in corpus_kube_events():
        fake_kube.add(event)
    return fake_kube


def make_poller(fake: FakeKube, lake: Path, clock: Clock, *, holder: str = "p1", secret: Secret | None = None,
                **kwargs: Any) -> EventsPoller:  # fmt: skip
    credentials = StaticCredentials(secret or Secret("reader-token"), fake.url, fake.ca.cert_pem.bytes().decode())
    return EventsPoller(
        KubeApi(credentials),
        Landing(LocalStore(lake), "events"),
        LocalLeases(LocalLake(lake).poller_dir, clock=clock.seconds),
        CLUSTER,
        holder=holder,
        wall=clock,
        **kwargs,
    )


def exactly_once(fake: FakeKube, lake: Path) -> list[dict[str, Any]]:
    """Assert the archive holds every version the server had once; returns the gap rows."""
    rows = archived_events(lake)
    events = [r for r in rows if r["api"] != GAP_API]
    counts = Counter((r["uid"], r["resource_version"]) for r in events)
    assert [key for key, n in counts.items() if n > 1] == []
    assert set(counts) == fake.versions()
    return [r for r in rows if r["api"] == GAP_API]


def test_first_poll_lists_every_event_in_pages_and_keeps_its_place(seeded: FakeKube, tmp_path: Path,
                                                                    clock: Clock) -> None:  # fmt: skip
    stats = make_poller(seeded, tmp_path, clock, page_limit=10).poll(30, keep_watching=False)
    assert (stats.listed, stats.emitted, stats.quarantined, stats.api) == (113, 113, 0, "events.k8s.io/v1")
    lists = [q for path, q in seeded.requests if path.endswith("/events")]
    assert len(lists) == 12 and all(q["limit"] == "10" for q in lists) and "continue" in lists[-1]
    assert stats.resource_version == str(seeded.version)
    assert stats.state_writes == 3  # lease, checkpoint, release
    assert exactly_once(seeded, tmp_path) == []
    # Events written through core/v1 carry eventTime: null; they are read, not rejected.
    assert sum(1 for e in corpus_kube_events() if e.get("eventTime") is None) == 93


def test_restart_between_polls_emits_only_new_versions(seeded: FakeKube, tmp_path: Path, clock: Clock) -> None:
    make_poller(seeded, tmp_path, clock).poll(30, keep_watching=False)
    uids = [e["metadata"]["uid"] for e in corpus_kube_events() if e.get("count")]
    seeded.recur(uids[0])
    seeded.recur(uids[0], "2026-11-21T10:00:05Z")  # two recurrences: two versions, both kept
    seeded.recur(uids[5])
    seeded.delete(uids[7])  # DELETED is not an Event to archive
    clock.advance(minutes=1)
    # A new process: nothing shared with the first poller but the lake.
    stats = make_poller(seeded, tmp_path, clock, holder="p2").poll(30, keep_watching=False)
    assert (stats.listed, stats.watched, stats.emitted) == (0, 5, 3)  # 4 changes + the closing bookmark
    watch = [q for _, q in seeded.requests if q.get("watch")][-1]
    assert watch["allowWatchBookmarks"] == "true" and int(watch["timeoutSeconds"]) < 30
    assert exactly_once(seeded, tmp_path) == []
    counts = sorted(r["count"] for r in archived_events(tmp_path) if r["uid"] == uids[0])
    assert len(counts) == 3 and counts[1:] == [counts[0] + 1, counts[0] + 2]
    # An events.k8s.io series (no count; series.count) recurs too: each recurrence kept.
    series = next(e["metadata"]["uid"] for e in corpus_kube_events() if e.get("series"))
    seeded.recur(series)
    assert make_poller(seeded, tmp_path, clock).poll(30, keep_watching=False).emitted == 1
    assert exactly_once(seeded, tmp_path) == []
    counts = sorted(r["series_count"] for r in archived_events(tmp_path) if r["uid"] == series)
    assert counts == [counts[0], counts[0] + 1]


def test_410_in_the_middle_of_a_watch_relists_and_records_what_a_list_cannot_show(
    seeded: FakeKube, tmp_path: Path, clock: Clock
) -> None:
    make_poller(seeded, tmp_path, clock).poll(30, keep_watching=False)
    uids = [e["metadata"]["uid"] for e in corpus_kube_events()]
    for uid in uids[:4]:
        seeded.recur(uid)
    seeded.gone_after = 2  # the watch delivers two changes, then its history is compacted away
    seeded.recur(uids[3], "2026-11-21T10:00:09Z")  # superseded before the relist can see it
    seeded.compact()
    lost = seeded.history[-2][0]  # uids[3]'s first recurrence: only the later version is still stored
    stats = make_poller(seeded, tmp_path, clock).poll(30, keep_watching=False)
    assert stats.relists == 1 and stats.gaps == 1
    rows = archived_events(tmp_path)
    keys = Counter((r["uid"], r["resource_version"]) for r in rows if r["api"] != GAP_API)
    assert max(keys.values()) == 1
    assert set(keys) == seeded.versions() - {(uids[3], str(lost))}
    gap = next(r for r in rows if r["api"] == GAP_API)
    assert "superseded" in gap["note"] and gap["cluster"] == CLUSTER


def test_410_with_only_new_events_is_recovered_completely(seeded: FakeKube, tmp_path: Path, clock: Clock) -> None:
    make_poller(seeded, tmp_path, clock).poll(30, keep_watching=False)
    for n, event in enumerate(corpus_kube_events()[:3]):
        first = {key: value for key, value in event.items() if key != "series"}
        seeded.add({**first, "count": 1, "metadata": {**event["metadata"], "uid": f"new-{n}", "name": f"new-{n}"}})
    seeded.compact()
    seeded.gone_as_http = True  # this time the server answers the watch with HTTP 410
    stats = make_poller(seeded, tmp_path, clock).poll(30, keep_watching=False)
    assert (stats.relists, stats.emitted, stats.gaps) == (1, 3, 0)
    assert exactly_once(seeded, tmp_path) == []


def test_a_checkpoint_older_than_the_event_history_leaves_a_gap_record(
    seeded: FakeKube, tmp_path: Path, clock: Clock
) -> None:
    make_poller(seeded, tmp_path, clock).poll(30, keep_watching=False)
    synced = clock.now
    # The poller is down for 3 hours: an Event happens and expires (the API server keeps 1 h), the
    # history is compacted, another Event happens.
    template = corpus_kube_events()[0]
    lost = seeded.add({**template, "metadata": {**template["metadata"], "uid": "lost"}})
    seeded.delete("lost")
    seeded.compact()
    seeded.add({**template, "metadata": {**template["metadata"], "uid": "late"}})
    clock.advance(hours=3)
    stats = make_poller(seeded, tmp_path, clock).poll(30, keep_watching=False)
    assert (stats.relists, stats.gaps) == (1, 1)
    rows = archived_events(tmp_path)
    keys = Counter((r["uid"], r["resource_version"]) for r in rows if r["api"] != GAP_API)
    assert max(keys.values()) == 1 and set(keys) == seeded.versions() - {("lost", str(lost))}
    [gap] = [r for r in rows if r["api"] == GAP_API]
    assert gap["first_timestamp"] == synced.replace(tzinfo=None)
    assert gap["last_timestamp"] == (clock.now - timedelta(hours=1)).replace(tzinfo=None)
    assert "older than the API server's event history" in gap["note"]
    # The named query shows it to whoever asks about that day.
    coverage = query.load("coverage_gaps")

    def iso(moment: datetime) -> str:
        return f"{moment:%Y-%m-%dT%H:%M:%SZ}"

    window = {"since": iso(synced + timedelta(hours=1)), "until": iso(synced + timedelta(hours=14)), "cluster": CLUSTER}
    answer = query.LocalEngine(tmp_path / "archive").run(coverage.sql, coverage.bind(window))
    assert [(row[0], row[1], row[2]) for row in answer.rows] == [
        (CLUSTER, gap["first_timestamp"], gap["last_timestamp"])
    ]
    outside = {**window, "since": iso(synced + timedelta(hours=2, minutes=30))}
    assert query.LocalEngine(tmp_path / "archive").run(coverage.sql, coverage.bind(outside)).rows == []


def test_token_rotation_rereads_the_secret_on_401(seeded: FakeKube, tmp_path: Path, clock: Clock) -> None:
    secret = Secret("reader-token")
    poller = make_poller(seeded, tmp_path, clock, secret=secret)
    poller.poll(30, keep_watching=False)
    seeded.tokens = {"rotated-token"}  # the old token is revoked ...
    secret.value = "rotated-token"  # ... and the new one is in Secrets Manager
    seeded.recur(corpus_kube_events()[0]["metadata"]["uid"])
    stats = poller.poll(30, keep_watching=False)  # the same process: its cached token is the old one
    assert stats.emitted == 1 and seeded.unauthorized == 1 and secret.reads == 2
    assert exactly_once(seeded, tmp_path) == []


def test_two_pollers_at_once_poll_once(seeded: FakeKube, tmp_path: Path, clock: Clock) -> None:
    seeded.linger = 1.0  # each watch stays open a while, so the two runs overlap
    make_poller(seeded, tmp_path, clock).poll(30, keep_watching=False)
    seeded.recur(corpus_kube_events()[1]["metadata"]["uid"])
    results: list[Any] = []
    pollers = [make_poller(seeded, tmp_path, clock, holder=f"p{n}") for n in range(2)]
    threads = [threading.Thread(target=lambda p=p: results.append(p.poll(30, keep_watching=False))) for p in pollers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.skipped is None for r in results) == [False, True]
    assert exactly_once(seeded, tmp_path) == []


class Paused:
    """A source that, at the first watch line, lets another poller take over (the lease expired:
    this one was paused, as a stopped container or a frozen Lambda is)."""

    def __init__(self, inner: KubeApi, meanwhile: Any) -> None:
        self.inner, self.meanwhile = inner, meanwhile

    @property
    def verifies_tls(self) -> bool:
        return True

    def get(self, path: str, query: dict[str, Any] | None = None, *, timeout: float = 60.0) -> bytes:
        return self.inner.get(path, query, timeout=timeout)

    def stream(self, path: str, query: dict[str, Any], *, timeout: float) -> Iterator[bytes]:
        for n, line in enumerate(self.inner.stream(path, query, timeout=timeout)):
            if n == 0:
                self.meanwhile()
            yield line


def test_a_poller_that_lost_its_lease_cannot_move_the_checkpoint(seeded: FakeKube, tmp_path: Path,
                                                                   clock: Clock) -> None:  # fmt: skip
    make_poller(seeded, tmp_path, clock).poll(30, keep_watching=False)
    seeded.recur(corpus_kube_events()[2]["metadata"]["uid"])

    def take_over() -> None:
        clock.advance(minutes=5)
        assert make_poller(seeded, tmp_path, clock, holder="new").poll(30, keep_watching=False).skipped is None

    old = make_poller(seeded, tmp_path, clock, holder="old")
    old.source = Paused(old.source, take_over)  # type: ignore[assignment]
    with pytest.raises(LeaseLost):
        old.poll(30, keep_watching=False)
    assert exactly_once(seeded, tmp_path) == []


class CrashOnAdvance(LocalLeases):
    def advance(self, lease: Lease, checkpoint: dict[str, Any], seconds: float) -> None:
        raise SystemExit("killed")  # the process dies between the raw write and the checkpoint


def test_a_poller_killed_after_writing_raw_but_before_its_checkpoint(seeded: FakeKube, tmp_path: Path,
                                                                     clock: Clock) -> None:  # fmt: skip
    make_poller(seeded, tmp_path, clock).poll(30, keep_watching=False)
    seeded.recur(corpus_kube_events()[3]["metadata"]["uid"])
    doomed = make_poller(seeded, tmp_path, clock, holder="doomed")
    doomed.leases = CrashOnAdvance(LocalLake(tmp_path).poller_dir, clock=clock.seconds)
    with pytest.raises(SystemExit):
        doomed.poll(30, keep_watching=False)
    clock.advance(minutes=2)  # its lease runs out
    stats = make_poller(seeded, tmp_path, clock, holder="next").poll(30, keep_watching=False)
    assert stats.emitted == 1  # the same version again: landed twice, archived once
    assert exactly_once(seeded, tmp_path) == []


def test_core_v1_is_read_when_events_k8s_io_is_not_served(seeded: FakeKube, tmp_path: Path, clock: Clock) -> None:
    seeded.events_v1 = False
    stats = make_poller(seeded, tmp_path, clock).poll(30, keep_watching=False)
    assert stats.api == "v1" and stats.emitted == 113
    assert {r["api"] for r in archived_events(tmp_path)} == {"v1"}


def test_an_odd_event_is_quarantined_and_the_poll_goes_on(seeded: FakeKube, tmp_path: Path, clock: Clock) -> None:
    make_poller(seeded, tmp_path, clock).poll(30, keep_watching=False)
    odd = {**corpus_kube_events()[0], "count": "three"}
    odd["metadata"] = {**odd["metadata"], "uid": "odd"}
    seeded.add(odd)
    seeded.recur(corpus_kube_events()[4]["metadata"]["uid"])
    stats = make_poller(seeded, tmp_path, clock).poll(30, keep_watching=False)
    assert (stats.emitted, stats.quarantined) == (1, 1)
    [manifest] = LocalStore(tmp_path).list("quarantine/events/prod/")
    assert b"count must be a 32-bit count" in LocalStore(tmp_path).get(manifest)
    assert stats.resource_version == str(seeded.version)  # the checkpoint moved past it


def test_raw_records_have_the_events_archive_columns(seeded: FakeKube, tmp_path: Path, clock: Clock) -> None:
    make_poller(seeded, tmp_path, clock).poll(30, keep_watching=False)
    store = LocalStore(tmp_path)
    [key] = raw_keys_of(store, "events", "prod")
    rows = [json.loads(line) for line in decode_lines(store.get(key))]
    crash = next(r for r in rows if r["reason"] == "BackOff")
    assert crash["api"] == "events.k8s.io/v1" and crash["regarding_kind"] == "Pod" and crash["count"] >= 1
