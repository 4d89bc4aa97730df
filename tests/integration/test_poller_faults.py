"""The Events poller under the faults real API servers and the proxies in front of them inflict
(tests.fakes.kube.KubeFaults): 429 with Retry-After, 500, a spurious 410 (a watch cache that does
not hold the version although etcd does; an expired list continue token), the connection reset
before an answer or in the middle of a watch, slow watch lines.

Every scenario polls repeatedly (each poll a fresh process, as each Lambda invocation is) while
Events are added and recur between polls, some polls failing part-way; after every poll the
checkpoint is never past what the raw landing holds; after the faults stop and one clean poll, the
checkpoint is at the head and every (uid, resourceVersion) the server ever had is in the landing,
or lost only where a coverage-gap record says versions were superseded. The seed of each
scenario is in every assertion's message."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pytest

from auditlake.events.api import KubeError
from auditlake.events.poller import GAP_API, GONE_REWATCHES, PollStats
from auditlake.jsonio import loads
from auditlake.landing import decode_lines
from auditlake.local_lake import LocalLake
from auditlake.stores.local import LocalStore
from auditlake.timestamps import format_utc
from tests.fakes.kube import KUBE_KINDS, FakeKube, KubeFaults
from tests.helpers import archived_events, corpus_kube_events, raw_keys_of
from tests.integration.test_poller import CLUSTER, Clock, make_poller

if TYPE_CHECKING:
    from _typeshed import SupportsLenAndGetItem

T = TypeVar("T")
BASELINE = 30  # Events the cluster has when the poller first lists it
RATE = 0.3  # per request, and per watch line for the kinds that cut or slow a stream
POLLS = 6


def landed(lake: Path) -> tuple[set[tuple[str, str]], int]:
    """The (uid, resource_version) in the raw landing, and how many coverage-gap records."""
    store = LocalStore(lake)
    keys: set[tuple[str, str]] = set()
    gaps = 0
    for key in raw_keys_of(store, "events", CLUSTER):
        for line in decode_lines(store.get(key)):
            row = loads(line)
            if row["api"] == GAP_API:
                gaps += 1
            else:
                keys.add((row["uid"], row["resource_version"]))
    return keys, gaps


def checkpoint(lake: Path) -> int:
    record = loads((LocalLake(lake).poller_dir / f"{CLUSTER}.json").read_bytes())
    return int(record["checkpoint"]["resource_version"])


def unexplained(fake: FakeKube, got: set[tuple[str, str]], gaps: int, upto: int) -> list[tuple[str, str]]:
    """Versions up to ``upto`` not landed, except those a coverage gap covers: a later version of
    the same Event was landed (a relist after 410 sees only the latest) and a gap record says so."""
    latest: dict[str, int] = {}
    for uid, version in got:
        latest[uid] = max(latest.get(uid, 0), int(version))
    missing = sorted((key for key in fake.versions() - got if int(key[1]) <= upto), key=lambda k: int(k[1]))
    return [(uid, version) for uid, version in missing if not (gaps and latest.get(uid, 0) > int(version))]


class Cluster:
    """The fake API server with a history that grows between polls, a lake, and the poll runs."""

    def __init__(self, fake: FakeKube, lake: Path, seed: int) -> None:
        self.fake, self.lake, self.seed, self.clock = fake, lake, seed, Clock()
        self.rnd = random.Random(seed)
        self.corpus = corpus_kube_events()
        self.added = 0
        self.pauses: list[float] = []  # the poller's pauses before sending a request again
        self.outcomes: list[str] = []
        fake.linger = 0.05  # a quiet watch ends at once: each poll is short
        for _ in range(BASELINE):
            self.add()
        stats = self.poll(keep_watching=False)
        assert stats.resource_version == str(fake.version), f"seed {seed}: the first list"

    def add(self) -> None:
        template = self.corpus[self.added % len(self.corpus)]
        metadata = {**template["metadata"], "uid": f"e-{self.added}", "name": f"e-{self.added}"}
        self.fake.add({**template, "metadata": metadata})
        self.added += 1

    def change(self) -> None:
        """New Events, and recurrences (some Events twice: a relist would see only the later one)."""
        for _ in range(self.rnd.randint(1, 4)):
            self.add()
        for uid in self.rnd.sample([f"e-{n}" for n in range(self.added)], 6):
            for _ in range(self.rnd.choice((1, 1, 2))):
                self.fake.recur(uid)

    def poll(self, *, keep_watching: bool, budget: float = 30.0) -> PollStats:
        """One poll, a fresh process; ``budget`` is wall time only to a poll that keeps watching (one
        without ends after its first complete list or watch), and a pause is never waited."""
        poller = make_poller(self.fake, self.lake, self.clock, page_limit=7, sleep=self.pauses.append)
        return poller.poll(budget, keep_watching=keep_watching)

    def run(self, faults: KubeFaults, polls: int, *, keep_watching: bool, budget: float = 30.0) -> list[PollStats]:
        """``polls`` polls under ``faults``; after each, the checkpoint is never past the landing."""
        done: list[PollStats] = []
        for n in range(polls):
            self.change()
            self.fake.faults = faults
            try:
                stats = self.poll(keep_watching=keep_watching, budget=budget)
                done.append(stats)
                self.outcomes.append(f"ok retries={stats.retries} relists={stats.relists} gaps={stats.gaps}")
            except KubeError as exc:
                self.outcomes.append(f"failed: {exc}")
            finally:
                self.fake.faults = None
            self.clock.advance(minutes=1)  # the next poll is a new invocation, its lease free
            got, gaps = landed(self.lake)
            at = checkpoint(self.lake)
            assert unexplained(self.fake, got, gaps, at) == [], (
                f"seed {self.seed}, poll {n}: checkpoint {at} is past versions not landed; {self.outcomes}"
            )
        return done

    def settle(self) -> None:
        """Faults off, one clean poll: the checkpoint at the head, every version landed or explained."""
        stats = self.poll(keep_watching=False)
        context = f"seed {self.seed}; polls: {self.outcomes}"
        assert stats.resource_version == str(self.fake.version), context
        got, gaps = landed(self.lake)
        assert unexplained(self.fake, got, gaps, self.fake.version) == [], context
        rows = [r for r in archived_events(self.lake) if r["api"] != GAP_API]
        archived = Counter((r["uid"], r["resource_version"]) for r in rows)
        assert max(archived.values()) == 1, context  # landed twice after a retry, archived once
        assert set(archived) == got, context
        # A cut stream's partial line is never read as an Event (nor quarantined as an odd one).
        assert list(LocalStore(self.lake).list("quarantine/")) == [], context


@pytest.mark.parametrize("kind", KUBE_KINDS)
def test_each_fault_kind_loses_nothing_and_never_checkpoints_ahead(fake_kube: FakeKube, tmp_path: Path,
                                                                   kind: str) -> None:  # fmt: skip
    seed = 1604 + KUBE_KINDS.index(kind)
    cluster = Cluster(fake_kube, tmp_path, seed)
    faults = KubeFaults(random.Random(seed), RATE, kinds=(kind,))
    done = cluster.run(faults, POLLS, keep_watching=False)
    cluster.settle()
    context = f"seed {seed}: {faults.log}; polls: {cluster.outcomes}"
    assert faults.counts()[kind] > 0, context  # the fault happened
    if kind in ("500", "reset-mid-watch"):  # retried within the poll: none ended with the error
        assert len(done) == POLLS and sum(s.retries for s in done) > 0, context
    if kind == "410":  # a watch's 410 is watched once more; a list's expired token, listed again
        assert sum(s.relists for s in done) <= faults.counts()["410"], context


def test_a_mix_of_faults_over_several_long_polls(fake_kube: FakeKube, tmp_path: Path) -> None:
    seed = 16_001
    cluster = Cluster(fake_kube, tmp_path, seed)
    faults = KubeFaults(random.Random(seed), RATE)
    # The deployed poll: watch after watch until its budget (7.5 s, of which 5 s are kept to flush
    # and release, and a watch needs 2 s: about half a second of watches, dozens of them, each poll).
    cluster.run(faults, 4, keep_watching=True, budget=7.5)
    cluster.settle()
    assert len(set(faults.log)) >= 4, f"seed {seed}: {faults.counts()}"


class Scripted(random.Random):
    """Fault draws that fail exactly at the given positions (0-based), whatever the rate; the kind
    is the first that applies, and a cut stream writes none of its line."""

    def __init__(self, failing: set[int]) -> None:
        super().__init__(0)
        self.failing, self.draws = failing, 0

    def random(self) -> float:
        self.draws += 1
        return 0.0 if self.draws - 1 in self.failing else 1.0

    def choice(self, seq: SupportsLenAndGetItem[T]) -> T:
        return seq[0]

    def uniform(self, a: float, b: float) -> float:
        return a


def scripted(fake: FakeKube, tmp_path: Path, kind: str, failing: set[int]) -> tuple[Cluster, KubeFaults]:
    cluster = Cluster(fake, tmp_path, 0)
    uid = "e-3"
    fake.recur(uid)
    fake.recur(uid)  # two versions after the checkpoint: a list would show only the second
    cluster.add()
    return cluster, KubeFaults(Scripted(failing), 1.0, kinds=(kind,))


def test_a_spurious_410_on_a_watch_is_watched_again_not_relisted(fake_kube: FakeKube, tmp_path: Path) -> None:
    """A 410 from one API server's watch cache (just restarted, KEP-1904) while the version is
    still served: a relist would have lost the first recurrence (and recorded a gap)."""
    cluster, faults = scripted(fake_kube, tmp_path, "410", set(range(GONE_REWATCHES)))  # then served
    fake_kube.faults = faults
    stats = cluster.poll(keep_watching=False)
    assert (stats.relists, stats.gaps, stats.emitted, faults.log) == (0, 0, 3, ["410"] * GONE_REWATCHES)
    watches = [q["resourceVersion"] for _, q in fake_kube.requests if q.get("watch")]
    assert watches[-1 - GONE_REWATCHES :] == [str(fake_kube.version - 3)] * (1 + GONE_REWATCHES)  # one version
    got, gaps = landed(tmp_path)
    assert got == fake_kube.versions() and gaps == 0


def test_a_410_that_persists_relists_and_records_the_gap(fake_kube: FakeKube, tmp_path: Path) -> None:
    watches = 1 + GONE_REWATCHES
    cluster, faults = scripted(fake_kube, tmp_path, "410", set(range(watches)))  # gone on every server
    fake_kube.faults = faults
    stats = cluster.poll(keep_watching=False)
    assert (stats.relists, stats.gaps, faults.log) == (1, 1, ["410"] * watches)
    got, gaps = landed(tmp_path)
    first_recurrence = ("e-3", str(fake_kube.version - 2))
    assert fake_kube.versions() - got == {first_recurrence} and gaps == 1


def test_a_500_is_retried_within_the_poll(fake_kube: FakeKube, tmp_path: Path) -> None:
    cluster, faults = scripted(fake_kube, tmp_path, "500", {0, 1})  # the first two watches: 500
    fake_kube.faults = faults
    stats = cluster.poll(keep_watching=False)
    assert (stats.retries, stats.emitted, stats.resource_version) == (2, 3, str(fake_kube.version))
    assert cluster.pauses == [0.5, 1.0]  # a doubling pause
    assert landed(tmp_path)[0] == fake_kube.versions()


def test_a_cut_watch_resumes_from_the_last_version_it_delivered(fake_kube: FakeKube, tmp_path: Path) -> None:
    cluster = Cluster(fake_kube, tmp_path, 0)
    start = fake_kube.version
    for _ in range(5):
        cluster.add()
    # Draws: one per watch line; the third line's cuts the stream (none of that line written).
    fake_kube.faults = KubeFaults(Scripted({2}), 1.0, kinds=("reset-mid-watch",))
    stats = cluster.poll(keep_watching=False)
    assert (stats.retries, stats.resource_version) == (1, str(fake_kube.version))
    watches = [q["resourceVersion"] for _, q in fake_kube.requests if q.get("watch")]
    assert watches[-2:] == [str(start), str(start + 2)]  # two lines landed, then resumed after them
    assert landed(tmp_path)[0] == fake_kube.versions()


def test_a_fault_that_never_stops_ends_the_poll_with_the_error(fake_kube: FakeKube, tmp_path: Path) -> None:
    cluster = Cluster(fake_kube, tmp_path, 0)
    before = checkpoint(tmp_path)
    cluster.add()
    fake_kube.faults = KubeFaults(random.Random(0), 1.0, kinds=("500",))
    with pytest.raises(KubeError, match="HTTP 500") as failed:
        cluster.poll(keep_watching=True, budget=60)
    assert failed.value.transient and len(cluster.pauses) == 8  # MAX_TRANSIENT_FAILURES, then give up
    assert checkpoint(tmp_path) == before  # nothing read, nothing claimed


def gap_records(lake: Path) -> list[dict[str, str]]:
    store = LocalStore(lake)
    rows = (loads(line) for key in raw_keys_of(store, "events", CLUSTER) for line in decode_lines(store.get(key)))
    return [row for row in rows if row["api"] == GAP_API]


def test_a_relist_past_the_event_history_records_the_superseded_versions_until_the_list(
    fake_kube: FakeKube, tmp_path: Path
) -> None:
    """The chaos model's case (issue 16): the poller away 77 minutes (the API server keeps Events
    1 h), an Event recurring twice in the last hour, its version gone. The relist lands its latest
    version only; the gap record must span until the list, where the lost version is, not only until
    the history's horizon (it ended there, and the lost version was explained by nothing)."""
    cluster = Cluster(fake_kube, tmp_path, 0)
    synced = cluster.clock.now
    cluster.clock.advance(minutes=77)
    fake_kube.recur("e-3")
    fake_kube.recur("e-3")
    fake_kube.compact()  # the checkpoint's version is gone on every API server
    cluster.add()  # (the fake's list snapshot must be after its compaction)
    stats = cluster.poll(keep_watching=False)
    assert (stats.relists, stats.gaps) == (1, 1)
    got, _ = landed(tmp_path)
    assert fake_kube.versions() - got == {("e-3", str(fake_kube.version - 2))}  # the first recurrence
    [gap] = gap_records(tmp_path)
    assert (gap["first_timestamp"], gap["last_timestamp"]) == (format_utc(synced), format_utc(cluster.clock.now))
    assert "older than the API server's event history" in gap["note"] and "1 Events changed" in gap["note"]
