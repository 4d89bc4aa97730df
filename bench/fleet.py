"""Fleet figures for `make bench` (issue 15): the archive a 200-cluster fleet produces in a day.

What is simulated, on the local lake (LocalStore, the real Landing, Compactor, LocalLocks, ledger),
with an injected clock (simulated time; the wall clock only times the work):

* ``CLUSTERS`` clusters with uneven rates: ``BUSY`` of them at 200 audit events/s, the rest spread
  log-uniformly over 1-20 events/s; every ``CLOUDWATCH_EVERY``-th cluster is an EKS cluster whose
  audit log arrives through CloudWatch Logs (deliveries minutes late), the others use the webhook
  (kube-apiserver's batch waits up to 30 s). Traffic is the bench's synthetic generator (Synth, one
  per cluster for the day, with its planted incidents) normalised by the webhook pipeline.
* Time is compressed (``fleet_scale``): each cluster sends ``EVENT_SCALE`` times fewer events than
  its rate says, in ``OBJECT_SCALE`` times fewer raw objects per hour than kube-apiserver's batches
  (one per 30 s or per 400 events, whichever comes first). What stays real: the number of
  clusters, the spread of their rates, that every cluster lands objects in every hour, and the
  shape of the day: stragglers (the last seconds of hour H, up to 30 s for the webhook and 5 minutes
  for CloudWatch, land in hour H+1), late objects (every ``BACKFILL_EVERY`` hours a cluster
  backfills a landing hour compacted ``BACKFILL_LAG`` ago) and redeliveries (``REDELIVER`` of the
  objects are landed twice: the same key again, or the next hour's key when the retry crosses it).
* Raw objects land as the webhook lands them (``Landing.write_raw`` at their landing time), and each
  sends an S3 notification to the compactor's queue.

Two layouts are compacted side by side from the same raw objects:

* **deployed** (the new layout): ``hourly.compact_due`` every simulated hour at ``GRACE`` (:20),
  and the SQS path for late objects: notifications cut into batches as the deployed event-source
  mapping does (template.yaml CompactorFunction RawObjects: window 300 s, batch 1,000, maximum
  concurrency 2) and handed to ``triggers.compact_messages`` (``late_keys`` + ``compact``).
* **per batch** (what issue 15 measured before, ``_per_batch`` figures): every SQS batch of ALL
  notifications compacted at once with ``Compactor.compact`` (window 300 s, batch 1,000,
  concurrency 5). The code before issue 15 wrote one file per cluster per batch; today's
  ``compact`` writes one file per partition per batch (all clusters together), so this layout has
  fewer files than the old code had, and is the per-batch lower bound.

The event-source mapping is modelled as ``concurrency`` pollers taking the queue's messages in
turn, each cutting its batch ``window`` after its first message or at ``batch`` messages; batches
cut within ``CONCURRENT_SLACK`` of each other run at once, on threads, so partition locks contend
as concurrent Lambda invocations would. Objects a batch could not compact are delivered again.

Figures (``fleet_figures``; ``_per_batch`` for the second layout where it applies):
fleet_archive_files_per_hour (files of all clusters and kinds / simulated hours; target <= 15),
fleet_bytes_per_file_median, fleet_compact_cost_growth (per-event seconds of the day's last
quarter of hourly runs over its first quarter, the first run left out as warm-up; per batch: of an
hour's last two rounds of batches over its first two, the median over the hours; target <= 1.2),
fleet_query_seconds (three named queries over the day, best of ``QUERY_ROUNDS`` interleaved runs),
fleet_query_ratio_vs_ideal (each query / the same query on the ideal layout: the same rows rewritten
by DuckDB as one file per (kind, dt, hour); target <= 1.5), fleet_ledger_entries_per_day,
fleet_lock_waits (lock acquisitions that had to wait), fleet_partition_busy (PartitionBusy raised;
target 0), fleet_events (distinct events sent), fleet_scale and fleet_objects_scale. The bench
fails if an archive does not hold every event sent exactly once, or if a layout answers a named
query differently from the ideal one.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import random
import shutil
import statistics
import tempfile
import threading
import time
from bisect import bisect_right
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from auditlake.archive import hourly, triggers
from auditlake.archive.compactor import CompactionReport, Compactor
from auditlake.archive.locks import LocalLocks, Locks
from auditlake.audit.pipeline import AuditPipeline, PipelineConfig
from auditlake.demo.replay import eventlist
from auditlake.demo.synth import INCIDENT_DELETER, INCIDENT_SECRET, Synth
from auditlake.jsonio import dumps
from auditlake.landing import Landing, batch_id, decode_lines, encode_lines
from auditlake.metrics import NoMetrics
from auditlake.query import named
from auditlake.stores.local import LocalStore
from auditlake.timestamps import format_millis, format_utc, parse
from auditlake.trust.ledger import LocalLedger

CLUSTERS = 200
HOURS = 24
BUSY = 4  # clusters at BUSY_RATE; the rest log-uniform over QUIET_RATES
BUSY_RATE = 200.0
QUIET_RATES = (1.0, 20.0)
CLOUDWATCH_EVERY = 10  # every 10th cluster is EKS through CloudWatch Logs
EVENT_SCALE = 400  # events sent = real rate x time / EVENT_SCALE
OBJECT_SCALE = 60  # raw objects per cluster-hour = kube-apiserver's batches / OBJECT_SCALE (at least 1)
WEBHOOK_WAIT = timedelta(seconds=30)  # kube-apiserver's --audit-webhook-batch-max-wait
CLOUDWATCH_WAIT = timedelta(minutes=5)  # CloudWatch Logs subscription deliveries
BATCH_EVENTS = 400  # kube-apiserver's --audit-webhook-batch-max-size
REDELIVER = 0.01
REDELIVER_AFTER = timedelta(minutes=10)  # the latest a sender's retry comes
BACKFILL_EVERY, BACKFILL_LAG, BACKFILL_MINUTES = 6, 2, 10
START = datetime(2026, 10, 1, tzinfo=UTC)
BUCKET = "fleet-raw"
CONCURRENT_SLACK = timedelta(seconds=30)
QUERY_ROUNDS = 3


@dataclass(frozen=True)
class Mapping:
    """An SQS event-source mapping's batching (template.yaml CompactorFunction RawObjects)."""

    window: timedelta
    batch: int
    concurrency: int


