"""The deployed pipeline under faults, checked against a model (Hypothesis stateful testing).

``ChaosMachine`` drives one ``World`` (tests/chaos/world.py) with rules that each draw their own
faults (``st.randoms(use_true_random=False)``: Hypothesis shrinks and replays them): webhook batches
sent as kube-apiserver sends them (the same body up to 5 times, 10 s x 1.5^n apart), CloudWatch
deliveries with Lambda's async retries (3 attempts, then the failure queue, redriven later), Events
poller runs against the fake API server (AWS and Kubernetes faults, kills, short invocations), S3
notifications through SQS to the compactor (duplicated, redelivered, failed messages delivered again),
the hourly schedule (retried twice by Lambda), digests, tampering, and the clock moving.

What it holds the pipeline to:
- after every step: nothing archived was never sent; no key is archived twice; bad items are in
  quarantine and never in the archive; an acknowledged event was in the raw landing when it was
  acknowledged (``acknowledged_without_store`` otherwise);
- at the end of each example (faults off, everything redriven, caught up, compacted, sealed): every
  acknowledged event archived exactly once by its key (audit: (cluster, audit_id, stage); Events:
  (cluster, uid, resource_version), every version the fake cluster ever had); every quarantined item
  one the model sent malformed; every 403 burst paged at least once, more than once only when a publish
  may have happened unconfirmed (its answer lost, or the claim's confirmation lost or killed);
  ``verify`` passes (and failed on each tampering).

``run(seed, minutes=..., examples=..., steps=...)`` runs rounds of examples (each round seeded
``seed + round`` through Hypothesis' global seed; no database, no deadline) and returns ``Stats``;
an invariant that fails raises after Hypothesis has shrunk it (it prints the steps: the reproduction).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import itertools
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import hypothesis
import hypothesis.core
import trustme
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.internal.conjecture import engine as hypothesis_engine
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from auditlake.events.poller import GAP_API
from auditlake.timestamps import format_utc
from tests.chaos.aws_faults import Killed
from tests.chaos.world import EKS, HOOK, KUBE, World
from tests.fakes.kube import KubeFaults
from tests.helpers import (
    awslogs_event,
    corpus_kube_events,
    eventlist_body,
    fixture,
    forbidden_events,
    scheduled_event,
    sqs_event,
    subscription_document,
)

RATES = (0.0, 0.05, 0.3, 1.0)
STAGES = ("RequestReceived", "ResponseStarted", "ResponseComplete", "Panic")
ALERT_THRESHOLD = 10
PHASES = (Phase.explicit, Phase.generate, Phase.shrink)
ROUND = 5  # examples per Hypothesis run


@dataclass
class Stats:
    seed: int = 0
    steps: int = 0
    events_sent: int = 0
    events_acknowledged: int = 0
    events_archived: int = 0
    lost: int = 0
    duplicates: int = 0
    acknowledged_without_store: int = 0
    faults_injected: int = 0
    kills: int = 0
    verify_ok: bool = True
    examples: int = 0

    def line(self) -> dict[str, Any]:
        """The JSON line bench/chaos.py prints (issue 16's keys, in order)."""
        out = asdict(self)
        out.pop("examples")
        return out


class _Run:
    """What ``run`` shares with the machines it makes (Hypothesis builds them itself)."""

    stats = Stats()
    ca: Any = None
    deadline: float | None = None  # time.perf_counter() when the run must end (time-machine moves monotonic())
    failing = False  # an example of the current Hypothesis run failed: it is shrunk and replayed, not cut

    @classmethod
    def failed(cls) -> None:
        """An example failed: Hypothesis shrinks it next, for at most ``MAX_SHRINKING_SECONDS`` from
        when it starts (now), so that is the time left (the bound is checked after each attempt)."""
        if not cls.failing and cls.deadline is not None:
            hypothesis_engine.MAX_SHRINKING_SECONDS = max(0, int(cls.deadline - time.perf_counter()))
        cls.failing = True


class OutOfTime(BaseException):
    """The run's time is up: the example in progress is abandoned. Not an ``Exception``: Hypothesis
    lets it through at once (no shrinking, no replay), where it would shrink a failure."""


def bounded(function: Callable[..., None]) -> Callable[..., None]:
    """A rule under the run's time bound: past the deadline it abandons the example (``OutOfTime``),
    unless a failure of this Hypothesis run is being shrunk or replayed (``MAX_SHRINKING_SECONDS``
    bounds that; cutting it would lose the failing steps)."""

    @functools.wraps(function)
    def step(self: BoundedMachine, **kwargs: Any) -> None:
        if _Run.deadline is not None and not _Run.failing and time.perf_counter() >= _Run.deadline:
            self.abandoned = True
            raise OutOfTime
        self.step_done = False  # until the invariants after it pass
        function(self, **kwargs)

    return step


class BoundedMachine(RuleBasedStateMachine):
    """A state machine the run's time bound can stop between steps. Its rules are ``@bounded``; its
    invariants end with ``self.step_done = True``; its ``teardown`` calls ``end_of_example``."""

    def __init__(self) -> None:
        super().__init__()
        self.step_done = True  # the last step (its rule and the invariants after it) did not raise
        self.abandoned = False
        self.stats = _Run.stats
        self._stats_before = dataclasses.replace(self.stats)
        self.stats.examples += 1

    def end_of_example(self) -> str:
        """How the example ended: "abandoned" (time ran out, or Hypothesis stopped it: an example that
        outgrew its choice budget ends with its ``StopTest``, a BaseException like ``OutOfTime``; its
        partial figures are taken back out of the run's), "failed" (a step raised an Exception:
        Hypothesis shrinks and replays it, so the time bound holds off until that is done), or
        "complete" (the end-of-example checks are due)."""
        stopped = sys.exc_info()[1]  # teardown runs in the runner's `finally:`, during the exception
        if self.abandoned or (stopped is not None and not isinstance(stopped, Exception)):
            for name, value in vars(self._stats_before).items():
                setattr(self.stats, name, value)
            return "abandoned"
        if not self.step_done:
            _Run.failed()
            return "failed"
        return "complete"


@dataclass
class Faults:
    rnd: random.Random
    rate: float
    kill_at: int | None
    kill_applied: bool
    kube_rate: float


def faults_strategy(kill: bool = True) -> st.SearchStrategy[Faults]:
    return st.builds(
        Faults,
        st.randoms(use_true_random=False),
        st.sampled_from(RATES),
        st.one_of(st.none(), st.integers(1, 12)) if kill else st.none(),
        st.booleans(),
        st.sampled_from((0.0, 0.0, 0.05, 0.3)),
    )


def audit_event(audit_id: str, stage: str, at: str, user: str = "alice@example.com") -> dict[str, Any]:
    event = fixture("forbidden_secret_get.json")
    event.update(auditID=audit_id, stage=stage, requestReceivedTimestamp=at, stageTimestamp=at)
    event["user"]["username"] = user
    event["responseStatus"] = {"metadata": {}, "code": 200}
    event["annotations"] = {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": ""}
    return event


T = TypeVar("T")
Gap = tuple[datetime, datetime]  # a coverage-gap record's first_timestamp, last_timestamp (UTC, naive)


def pick(data: st.DataObject, among: Sequence[T], label: str) -> T:
    """One of ``among``, drawn the same way whatever its length: what the model observed (the objects
    listed, the files written) depends on thread timing under faults, and a draw shaped by it would make
    Hypothesis' replay of a failure diverge (FlakyStrategyDefinition)."""
    return among[data.draw(st.integers(0, 1 << 16), label=label) % len(among)]


class ChaosMachine(BoundedMachine):
    def __init__(self) -> None:
        super().__init__()
        self.world = World(_Run.ca)
        self.sent: set[tuple[str, str, str]] = set()  # audit keys ever sent (acknowledged or not)
        self.acked: set[tuple[str, str, str]] = set()
        self.bad: set[str] = set()  # auditIDs of malformed items sent
        self.bursts: dict[str, bool] = {}  # identity -> its batch was acknowledged
        self.failed_deliveries: list[tuple[dict[str, Any], set[tuple[str, str, str]]]] = []
        self.notified: dict[str, str] = {}  # raw key -> ETag already turned into a notification
        self.pending: list[str] = []  # raw keys whose notification SQS still holds
        self.raw_cache: dict[tuple[str, str], set[tuple[str, str, str]]] = {}
        self.archive_cache: dict[tuple[str, str, str], tuple[list[tuple[str, ...]], list[Gap]]] = {}
        self.kube_uids: list[str] = []
        self.version_at: dict[str, datetime] = {}  # resourceVersion -> when the fake cluster made it (UTC, naive)
        self.gaps: list[Gap] = []  # coverage-gap records archived
        self.templates = corpus_kube_events()
        self.counter = 0
        self.all_pages: list[dict[str, Any]] = []

    # ---------------------------------------------------------------- helpers

    def _versioned(self, version: int) -> None:
        self.version_at[str(version)] = self.world.now().astimezone(UTC).replace(tzinfo=None)

    def _id(self) -> str:
        self.counter += 1
        return f"00000000-0000-4000-8000-{self.counter:012d}"

    def _step(self, f: Faults, *, kill: bool = True, services: frozenset[str] | None = None) -> Any:
        return self.world.faults.step(
            f.rnd, rate=f.rate, kill_at=f.kill_at if kill else None, kill_applied=f.kill_applied, services=services
        )

    def _invoke(self, name: str, event: dict[str, Any], f: Faults | None, *, remaining_ms: int = 60_000) -> None:
        """One invocation under ``f``'s faults: a kill is counted, a failure is what faults may cause;
        with no faults (``f`` None, the end of an example) it must succeed."""
        try:
            if f is None:
                self.world.invoke(name, event, remaining_ms=remaining_ms)
            else:
                with self._step(f):
                    self.world.invoke(name, event, remaining_ms=remaining_ms)
        except Killed:
            self.stats.kills += 1
        except Exception:
            if f is None:
                raise

    def _raw_audit_keys(self) -> set[tuple[str, str, str]]:
        """Every audit key in the raw landing (objects read once per ETag)."""
        out: set[tuple[str, str, str]] = set()
        for key, etag in self.world.keys(self.world.raw, "raw/audit/").items():
            cached = self.raw_cache.get((key, etag))
            if cached is None:
                rows = self.world.raw_rows(key)
                cached = self.raw_cache[(key, etag)] = {(r["cluster"], r["audit_id"], r["stage"]) for r in rows}
            out |= cached
        return out

    def _archived(self, kind: str) -> Counter[tuple[str, ...]]:
        """The archive's keys and how often each is there; for Events also ``self.gaps``, the
        coverage-gap records (they share the archive, told apart by ``api``)."""
        columns = {
            "audit": ["cluster", "audit_id", "stage"],
            "events": ["cluster", "uid", "resource_version", "api", "first_timestamp", "last_timestamp"],
        }
        counts: Counter[tuple[str, ...]] = Counter()
        gaps: list[Gap] = []
        for key, etag in self.world.keys(self.world.archives[kind], f"{kind}/").items():
            if not key.endswith(".parquet"):
                continue
            cached = self.archive_cache.get((kind, key, etag))
            if cached is None:
                rows = self.world.parquet_rows(kind, key, columns[kind])
                found = [(r["first_timestamp"], r["last_timestamp"]) for r in rows if r.get("api") == GAP_API]
                rows = [r for r in rows if r.get("api") != GAP_API]
                cached = self.archive_cache[(kind, key, etag)] = ([tuple(str(r[c]) for c in columns[kind][:3])
                                                                   for r in rows], found)  # fmt: skip
            counts.update(cached[0])
            gaps += cached[1]
        if kind == "events":
            self.gaps = gaps
        return counts

    def _count_faults(self, before: int) -> None:
        self.stats.faults_injected += len(self.world.faults.log) - before

    # ---------------------------------------------------------------- rules

    @initialize()
    @bounded
    def cold_starts(self) -> None:
        for name in ("webhook", "cloudwatch", "events_poller", "compactor", "digest"):
            self.world.cold_start(name)
        # The poller's first list is where its coverage starts (a list sees each Event's current
        # version only): made before the cluster has any Event, so every version after it is owed.
        # Polls get 12.5 s: a budget of 7.5 s, watching ~1 s (PollerFleet.handle); deployed, 60 s.
        self._poll(None, remaining_ms=12_500)

    @rule(data=st.data(), count=st.integers(1, 30), bad=st.integers(0, 3), burst=st.booleans(), f=faults_strategy())
    @bounded
    def webhook_batch(self, data: st.DataObject, count: int, bad: int, burst: bool, f: Faults) -> None:
        now = format_utc(self.world.now() - timedelta(seconds=2))
        items: list[dict[str, Any]] = []
        keys: set[tuple[str, str, str]] = set()
        while len(items) < count:
            audit_id = self._id()
            for stage in STAGES[: data.draw(st.integers(1, 3), label="stages")]:
                items.append(audit_event(audit_id, stage, now))
                keys.add((HOOK, audit_id, stage))
        for _ in range(bad):  # no timestamp: the item is quarantined, the rest of the batch lands
            item = audit_event(f"bad-{self._id()}", "ResponseComplete", now)
            for name in ("requestReceivedTimestamp", "stageTimestamp"):
                item.pop(name)
            self.bad.add(item["auditID"])
            items.append(item)
        identity = None
        if burst:  # >= the threshold of 403s from one identity, within one minute of event time
            identity = f"mallory-{self._id()[:8]}@example.com"
            start = self.world.now().replace(second=0, microsecond=0)
            for event in forbidden_events(ALERT_THRESHOLD + data.draw(st.integers(0, 5)), start=start, every=0.0,
                                          user=identity, first=self.counter * 100):  # fmt: skip
                event["auditID"] = self._id()
                items.append(event)
                keys.add((HOOK, event["auditID"], event["stage"]))
            self.bursts.setdefault(identity, False)
        items = data.draw(st.permutations(items), label="order")
        body = eventlist_body(items)
        self.sent |= keys
        self.stats.events_sent += len(keys)
        request = copy.deepcopy(fixture("http_api_post.json"))
        request["headers"]["authorization"] = f"Bearer {self.world.token}"
        request["body"] = body.decode()
        for attempt in range(5):
            before = len(self.world.faults.log)
            status = 500
            try:
                with self._step(f, kill=attempt == 0):
                    reply = self.world.invoke("webhook", request)
                status = reply["statusCode"]
            except Killed:
                self.stats.kills += 1  # API Gateway answers 502: the sender retries
            except Exception:
                # An invocation that raised: API Gateway answers 500 and the sender retries. The webhook
                # means to answer 503 itself (registry or landing unavailable); a transport error of
                # the token lookup escaped it (make chaos seed 2; registry.cluster_for catches
                # ClientError only): a 5xx either way, nothing lost.
                pass
            self._count_faults(before)
            if 200 <= status < 300:
                landed = self._raw_audit_keys()
                missing = keys - landed
                self.stats.acknowledged_without_store += len(missing)
                assert not missing, f"acknowledged without store: {sorted(missing)[:5]}"
                new = keys - self.acked
                self.acked |= keys
                self.stats.events_acknowledged += len(new)
                if identity:
                    self.bursts[identity] = True
                return
            assert status >= 500 or status == 429, f"webhook answered {status} to a valid batch: {reply}"
            self.world.advance(10 * 1.5**attempt)

    @rule(data=st.data(), count=st.integers(1, 20), f=faults_strategy())
    @bounded
    def cloudwatch_delivery(self, data: st.DataObject, count: int, f: Faults) -> None:
        now = format_utc(self.world.now() - timedelta(seconds=2))
        events, keys = [], set()
        for _ in range(count):
            event = audit_event(self._id(), data.draw(st.sampled_from(STAGES), label="stage"), now)
            event["kind"], event["apiVersion"] = "Event", "audit.k8s.io/v1"
            events.append(event)
            keys.add((EKS, event["auditID"], event["stage"]))
        import json

        messages = [json.dumps(e, separators=(",", ":")) for e in events]
        document = subscription_document(messages, log_group=f"/aws/eks/{EKS}/cluster", first_id=self.counter * 100)
        self.sent |= keys
        self.stats.events_sent += len(keys)
        self._deliver(awslogs_event(document), keys, f)

    def _deliver(self, event: dict[str, Any], keys: set[tuple[str, str, str]], f: Faults) -> bool:
        """Lambda's asynchronous invocation: up to 3 attempts, 1 then 2 minutes apart; then the failure queue."""
        for attempt in range(3):
            before = len(self.world.faults.log)
            try:
                with self._step(f, kill=attempt == 0):
                    self.world.invoke("cloudwatch", event)
            except Killed:
                self.stats.kills += 1
            except Exception:
                pass
            else:
                self._count_faults(before)
                landed = self._raw_audit_keys()
                missing = keys - landed
                self.stats.acknowledged_without_store += len(missing)
                assert not missing, f"delivery succeeded without store: {sorted(missing)[:5]}"
                self.stats.events_acknowledged += len(keys - self.acked)
                self.acked |= keys
                return True
            self._count_faults(before)
            self.world.advance(60 * (attempt + 1))
        self.failed_deliveries.append((event, keys))
        return False

    @rule(f=faults_strategy())
    @bounded
    def redrive(self, f: Faults) -> None:
        """An operator redrives the failure queue (one delivery of each, with this step's faults)."""
        waiting, self.failed_deliveries = self.failed_deliveries, []
        for event, keys in waiting:
            self._deliver(event, keys, f)

    @rule(data=st.data(), new=st.integers(0, 5), recur=st.integers(0, 5), f=faults_strategy(),
          short=st.booleans())  # fmt: skip
    @bounded
    def poll(self, data: st.DataObject, new: int, recur: int, f: Faults, short: bool) -> None:
        for _ in range(new):
            self.add_event(data.draw(st.integers(0, len(self.templates) - 1), label="event"))
        for _ in range(recur if self.kube_uids else 0):
            self.recur(pick(data, self.kube_uids, "recur"))
        self._poll(f, remaining_ms=11_000 if short else 12_500)

    def add_event(self, template: int) -> str:
        """A new Event in the fake cluster, made from the corpus' ``template``-th; returns its uid."""
        now = format_utc(self.world.now())
        event = copy.deepcopy(self.templates[template])
        uid = event["metadata"]["uid"] = self._id()
        event["metadata"]["name"] = f"chaos.{uid}"
        for name in ("firstTimestamp", "lastTimestamp", "eventTime"):
            if event.get(name):
                event[name] = now
        self._versioned(self.world.kube.add(event))
        self.kube_uids.append(uid)
        return uid

    def recur(self, uid: str) -> None:
        """The Event happened again: a new version. ``at`` is a core/v1 Time (seconds), as the fake's
        recur() expects: it makes series.lastObservedTime (a MicroTime) by appending ".000000", and a
        fraction already there made the Event invalid (make chaos seeds 1 and 2: the poller rightly
        quarantined that version, and the model owed it)."""
        self._versioned(self.world.kube.recur(uid, at=f"{format_utc(self.world.now())[:19]}Z"))

    def _poll(self, f: Faults | None, remaining_ms: int) -> None:
        before = len(self.world.faults.log)
        kube_faults = None
        if f is not None and f.kube_rate:
            kube_faults = KubeFaults(f.rnd, f.kube_rate)
            self.world.kube.faults = kube_faults
        try:
            self._invoke("events_poller", {"cluster": KUBE}, f, remaining_ms=remaining_ms)
        finally:
            self.world.kube.faults = None
            if kube_faults is not None:
                self.stats.faults_injected += len(kube_faults.log)
            self._count_faults(before)

    @rule(data=st.data(), f=faults_strategy())
    @bounded
    def notifications(self, data: st.DataObject, f: Faults) -> None:
        self._collect_notifications()
        if not self.pending:
            return
        size = min(data.draw(st.integers(1, 10), label="batch"), len(self.pending))
        batch, self.pending = self.pending[:size], self.pending[size:]
        if data.draw(st.booleans(), label="duplicate"):  # S3 notifies twice
            batch = [*batch, pick(data, batch, "twice")]
        self._compact_batch(batch, f)

    def _collect_notifications(self) -> None:
        for key, etag in self.world.keys(self.world.raw, "raw/").items():
            if self.notified.get(key) != etag:
                self.notified[key] = etag
                self.pending.append(key)

    def _compact_batch(self, batch: list[str], f: Faults | None) -> None:
        event = sqs_event(self.world.raw, batch)
        before = len(self.world.faults.log)
        try:
            if f is None:
                answer = self.world.invoke("compactor", event)
            else:
                with self._step(f):
                    answer = self.world.invoke("compactor", event)
        except Killed:
            self.stats.kills += 1
            self.pending += batch  # not deleted: SQS delivers it again after the visibility timeout
        except Exception:
            if f is None:
                raise
            self.pending += batch
        else:
            failed = {item["itemIdentifier"] for item in answer["batchItemFailures"]}
            self.pending += [key for number, key in enumerate(batch) if f"m{number}" in failed]
        finally:
            self._count_faults(before)

    @rule(f=faults_strategy())
    @bounded
    def hourly(self, f: Faults) -> None:
        self._hourly(f)

    def _hourly(self, f: Faults | None) -> bool:
        for attempt in range(3):  # a failed scheduled run: Lambda retries it twice
            before = len(self.world.faults.log)
            try:
                if f is None:
                    self.world.invoke("compactor", scheduled_event(self.world.now()))
                else:
                    with self._step(f, kill=attempt == 0):
                        self.world.invoke("compactor", scheduled_event(self.world.now()))
                return True
            except Killed:
                self.stats.kills += 1
            except Exception:
                if f is None and attempt == 2:
                    raise
            finally:
                self._count_faults(before)
            self.world.advance(60 * (attempt + 1))
        return False

    @rule(f=faults_strategy())
    @bounded
    def digest(self, f: Faults) -> None:
        self._digest(f)

    def _digest(self, f: Faults | None) -> None:
        before = len(self.world.faults.log)
        try:
            self._invoke("digest", scheduled_event(self.world.now()), f)
        finally:
            self._count_faults(before)

    @rule(minutes=st.integers(1, 90))
    @bounded
    def tick(self, minutes: int) -> None:
        self.world.advance(minutes * 60)

    @rule(data=st.data(), delete=st.booleans())
    @bounded
    def tamper(self, data: st.DataObject, delete: bool) -> None:
        """An attacker with write access changes one sealed file: verify must fail; restored, pass."""
        if not self.world.verify().ok:
            return  # nothing sealed yet, or not a clean state to judge from
        bucket = self.world.archives["audit"]
        files = sorted(k for k in self.world.keys(bucket, "audit/") if k.endswith(".parquet"))
        if not files:
            return
        key = pick(data, files, "file")
        original = self.world.get(bucket, key)
        if delete:  # a delete marker
            undo = self.world.s3.delete_object(Bucket=bucket, Key=key)["VersionId"]
        else:
            undo = self.world.s3.put_object(Bucket=bucket, Key=key, Body=original + b"x")["VersionId"]
        caught = not self.world.verify().ok
        # Restored as the bucket's versioning allows: the version (or marker) added is removed, and the
        # sealed version is current again, with its own date. Putting the bytes back would date the file
        # after its digest's window, which verify rightly reports as rewritten (make chaos seed 5).
        self.world.s3.delete_object(Bucket=bucket, Key=key, VersionId=undo)
        restored = self.world.verify()
        assert caught, f"verify passed with {key} {'deleted' if delete else 'overwritten'}"
        assert restored.ok, f"verify fails after {key} was restored: {restored.findings}"

    # ---------------------------------------------------------------- invariants

    @invariant()
    def archive_is_honest(self) -> None:
        self.stats.steps += 1
        audit = self._archived("audit")
        twice = [key for key, n in audit.items() if n > 1]
        assert not twice, f"archived twice: {twice[:5]}"
        never_sent = [key for key in audit if key not in self.sent]
        bad = [key for key in never_sent if key[1] in self.bad]
        assert not bad, f"malformed items archived: {bad[:5]}"
        assert not never_sent, f"archived but never sent: {never_sent[:5]}"
        events = self._archived("events")
        twice = [key for key, n in events.items() if n > 1]
        assert not twice, f"Events archived twice: {twice[:5]}"
        had = {(KUBE, uid, rv) for uid, rv in self.world.kube.versions()}
        never = [key for key in events if key not in had]
        assert not never, f"Events archived the cluster never had: {never[:5]}"
        self.step_done = True

    # ---------------------------------------------------------------- the end

    def teardown(self) -> None:
        try:
            if self.end_of_example() == "complete":
                try:
                    self._settle_and_check()
                except BaseException:
                    _Run.failed()
                    raise
        finally:
            self.world.close()

    def _settle_and_check(self) -> None:
        world = self.world
        for event, keys in self.failed_deliveries:  # redrive, no faults
            assert self._deliver_clean(event, keys), "a redriven delivery failed without faults"
        self.failed_deliveries = []
        for _ in range(6):  # poll until caught up (a minute apart, as scheduled: a killed poll's lease lapses)
            world.advance(60)
            self._poll(None, remaining_ms=12_500)
            if self._events_landed() >= self._latest_versions():  # a relist lands at least these
                break
        world.advance(3 * 3600)  # past every grace and lease
        for _ in range(6):
            self._collect_notifications()
            while self.pending:
                batch, self.pending = self.pending[:10], self.pending[10:]
                self._compact_batch(batch, None)
            self._hourly(None)
            self._collect_notifications()
            if not self.pending:
                break
            world.advance(900)
        world.advance(3600)
        self._digest(None)
        audit = self._archived("audit")
        events = self._archived("events")
        lost = [key for key in self.acked if audit[key] == 0]
        versions = {(KUBE, uid, rv) for uid, rv in world.kube.versions()}
        had = versions - self._explained_by_gaps(events)
        lost_events = [key for key in had if events[key] == 0]
        duplicates = sum(n - 1 for n in audit.values() if n > 1) + sum(n - 1 for n in events.values() if n > 1)
        self.stats.events_archived += sum(1 for key in audit if key in self.acked) + len(set(events) & had)
        self.stats.lost += len(lost) + len(lost_events)
        self.stats.duplicates += duplicates
        self.stats.events_sent += len(versions)
        self.stats.events_acknowledged += len(had)
        assert not lost, f"acknowledged but not archived: {sorted(lost)[:5]}"
        assert not lost_events, f"Events the cluster had, not archived: {sorted(lost_events)[:5]}"
        assert not duplicates, "archived more than once"
        self._check_quarantine()
        self._check_pages()
        report = world.verify()
        self.stats.verify_ok = self.stats.verify_ok and report.ok
        assert report.ok, f"verify failed on the honest archive: {report.findings[:5]}"

    def _latest_versions(self) -> set[tuple[str, str]]:
        latest: dict[str, int] = {}
        for uid, version in self.world.kube.versions():
            latest[uid] = max(latest.get(uid, 0), int(version))
        return {(uid, str(number)) for uid, number in latest.items()}

    def _explained_by_gaps(self, events: Counter[tuple[str, ...]]) -> set[tuple[str, str, str]]:
        """The versions not archived that a coverage-gap record explains, and no others: a version
        superseded (the Event recurred) within a gap record's span, while a later version of the same
        Event is archived. A relist after 410 lands each Event's latest version only, and its gap
        record says versions superseded since the checkpoint may be missing; every other version is
        owed (test_poller_faults' ``unexplained`` holds the poller to the same rule)."""
        by_uid: dict[str, list[int]] = {}
        for uid, version in self.world.kube.versions():
            by_uid.setdefault(uid, []).append(int(version))
        out: set[tuple[str, str, str]] = set()
        for uid, rvs in by_uid.items():
            rvs.sort()
            archived = [rv for rv in rvs if events[(KUBE, uid, str(rv))]]
            for rv, successor in itertools.pairwise(rvs):
                if events[(KUBE, uid, str(rv))] or not archived or archived[-1] <= rv:
                    continue
                superseded = self.version_at[str(successor)]
                if any(first <= superseded <= last for first, last in self.gaps):
                    out.add((KUBE, uid, str(rv)))
        return out

    def _deliver_clean(self, event: dict[str, Any], keys: set[tuple[str, str, str]]) -> bool:
        self.world.invoke("cloudwatch", event)
        self.stats.events_acknowledged += len(keys - self.acked)
        self.acked |= keys
        return True

    def _events_landed(self) -> set[tuple[str, str]]:
        out: set[tuple[str, str]] = set()
        for key in self.world.keys(self.world.raw, "raw/events/"):
            for row in self.world.raw_rows(key):
                if "uid" in row and "resource_version" in row:
                    out.add((row["uid"], row["resource_version"]))
        return out

    def _check_quarantine(self) -> None:
        """Every quarantined audit item is one the model sent malformed; every malformed item is there."""
        import json

        found: set[str] = set()
        for key in self.world.keys(self.world.raw, "quarantine/audit/"):
            if not key.endswith(".json"):
                continue
            manifest = json.loads(self.world.get(self.world.raw, key))
            for failure in manifest.get("items") or manifest.get("failures") or []:
                item = failure.get("item") if isinstance(failure, dict) else None
                audit_id = item.get("auditID") if isinstance(item, dict) else None
                assert audit_id in self.bad, f"quarantined an item the model did not send malformed: {key}"
                found.add(audit_id)
        # Malformed items of batches never acknowledged may be quarantined or not; of the others, all.
        assert found <= self.bad
        # Every Event the fake cluster serves is valid: one in quarantine is lost to the archive (a
        # watch line cut by a reset must be read again, not quarantined).
        events = sorted(self.world.keys(self.world.raw, "quarantine/events/"))
        assert not events, f"the poller quarantined Events the cluster served valid: {events[:3]}"

    def _check_pages(self) -> None:
        pages = self.world.pages()
        by_identity = Counter(page.get("identity") for page in pages)
        # Twice is the contract's price when a publish may have happened unconfirmed (trust/alerts.py): its
        # answer lost, or the claim's confirmation (an UpdateItem) lost or killed after SNS took the page.
        unconfirmed = self.world.faults.ambiguous("sns", "Publish") or any(
            f.kind in ("kill", "killed-in-flight") or (f.service, f.operation) == ("dynamodb", "UpdateItem")
            for f in self.world.faults.log
        )
        for identity, acknowledged in self.bursts.items():
            if acknowledged:
                assert by_identity[identity] >= 1, f"a 403 burst of {identity} never paged"
            if by_identity[identity] > 1:
                assert unconfirmed, f"{identity} paged {by_identity[identity]} times, no publish left unconfirmed"


@contextlib.contextmanager
def replay(seed: int = 0) -> Iterator[ChaosMachine]:
    """One ``ChaosMachine`` outside Hypothesis, for a counterexample kept as a regular test: call its
    steps (rules with their arguments, or the helpers they use) and ``archive_is_honest()`` after
    each, as Hypothesis would; leaving the block runs ``teardown`` (settle, then every end check)."""
    from tests.helpers import moto_server

    _Run.stats, _Run.ca = Stats(seed=seed), trustme.CA()
    with moto_server():
        machine = ChaosMachine()
        try:
            yield machine
        except BaseException:
            machine.world.close()
            raise
        machine.teardown()


def run(seed: int, *, minutes: float | None = None, examples: int | None = None, steps: int = 40,
        shrink: bool = True) -> Stats:  # fmt: skip
    """Rounds of examples until ``minutes`` pass or ``examples`` are done; raises on a (shrunk) failure.
    ``minutes`` is a bound on the whole run: see ``rounds``."""
    import logging

    from tests.helpers import moto_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto server logs one line per request

    _Run.stats = Stats(seed=seed)
    _Run.ca = trustme.CA()
    deadline = time.perf_counter() + minutes * 60 if minutes is not None else None
    with moto_server():
        return rounds(ChaosMachine, seed, deadline=deadline, examples=examples, steps=steps, shrink=shrink)


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def rounds(machine: type[BoundedMachine], seed: int, *, deadline: float | None, examples: int | None = None,
           steps: int = 40, shrink: bool = True) -> Stats:  # fmt: skip
    """Hypothesis runs of ``ROUND`` examples of ``machine`` (round n seeded ``seed + n``) until
    ``deadline`` (``time.perf_counter()``: time-machine, the model's clock, moves ``time.monotonic()``)
    or ``examples``; returns ``_Run.stats``.

    The deadline is a hard bound: past it, the example in progress is abandoned between two steps
    (``OutOfTime``; its figures are not counted) and no round starts. A failure is shrunk only
    until the deadline (Hypothesis' ``MAX_SHRINKING_SECONDS``, checked after each shrink attempt),
    then replayed once to print its steps: the overrun is at most about two runs of the failing
    example (``_Run.failed`` sets it when the failure is seen). The failure is raised with a note
    naming the seed and the round."""
    from rich.progress import Progress

    stats = _Run.stats
    saved = hypothesis.core.global_force_seed, hypothesis_engine.MAX_SHRINKING_SECONDS, _Run.deadline
    _Run.deadline = deadline
    with Progress(transient=True) as progress:
        task = progress.add_task(f"chaos seed {seed}", total=examples)
        round_ = 0
        try:
            while True:
                if deadline is not None and time.perf_counter() >= deadline:
                    break
                if examples is not None and stats.examples >= examples:
                    break
                setattr(hypothesis.core, "global_force_seed", seed + round_)  # noqa: B010 - typed None upstream
                _Run.failing = False
                # Hypothesis' first example of a run is its simplest: rounds of several examples.
                count = ROUND if examples is None else max(1, min(ROUND, examples - stats.examples))
                try:
                    run_state_machine_as_test(
                        machine,
                        settings=settings(max_examples=count, stateful_step_count=steps, database=None, deadline=None,
                                          suppress_health_check=list(HealthCheck), print_blob=False,
                                          report_multiple_bugs=False, phases=PHASES if shrink else PHASES[:-1]),
                    )  # fmt: skip
                except OutOfTime:
                    break
                except Exception as exc:
                    if _caused_by(exc, OutOfTime):
                        # Hypothesis saw the abandoned example stop drawing where an earlier one with the
                        # same choices went on, and calls that flaky data generation: it is the time bound.
                        break
                    late = deadline is not None and time.perf_counter() >= deadline
                    bound = " (shrinking stopped at the time bound)" if late else ""
                    exc.add_note(f"chaos: seed {seed}, round {round_} (Hypothesis seed {seed + round_}): "
                                 f"the steps above reproduce it{bound}")  # fmt: skip
                    raise
                round_ += 1
                progress.update(task, completed=stats.examples,
                                description=f"chaos seed {seed}: {stats.examples} examples, "
                                f"{stats.faults_injected} faults, {stats.kills} kills")  # fmt: skip
        finally:
            setattr(hypothesis.core, "global_force_seed", saved[0])  # noqa: B010
            hypothesis_engine.MAX_SHRINKING_SECONDS, _Run.deadline = saved[1], saved[2]
    return stats
