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

import copy
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any, TypeVar

import hypothesis
import hypothesis.core
import trustme
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

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


def pick(data: st.DataObject, among: Sequence[T], label: str) -> T:
    """One of ``among``, drawn the same way whatever its length: what the model observed (the objects
    listed, the files written) depends on thread timing under faults, and a draw shaped by it would make
    Hypothesis' replay of a failure diverge (FlakyStrategyDefinition)."""
    return among[data.draw(st.integers(0, 1 << 16), label=label) % len(among)]


class ChaosMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.stats = _Run.stats
        self.stats.examples += 1
        self.world = World(_Run.ca)
        self.sent: set[tuple[str, str, str]] = set()  # audit keys ever sent (acknowledged or not)
        self.acked: set[tuple[str, str, str]] = set()
        self.bad: set[str] = set()  # auditIDs of malformed items sent
        self.bursts: dict[str, bool] = {}  # identity -> its batch was acknowledged
        self.failed_deliveries: list[tuple[dict[str, Any], set[tuple[str, str, str]]]] = []
        self.notified: dict[str, str] = {}  # raw key -> ETag already turned into a notification
        self.pending: list[str] = []  # raw keys whose notification SQS still holds
        self.raw_cache: dict[tuple[str, str], set[tuple[str, str, str]]] = {}
        self.archive_cache: dict[tuple[str, str, str], list[tuple[str, ...]]] = {}
        self.kube_uids: list[str] = []
        self.templates = corpus_kube_events()
        self.counter = 0
        self.gone = False  # a 410 was injected: the poller relisted, and a relist sees current versions only
        self.all_pages: list[dict[str, Any]] = []

    # ---------------------------------------------------------------- helpers

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
        columns = {"audit": ["cluster", "audit_id", "stage"], "events": ["cluster", "uid", "resource_version", "api"]}
        counts: Counter[tuple[str, ...]] = Counter()
        for key, etag in self.world.keys(self.world.archives[kind], f"{kind}/").items():
            if not key.endswith(".parquet"):
                continue
            cached = self.archive_cache.get((kind, key, etag))
            if cached is None:
                rows = self.world.parquet_rows(kind, key, columns[kind])
                if kind == "events":  # coverage-gap records are not Events the fake had
                    rows = [r for r in rows if r["api"] != "auditlake/coverage-gap"]
                cached = [tuple(str(r[c]) for c in columns[kind][:3]) for r in rows]
                self.archive_cache[(kind, key, etag)] = cached
            counts.update(cached)
        return counts

    def _count_faults(self, before: int) -> None:
        self.stats.faults_injected += len(self.world.faults.log) - before

    # ---------------------------------------------------------------- rules

    @initialize()
    def cold_starts(self) -> None:
        for name in ("webhook", "cloudwatch", "events_poller", "compactor", "digest"):
            self.world.cold_start(name)
        # The poller's first list is where its coverage starts (a list sees each Event's current
        # version only): made before the cluster has any Event, so every version after it is owed.
        # Polls get 12.5 s: a budget of 7.5 s, watching ~1 s (PollerFleet.handle); deployed, 60 s.
        self._poll(None, remaining_ms=12_500)

    @rule(data=st.data(), count=st.integers(1, 30), bad=st.integers(0, 3), burst=st.booleans(), f=faults_strategy())
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
    def redrive(self, f: Faults) -> None:
        """An operator redrives the failure queue (one delivery of each, with this step's faults)."""
        waiting, self.failed_deliveries = self.failed_deliveries, []
        for event, keys in waiting:
            self._deliver(event, keys, f)

    @rule(data=st.data(), new=st.integers(0, 5), recur=st.integers(0, 5), f=faults_strategy(),
          short=st.booleans())  # fmt: skip
    def poll(self, data: st.DataObject, new: int, recur: int, f: Faults, short: bool) -> None:
        now = format_utc(self.world.now())
        for _ in range(new):
            template = copy.deepcopy(self.templates[data.draw(st.integers(0, len(self.templates) - 1), label="event")])
            uid = self._id()
            template["metadata"]["uid"] = uid
            template["metadata"]["name"] = f"chaos.{uid}"
            for name in ("firstTimestamp", "lastTimestamp", "eventTime"):
                if template.get(name):
                    template[name] = now
            self.world.kube.add(template)
            self.kube_uids.append(uid)
        for _ in range(recur if self.kube_uids else 0):
            self.world.kube.recur(pick(data, self.kube_uids, "recur"), at=now)
        self._poll(f, remaining_ms=11_000 if short else 12_500)

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
                self.gone = self.gone or "410" in kube_faults.log
            self._count_faults(before)

    @rule(data=st.data(), f=faults_strategy())
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
    def digest(self, f: Faults) -> None:
        self._digest(f)

    def _digest(self, f: Faults | None) -> None:
        before = len(self.world.faults.log)
        try:
            self._invoke("digest", scheduled_event(self.world.now()), f)
        finally:
            self._count_faults(before)

    @rule(minutes=st.integers(1, 90))
    def tick(self, minutes: int) -> None:
        self.world.advance(minutes * 60)

    @rule(data=st.data(), delete=st.booleans())
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
        if delete:
            self.world.s3.delete_object(Bucket=bucket, Key=key)
        else:
            self.world.s3.put_object(Bucket=bucket, Key=key, Body=original + b"x")
        caught = not self.world.verify().ok
        self.world.s3.put_object(Bucket=bucket, Key=key, Body=original)
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

    # ---------------------------------------------------------------- the end

    def teardown(self) -> None:
        try:
            self._settle_and_check()
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
            if self._events_landed() >= world.kube.versions():
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
        had = self._owed_versions()
        lost_events = [key for key in had if events[key] == 0]
        duplicates = sum(n - 1 for n in audit.values() if n > 1) + sum(n - 1 for n in events.values() if n > 1)
        self.stats.events_archived += sum(1 for key in audit if key in self.acked) + len(set(events) & had)
        self.stats.lost += len(lost) + len(lost_events)
        self.stats.duplicates += duplicates
        self.stats.events_sent += len(had)
        self.stats.events_acknowledged += len(had)
        assert not lost, f"acknowledged but not archived: {sorted(lost)[:5]}"
        assert not lost_events, f"Events the cluster had, not archived: {sorted(lost_events)[:5]}"
        assert not duplicates, "archived more than once"
        self._check_quarantine()
        self._check_pages()
        report = world.verify()
        self.stats.verify_ok = self.stats.verify_ok and report.ok
        assert report.ok, f"verify failed on the honest archive: {report.findings[:5]}"

    def _owed_versions(self) -> set[tuple[str, str, str]]:
        """Every version the fake had; after a 410 (the server said its history is gone, and the
        poller relisted), only each Event's latest: what a relist can see."""
        versions = self.world.kube.versions()
        if not self.gone:
            return {(KUBE, uid, rv) for uid, rv in versions}
        latest: dict[str, str] = {}
        for uid, rv in versions:
            if int(rv) > int(latest.get(uid, "0")):
                latest[uid] = rv
        return {(KUBE, uid, rv) for uid, rv in latest.items()}

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