DEPLOYED = Mapping(timedelta(seconds=300), 1000, 2)
PER_BATCH = Mapping(timedelta(seconds=300), 1000, 5)


@dataclass(frozen=True)
class Fleet:
    clusters: int = CLUSTERS
    hours: int = HOURS
    busy: int = BUSY
    event_scale: float = EVENT_SCALE
    object_scale: float = OBJECT_SCALE
    start: datetime = START
    seed: int = 15
    workers: int = 2  # processes generating the traffic (2 cores)

    @property
    def end(self) -> datetime:
        return self.start + timedelta(hours=self.hours)


@dataclass(frozen=True)
class ClusterSpec:
    index: int
    name: str
    rate: float  # real audit events per second
    cloudwatch: bool

    @property
    def objects_per_hour(self) -> float:
        """kube-apiserver's batches an hour: one per 30 s at least, more when 400 events fill one sooner."""
        return max(3600 / WEBHOOK_WAIT.total_seconds(), self.rate * 3600 / BATCH_EVENTS)


def cluster_specs(fleet: Fleet) -> list[ClusterSpec]:
    rng = random.Random(fleet.seed)
    low, high = QUIET_RATES
    specs = []
    for index in range(fleet.clusters):
        rate = BUSY_RATE if index < fleet.busy else math.exp(rng.uniform(math.log(low), math.log(high)))
        specs.append(ClusterSpec(index, f"c{index:03d}", rate, index % CLOUDWATCH_EVERY == CLOUDWATCH_EVERY - 1))
    return specs


@dataclass(frozen=True)
class Landed:
    """One raw object as the webhook lands it: when (``at``, which names its landing hour), what."""

    at: datetime  # when it is stored and notified
    key_at: datetime  # the writer's clock, which names its landing hour (a backfill's is hours behind)
    cluster: str
    batch: str
    blob: bytes  # the normalised lines, zstd (kept small until landed)
    events: int
    kind: str  # "batch", "straggler" (events of the hour before), "late" (backfill), "redelivery"


# ----------------------------------------------------------------------------- traffic


def _object(pipeline: AuditPipeline, spec: ClusterSpec, items: list[bytes], at: datetime, kind: str) -> Landed:
    body = eventlist(items)
    result = pipeline.eventlist(body, cluster=spec.name, source="webhook", ingested_at=format_utc(at))
    return Landed(at, at, spec.name, batch_id(spec.name, "webhook", body), encode_lines(result.lines),
                  len(result.lines), kind)  # fmt: skip


def plan_cluster(spec: ClusterSpec, fleet: Fleet, config: PipelineConfig) -> list[Landed]:
    """A cluster's day of raw objects, in the order it lands them (redeliveries and backfills included)."""
    rng = random.Random(fleet.seed * 100_003 + spec.index)
    pipeline = AuditPipeline(config)
    wait = CLOUDWATCH_WAIT if spec.cloudwatch else WEBHOOK_WAIT
    per_hour = max(1, round(spec.objects_per_hour / fleet.object_scale))
    # Boundaries: per_hour objects an hour, and the hour's last `wait` in an object of its own that
    # lands in the next hour (the straggler).
    bounds: list[datetime] = []
    for h in range(fleet.hours):
        hour = fleet.start + timedelta(hours=h)
        bounds += [hour + timedelta(hours=k / per_hour) for k in range(per_hour)]
        bounds.append(hour + timedelta(hours=1) - wait)
    bounds.append(fleet.end)
    synth = Synth(minutes=fleet.hours * 60, rate=spec.rate / fleet.event_scale, seed=spec.index, start=fleet.start)
    groups: list[list[bytes]] = [[] for _ in bounds[:-1]]
    for event in synth.events():
        at = parse(event["stageTimestamp"])
        slot = min(max(bisect_right(bounds, at) - 1, 0), len(groups) - 1)
        groups[slot].append(dumps({k: v for k, v in event.items() if k not in ("kind", "apiVersion")}))
    landed: list[Landed] = []
    for slot, items in enumerate(groups):
        if not items:
            continue
        end = bounds[slot + 1]
        at = end + wait * rng.uniform(0.02, 1.0) if spec.cloudwatch else end + timedelta(seconds=rng.uniform(0.5, 30))
        kind = "straggler" if hourly.floor_hour(at) >= end else "batch"
        landed.append(_object(pipeline, spec, items, at, kind))
    for original in list(landed):
        if rng.random() < REDELIVER:
            again = original.at + REDELIVER_AFTER * rng.random()
            landed.append(replace(original, at=again, key_at=again, kind="redelivery"))
    for h in backfill_hours(fleet):
        if (h * 7) % fleet.clusters == spec.index:
            landed += _backfill(pipeline, spec, fleet, h)
    return sorted(landed, key=lambda item: item.at)


def backfill_hours(fleet: Fleet) -> list[int]:
    return list(range(BACKFILL_LAG, fleet.hours, BACKFILL_EVERY))


def _backfill(pipeline: AuditPipeline, spec: ClusterSpec, fleet: Fleet, h: int) -> list[Landed]:
    """Audit log of the first minutes of hour ``h - BACKFILL_LAG`` that never arrived, sent at h:30 by a
    writer whose key names the hour the events belong to: a landing hour compacted an hour ago."""
    hour = fleet.start + timedelta(hours=h - BACKFILL_LAG)
    rate = max(spec.rate / fleet.event_scale, 0.2)
    synth = Synth(minutes=BACKFILL_MINUTES, rate=rate, seed=1_000_000 + spec.index * 100 + h, start=hour)
    items = [dumps({k: v for k, v in e.items() if k not in ("kind", "apiVersion")}) for e in synth.events()]
    # Keyed with the hour of its events (the backfill's clock), stored and notified at h:30.
    late = _object(pipeline, spec, items, hour + timedelta(minutes=BACKFILL_MINUTES), "late")
    return [replace(late, at=fleet.start + timedelta(hours=h, minutes=30))] if late.events else []