def run(seed: int, *, minutes: float | None = None, examples: int | None = None, steps: int = 40,
        shrink: bool = True) -> Stats:  # fmt: skip
    """Rounds of examples until ``minutes`` pass or ``examples`` are done; raises on a (shrunk) failure."""
    import logging

    from rich.progress import Progress

    from tests.helpers import moto_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto server logs one line per request

    stats = _Run.stats = Stats(seed=seed)
    _Run.ca = trustme.CA()
    deadline = time.monotonic() + minutes * 60 if minutes is not None else None
    total = examples if examples is not None else None
    saved = hypothesis.core.global_force_seed
    with moto_server(), Progress(transient=True) as progress:
        task = progress.add_task(f"chaos seed {seed}", total=total)
        round_ = 0
        try:
            while True:
                if deadline is not None and time.monotonic() >= deadline:
                    break
                if total is not None and stats.examples >= total:
                    break
                setattr(hypothesis.core, "global_force_seed", seed + round_)  # noqa: B010 - typed None upstream
                # Hypothesis' first example of a run is its simplest: rounds of several examples.
                count = ROUND if total is None else max(1, min(ROUND, total - stats.examples))
                run_state_machine_as_test(
                    ChaosMachine,
                    settings=settings(max_examples=count, stateful_step_count=steps, database=None, deadline=None,
                                      suppress_health_check=list(HealthCheck), print_blob=False,
                                      phases=PHASES if shrink else PHASES[:-1]),
                )  # fmt: skip
                round_ += 1
                progress.update(task, completed=stats.examples,
                                description=f"chaos seed {seed}: {stats.examples} examples, "
                                f"{stats.faults_injected} faults, {stats.kills} kills")  # fmt: skip
        finally:
            setattr(hypothesis.core, "global_force_seed", saved)  # noqa: B010
    return stats