def _plan_worker(args: tuple[ClusterSpec, Fleet, PipelineConfig]) -> list[Landed]:
    return plan_cluster(*args)


def plan_fleet(fleet: Fleet, config: PipelineConfig) -> list[Landed]:
    """Every cluster's objects, merged in landing order; generated on ``fleet.workers`` processes
    (spawned: the bench's earlier parts leave Arrow's threads behind, which a fork would copy)."""
    specs = [(spec, fleet, config) for spec in cluster_specs(fleet)]
    if fleet.workers > 1:
        with multiprocessing.get_context("spawn").Pool(fleet.workers) as pool:
            planned = pool.map(_plan_worker, specs, chunksize=4)
    else:
        planned = [_plan_worker(args) for args in specs]
    return sorted((item for items in planned for item in items), key=lambda item: (item.at, item.cluster))


# ----------------------------------------------------------------------------- compaction


class SimClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class CountingLocks:
    """A Locks that counts acquisitions that had to wait (the first refusal of each attempt)."""

    def __init__(self, inner: Locks, counter: LockCounter) -> None:
        self.inner = inner
        self.counter = counter

    def acquire(self, name: str, lease_seconds: int) -> str | None:
        token = self.inner.acquire(name, lease_seconds)
        self.counter.saw(name, token is None)
        return token

    def release(self, name: str, token: str) -> None:
        self.inner.release(name, token)


class LockCounter:
    def __init__(self) -> None:
        self.waits = 0
        self._waiting: set[tuple[int, str]] = set()
        self._guard = threading.Lock()

    def saw(self, name: str, refused: bool) -> None:
        attempt = (threading.get_ident(), name)
        with self._guard:
            if not refused:
                self._waiting.discard(attempt)
            elif attempt not in self._waiting:
                self._waiting.add(attempt)
                self.waits += 1


_working = threading.local()  # the Layout a thread compacts for (BusyCounter tells them apart)


class BusyCounter(logging.Handler):
    """PartitionBusy, as the compactor reports it (it catches it, logs it and retries the objects
    later), counted on the layout whose compaction raised it."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        layout = getattr(_working, "layout", None)
        if layout is not None and "stayed locked" in str(getattr(record, "error", "")):
            layout.busy += 1


class EventSourceMapping:
    """SQS -> Lambda batching: ``concurrency`` pollers take messages in turn; each cuts its batch
    ``window`` after its first message, or at once when it holds ``batch`` messages."""

    def __init__(self, mapping: Mapping) -> None:
        self.mapping = mapping
        self.pollers: list[list[str]] = [[] for _ in range(mapping.concurrency)]
        self.opened: list[datetime | None] = [None] * mapping.concurrency
        self.full: list[tuple[datetime, list[str]]] = []  # cut at once: a poller reached the batch size
        self.turn = 0

    def notify(self, at: datetime, key: str) -> None:
        i = self.turn
        self.turn = (i + 1) % self.mapping.concurrency
        if not self.pollers[i]:
            self.opened[i] = at
        self.pollers[i].append(key)
        if len(self.pollers[i]) >= self.mapping.batch:
            self.full.append((at, self.pollers[i]))
            self.pollers[i], self.opened[i] = [], None

    def deadline(self) -> datetime | None:
        due = [o + self.mapping.window for o in self.opened if o is not None] + [at for at, _ in self.full]
        return min(due, default=None)

    def cut(self, now: datetime) -> list[list[str]]:
        """The batches due by ``now`` (with the slack of concurrent invocations)."""
        batches = [keys for at, keys in self.full if at <= now]
        self.full = [(at, keys) for at, keys in self.full if at > now]
        for i, opened in enumerate(self.opened):
            if opened is not None and opened + self.mapping.window <= now + CONCURRENT_SLACK:
                batches.append(self.pollers[i])
                self.pollers[i], self.opened[i] = [], None
        return batches


@dataclass
class Round:
    """Compaction work that ran at one simulated moment: its wall time and what it read."""

    at: datetime
    seconds: float
    rows_read: int
    files: int


@dataclass
class Layout:
    """One archive under compaction: its store, ledger, counters and timed rounds."""

    name: str
    root: Path
    mapping: Mapping
    clock: SimClock
    raw: LocalStore
    locks: LockCounter = field(default_factory=LockCounter)
    rounds: list[Round] = field(default_factory=list)  # hourly runs (deployed) or SQS batch rounds
    sqs_rounds: list[Round] = field(default_factory=list)
    late_compacted: int = 0  # raw objects the SQS path compacted (deployed: late ones only)
    redelivered: int = 0  # objects a batch could not compact, delivered again
    busy: int = 0  # PartitionBusy raised in this layout's compactions
    queue: EventSourceMapping = field(init=False)
    pool: ThreadPoolExecutor = field(init=False)
    hours: hourly.LocalCompactedHours = field(init=False)

    def __post_init__(self) -> None:
        self.queue = EventSourceMapping(self.mapping)
        self.pool = ThreadPoolExecutor(self.mapping.concurrency)
        self.hours = hourly.LocalCompactedHours(self.root / "state" / "compacted")

    @property
    def archive(self) -> Path:
        return self.root / "archive"

    @property
    def ledger(self) -> LocalLedger:
        return LocalLedger(self.root / "state" / "ledger")

    def compactor(self) -> Compactor:
        """One per invocation, as each Lambda instance builds its own."""
        locks = CountingLocks(LocalLocks(self.root / ".locks"), self.locks)
        return Compactor(self.raw, {"audit": LocalStore(self.archive)}, locks, clock=self.clock, ledger=self.ledger)


def notification(key: str) -> str:
    """The SQS message body S3 sends for a created object."""
    record = {"eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
              "s3": {"bucket": {"name": BUCKET}, "object": {"key": key}}}  # fmt: skip
    return dumps({"Records": [record]}).decode()


def _deployed_batch(layout: Layout, keys: list[str]) -> tuple[CompactionReport, list[str]]:
    bodies = {f"m{n}": notification(key) for n, key in enumerate(keys)}
    failed, report = triggers.compact_messages(layout.compactor(), bodies, BUCKET, NoMetrics(), layout.clock.now)
    late, _ = hourly.late_keys(keys, layout.clock.now)
    layout.late_compacted += len(set(late) - report.failed)
    return report, [keys[int(m[1:])] for m in failed]


def _per_batch(layout: Layout, keys: list[str]) -> tuple[CompactionReport, list[str]]:
    report = layout.compactor().compact(keys)
    return report, sorted(report.failed)


def run_batches(layout: Layout, now: datetime) -> None:
    batches = layout.queue.cut(now)
    if not batches:
        return
    layout.clock.now = now
    handle = _deployed_batch if layout.name == "deployed" else _per_batch

    def invoke(keys: list[str]) -> tuple[CompactionReport, list[str]]:
        _working.layout = layout
        return handle(layout, keys)

    started = time.perf_counter()
    results = list(layout.pool.map(invoke, batches))
    seconds = time.perf_counter() - started
    report = CompactionReport()
    for done, retry in results:
        report.add(done)
        layout.redelivered += len(retry)
        for key in retry:  # SQS delivers the message again (ReportBatchItemFailures)
            layout.queue.notify(now, key)
    layout.sqs_rounds.append(Round(now, seconds, report.rows_read, len(report.files)))


def run_hourly(layout: Layout, now: datetime) -> None:
    layout.clock.now = now
    _working.layout = layout
    started = time.perf_counter()
    report = hourly.compact_due(layout.compactor(), layout.hours, now, kinds=("audit",))
    layout.rounds.append(Round(now, time.perf_counter() - started, report.rows_read, len(report.files)))


@dataclass
class FleetRun:
    fleet: Fleet
    work: Path
    objects: dict[str, int] = field(default_factory=dict)  # by Landed.kind
    events: int = 0  # distinct events sent (a redelivery's not counted again)
    layouts: dict[str, Layout] = field(default_factory=dict)
    busy: BusyCounter = field(default_factory=BusyCounter)
    simulate_seconds: float = 0.0
    plan_seconds: float = 0.0


def simulate(fleet: Fleet, config: PipelineConfig, work: Path) -> FleetRun:
    """Land the fleet's day in simulated time order and compact it in both layouts."""
    started = time.perf_counter()
    planned = plan_fleet(fleet, config)
    run = FleetRun(fleet, work, plan_seconds=time.perf_counter() - started)
    raw = LocalStore(work / "raw")
    landing = Landing(raw)
    for name, mapping in (("deployed", DEPLOYED), ("per_batch", PER_BATCH)):
        run.layouts[name] = Layout(name, work / name, mapping, SimClock(fleet.start), raw)
    deployed = run.layouts["deployed"]
    # Hourly at GRACE past each hour, until the last straggler's landing hour is done.
    runs = [fleet.start + timedelta(hours=h) + hourly.GRACE for h in range(1, fleet.hours + 3)]
    logger = logging.getLogger("auditlake.archive.compactor")
    logger.addHandler(run.busy)
    started = time.perf_counter()
    try:
        items = iter(planned)
        item = next(items, None)
        while item is not None or runs or any(x.queue.deadline() for x in run.layouts.values()):
            moments = [(item.at, 2)] if item is not None else []
            moments += [(runs[0], 0)] if runs else []
            moments += [(d, 1) for x in run.layouts.values() if (d := x.queue.deadline()) is not None]
            now, what = min(moments)
            if what == 0:
                run_hourly(deployed, runs.pop(0))
            elif what == 1:
                for layout in run.layouts.values():
                    if (d := layout.queue.deadline()) is not None and d <= now:
                        run_batches(layout, now)
            else:
                assert item is not None
                key = landing.write_raw(item.cluster, item.key_at, item.batch, decode_lines(item.blob))
                assert key is not None
                run.objects[item.kind] = run.objects.get(item.kind, 0) + 1
                if item.kind != "redelivery":
                    run.events += item.events
                for layout in run.layouts.values():
                    layout.queue.notify(now, key)
                item = next(items, None)
    finally:
        logger.removeHandler(run.busy)
        for layout in run.layouts.values():
            layout.pool.shutdown()
    run.simulate_seconds = time.perf_counter() - started
    return run


# ----------------------------------------------------------------------------- figures


def archive_files(archive: Path) -> list[Path]:
    return sorted(archive.glob("*/dt=*/hour=*/*.parquet"))


def archived_keys(archive: Path) -> tuple[int, int]:
    """(rows, distinct keys) of the audit archive."""
    files = [str(p) for p in archive_files(archive)]
    row = (
        duckdb.connect()
        .execute("SELECT count(*), count(DISTINCT (cluster, audit_id, stage)) FROM read_parquet(?)", [files])
        .fetchone()
    )
    assert row is not None
    return int(row[0]), int(row[1])


def ideal_layout(archive: Path, out: Path) -> None:
    """The same rows, rewritten by DuckDB as one file per (kind, dt, hour), sorted in archive order."""
    shutil.rmtree(out, ignore_errors=True)
    (out / "audit").mkdir(parents=True)
    engine = named.LocalEngine(archive)
    engine.connection.execute(
        f"COPY (SELECT * FROM audit ORDER BY cluster, request_received_at, audit_id, stage) TO '{out / 'audit'}' "
        "(FORMAT parquet, COMPRESSION zstd, PARTITION_BY (dt, hour), ROW_GROUP_SIZE 131072)"
    )


def queries(fleet: Fleet) -> dict[str, tuple[named.NamedQuery, list[Any]]]:
    """Three named queries over the simulated day that find the planted incidents of every cluster."""
    window = {"since": format_millis(fleet.start), "until": format_millis(fleet.end)}
    namespace, name = INCIDENT_SECRET
    chosen = {
        "secret_changes": {"namespace": namespace, "name": name},
        "forbidden_bursts": {},
        "identity_timeline": {"identity": INCIDENT_DELETER},
    }
    out = {}
    for query, params in chosen.items():
        loaded = named.load(query)
        out[query] = (loaded, loaded.bind({**window, **params}, now=fleet.end))
    return out


def normalised(rows: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows as a sorted list, arrays sorted: array_agg's order is the scan's, which SQL leaves open."""
    return sorted((tuple(sorted(v) if isinstance(v, list) else v for v in row) for row in rows), key=repr)


Answers = dict[str, dict[str, list[tuple[Any, ...]]]]  # layout -> query -> normalised rows


def query_figures(fleet: Fleet, archives: dict[str, Path]) -> tuple[dict[str, dict[str, float]], Answers]:
    """Best of QUERY_ROUNDS interleaved runs of each query on each archive, and their answers."""
    engines = {name: named.LocalEngine(path) for name, path in archives.items()}
    best: dict[str, dict[str, float]] = {name: {} for name in archives}
    answers: Answers = {name: {} for name in archives}
    for _ in range(QUERY_ROUNDS):
        for query, (loaded, values) in queries(fleet).items():
            for name, engine in engines.items():
                started = time.perf_counter()
                rows = engine.run(loaded.sql, values).rows
                seconds = time.perf_counter() - started
                best[name][query] = min(best[name].get(query, math.inf), seconds)
                answers[name][query] = normalised(rows)
    return best, answers


def check_answers(answers: Answers, baseline: str = "ideal") -> dict[str, int]:
    """Every layout answers every query as the baseline does, and every query finds something."""
    counts = {}
    for query, expected in answers[baseline].items():
        if not expected:
            raise AssertionError(f"{query} found nothing on the {baseline} layout: the figure would measure nothing")
        for name, by_query in answers.items():
            if by_query[query] != expected:
                raise AssertionError(f"{query}: the {name} layout answers differently from the {baseline} one")
        counts[query] = len(expected)
    return counts


def growth_hourly(rounds: list[Round], end: datetime) -> float:
    """Per-event seconds of the last quarter of the day's hourly runs / the first quarter: the runs
    of the day's hours (not those after it, which find only the last stragglers), run 0 left out as
    warm-up."""
    day = [r for r in rounds if r.at <= end + hourly.GRACE]
    costs = [r.seconds / r.rows_read for r in day[1:] if r.rows_read]
    quarter = max(1, len(costs) // 4)
    return statistics.median(costs[-quarter:]) / statistics.median(costs[:quarter])


def growth_per_batch(rounds: list[Round], start: datetime) -> float:
    """Per hour of batches: the per-event seconds of its last two rounds / its first two; the median."""
    by_hour: dict[int, list[Round]] = {}
    for r in rounds:
        if r.rows_read:
            by_hour.setdefault((r.at - start) // timedelta(hours=1), []).append(r)
    ratios = []
    for hour_rounds in by_hour.values():
        if len(hour_rounds) >= 4:
            first, last = hour_rounds[:2], hour_rounds[-2:]
            cost = [sum(r.seconds for r in rs) / sum(r.rows_read for r in rs) for rs in (first, last)]
            ratios.append(cost[1] / cost[0])
    return statistics.median(ratios) if ratios else math.nan


def ledger_entries(layout: Layout) -> int:
    directory = layout.root / "state" / "ledger"
    return sum(len(p.read_bytes().splitlines()) for p in directory.glob("*.jsonl"))


def layout_figures(run: FleetRun, layout: Layout) -> dict[str, Any]:
    files = archive_files(layout.archive)
    hours = run.fleet.hours
    rows, distinct = archived_keys(layout.archive)
    if layout.name == "deployed":
        growth = growth_hourly(layout.rounds, run.fleet.end)
    else:
        growth = growth_per_batch(layout.sqs_rounds, run.fleet.start)
    return {
        "files_per_hour": len(files) / hours,
        "bytes_per_file_median": statistics.median(p.stat().st_size for p in files) if files else 0,
        "compact_cost_growth": growth,
        "ledger_entries_per_day": ledger_entries(layout) * 24 / hours,
        "lock_waits": layout.locks.waits,
        "archived_rows": rows,
        "archived_distinct": distinct,
        "late_compacted": layout.late_compacted,
        "redelivered": layout.redelivered,
        "compact_seconds": sum(r.seconds for r in layout.rounds + layout.sqs_rounds),
    }


def check_exactly_once(run: FleetRun, figures: dict[str, dict[str, Any]]) -> None:
    for name, f in figures.items():
        if not f["archived_rows"] == f["archived_distinct"] == run.events:
            raise AssertionError(
                f"{name}: {f['archived_rows']} rows, {f['archived_distinct']} distinct keys; {run.events} events sent"
            )


def fleet_figures(config: PipelineConfig, fleet: Fleet = Fleet(), work: Path | None = None) -> dict[str, Any]:
    """The fleet part of `make bench` (keys: see the module docstring)."""
    with tempfile.TemporaryDirectory(prefix="auditlake-fleet-") as tmp:
        root = work or Path(tmp)
        print(
            f"fleet: {fleet.clusters} clusters, {fleet.hours} simulated hours, events / {fleet.event_scale:g}, "
            f"raw objects / {fleet.object_scale:g} (time compressed; counts and shapes kept)"
        )
        run = simulate(fleet, config, root)
        layouts = {name: layout_figures(run, layout) for name, layout in run.layouts.items()}
        check_exactly_once(run, layouts)
        ideal_layout(run.layouts["deployed"].archive, root / "ideal")
        archives = {"deployed": run.layouts["deployed"].archive, "ideal": root / "ideal",
                    "per_batch": run.layouts["per_batch"].archive}  # fmt: skip
        seconds, answers = query_figures(fleet, archives)
        found = check_answers(answers)
    deployed, per_batch = layouts["deployed"], layouts["per_batch"]

    def ratio(layout: str) -> dict[str, float]:
        return {q: round(s / seconds["ideal"][q], 3) for q, s in seconds[layout].items()}

    print(
        f"fleet: {run.events:,} events in {sum(run.objects.values()):,} raw objects ({run.objects}); "
        f"traffic {run.plan_seconds:.0f}s, landing + both compactions {run.simulate_seconds:.0f}s "
        f"(deployed {deployed['compact_seconds']:.0f}s, per batch {per_batch['compact_seconds']:.0f}s); "
        f"answers {found}"
    )

    def layout_figures_of(name: str, suffix: str) -> dict[str, Any]:
        stats = deployed if name == "deployed" else per_batch
        return {
            f"fleet_archive_files_per_hour{suffix}": round(stats["files_per_hour"], 2),
            f"fleet_bytes_per_file_median{suffix}": round(stats["bytes_per_file_median"]),
            f"fleet_compact_cost_growth{suffix}": round(stats["compact_cost_growth"], 3),
            f"fleet_query_seconds{suffix}": {q: round(s, 4) for q, s in seconds[name].items()},
            f"fleet_query_ratio_vs_ideal{suffix}": ratio(name),
            f"fleet_ledger_entries_per_day{suffix}": round(stats["ledger_entries_per_day"]),
            f"fleet_lock_waits{suffix}": stats["lock_waits"],
            f"fleet_partition_busy{suffix}": run.layouts[name].busy,
        }

    return {
        **layout_figures_of("deployed", ""),
        "fleet_events": run.events,
        "fleet_scale": fleet.event_scale,
        "fleet_objects_scale": fleet.object_scale,
        "fleet_clusters": fleet.clusters,
        "fleet_raw_objects": run.objects,
        "fleet_late_objects_compacted": deployed["late_compacted"],
        "fleet_query_seconds_ideal": {q: round(s, 4) for q, s in seconds["ideal"].items()},
        **layout_figures_of("per_batch", "_per_batch"),
    }
