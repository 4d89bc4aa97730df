"""The Kubernetes Events poller: list + watch one cluster from its checkpoint into the raw landing.

One poll: take the cluster's lease (which carries the checkpoint), then

* no checkpoint yet: a paginated list (``limit``/``continue``, one consistent snapshot), every
  Event emitted, and the list's resourceVersion becomes the checkpoint;
* otherwise a watch from the checkpoint (bookmarks on, ``timeoutSeconds`` below the time left),
  every ADDED and MODIFIED version emitted (a recurrence is a new resourceVersion), DELETED and
  BOOKMARK only moving the checkpoint;
* 410 Gone (before or during a watch): watch again from the same version, ``GONE_REWATCHES``
  times (in an HA control plane each API server has its own watch cache, and one just restarted
  answers 410 to versions the others still serve: KEP-1904); 410 still: list again and emit what
  the checkpoint had not covered; if the checkpoint is older than the API server's event history
  (``--event-ttl``, 1 h by default) the Events in between may be gone for good, and a
  coverage-gap record says so;
* a transient error (429, 5xx, a connection reset, a watch stream cut: ``KubeError.transient``)
  is retried within the poll, after a doubling pause, and a cut
  watch resumes from the last version it delivered; the poll ends with the error only after
  ``MAX_TRANSIENT_FAILURES`` in a row without progress, or when its budget cannot cover the pause.

Records are written to the raw landing first; only then does the checkpoint move, and only
while the lease is still ours. A crash in between makes the next poll read the same versions
again; the compactor keeps each (cluster, uid, resource_version) once. State writes do not grow
with the number of Events: one to take the lease, one per flush (end of a list or a watch, or
every ``max_buffer`` Events / ``flush_seconds``), one to release it.

Answers are parsed as raw JSON; an Event that cannot be normalised, or a watch line that is not
JSON, is quarantined and the poll goes on.

With a ``detector``, every Event read is evaluated by the Events rules (``events.normalise``) and
each flush stores the findings with its lines (``intake.land``), then hands the matches to the
poller's ``watch`` (findings paging; the poller's watch keeps no heartbeat: Events say nothing of
whether the cluster's audit log still arrives).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from auditlake.clusters.registry import PollConfig
from auditlake.events.api import Gone, KubeError, NotServed
from auditlake.events.leases import Lease, LeaseHeld, Leases
from auditlake.events.normalise import CORE_V1, EVENTS_V1, api_of, normalise_event
from auditlake.ingest.intake import Batch, land, quarantine
from auditlake.jsonio import JSONError, dumps, loads
from auditlake.landing import Invalid, ItemFailure, Landing, batch_id
from auditlake.metrics import MetricsSink, NoMetrics
from auditlake.timestamps import format_utc, parse
from auditlake.trust.liveness import Heartbeats

if TYPE_CHECKING:
    from auditlake.detect.matches import Detector, Match
    from auditlake.trust.alerts import Watch

logger = logging.getLogger(__name__)

SOURCE_POLLER = "poller"
PATHS = {EVENTS_V1: "/apis/events.k8s.io/v1/events", CORE_V1: "/api/v1/events"}
DISCOVERY_PATH = "/apis/events.k8s.io/v1"
# Coverage-gap records share the events archive (so every query and retention rule sees them),
# told apart by this `api` value.
GAP_API = "auditlake/coverage-gap"
LEASE_MARGIN_SECONDS = 30.0  # a poller killed mid-poll frees its cluster this long after its budget
WATCH_MARGIN_SECONDS = 5.0  # time kept after the last watch to flush and release
MIN_WATCH_SECONDS = 2
MAX_WATCH_SECONDS = 300
READ_GRACE_SECONDS = 15.0  # the server ends a watch at timeoutSeconds; the client waits this much longer
HANDLER_RESERVE_SECONDS = 5.0  # of a Lambda invocation, kept to log and flush metrics after the poll
SYNC_REFRESH_SECONDS = 300  # an unchanged checkpoint is saved again only this often
GONE_REWATCHES = 2  # a 410 is watched again this often before relisting (three API servers, HA)
MAX_TRANSIENT_FAILURES = 8  # in a row without progress: then the poll ends and the next one resumes
RETRY_BASE_SECONDS = 0.5  # the pause after a transient error, doubled for each one in a row
RETRY_MAX_SECONDS = 8.0  # and at most this


class EventsSource(Protocol):
    """What the poller needs from an API server (events.api.KubeApi; tests/fakes/kube_client.Recording)."""

    @property
    def verifies_tls(self) -> bool: ...

    def get(self, path: str, query: dict[str, Any] | None = None, *, timeout: float = 60.0) -> bytes: ...

    def stream(self, path: str, query: dict[str, Any], *, timeout: float) -> Iterator[bytes]: ...


@dataclass
class PollStats:
    cluster: str
    api: str = ""
    listed: int = 0  # Events read by lists
    watched: int = 0  # watch lines read (every type)
    emitted: int = 0  # records written to the raw landing
    quarantined: int = 0
    relists: int = 0  # lists after 410 Gone
    retries: int = 0  # requests sent again within the poll after a transient error
    gaps: int = 0  # coverage-gap records written
    raw_objects: int = 0
    findings: int = 0  # detection findings stored
    alerts: int = 0  # alerts the watch published
    state_writes: int = 0
    resource_version: str | None = None  # the checkpoint at the end
    skipped: str | None = None  # why nothing was polled (the lease is held elsewhere)


def newer(version: str, than: str | None) -> bool:
    """Whether a resourceVersion is after the checkpoint. They are etcd revisions (integers) on
    every API server in use; where one is not, emit it anyway (the compactor deduplicates)."""
    if than is None:
        return True
    try:
        return int(version) > int(than)
    except ValueError:
        return True


def _version_of(item: dict[str, Any]) -> str:
    metadata = item.get("metadata")
    version = metadata.get("resourceVersion") if isinstance(metadata, dict) else None
    return version if isinstance(version, str) else ""


def _first_version(item: dict[str, Any]) -> bool:
    """An Event seen the first time (no recurrence yet): a relist cannot have hidden a version of it."""
    count = item.get("count", item.get("deprecatedCount"))
    return (count is None or count in (0, 1)) and not item.get("series")


def gap_record(cluster: str, start: datetime, end: datetime, reason: str, observed_at: str) -> dict[str, Any]:
    """A coverage gap as a row of the events archive: ``first_timestamp``..``last_timestamp``."""
    first, last = format_utc(start), format_utc(end)
    uid = hashlib.sha256(f"{cluster}\0{first}".encode()).hexdigest()[:32]
    return {
        "cluster": cluster,
        "api": GAP_API,
        "uid": f"gap-{uid}",
        "resource_version": last,
        "type": "Warning",
        "reason": "CoverageGap",
        "note": reason,
        "reporting_controller": "auditlake/events-poller",
        "event_time": first,
        "first_timestamp": first,
        "last_timestamp": last,
        "observed_at": observed_at,
    }


@dataclass
class _Buffer:
    lines: list[bytes] = field(default_factory=list)
    failures: list[ItemFailure] = field(default_factory=list)
    matches: list[Match] = field(default_factory=list)
    index: int = 0


class EventsPoller:
    def __init__(
        self,
        source: EventsSource,
        landing: Landing,
        leases: Leases,
        cluster: str,
        *,
        holder: str,
        event_ttl: int = 3600,
        page_limit: int = 500,
        max_buffer: int = 50_000,
        flush_seconds: float = 30.0,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        metrics: MetricsSink | None = None,
        detector: Detector | None = None,
        watch: Watch | None = None,
    ) -> None:
        self.source, self.landing, self.leases, self.cluster = source, landing, leases, cluster
        self.detector, self.watch = detector, watch
        self.holder, self.event_ttl, self.page_limit = holder, event_ttl, page_limit
        self.max_buffer, self.flush_seconds = max_buffer, flush_seconds
        self.wall, self.monotonic, self.sleep = wall, monotonic, sleep
        self.metrics = metrics or NoMetrics()

    def poll(self, budget: float, *, keep_watching: bool = True) -> PollStats:
        """One poll of at most ``budget`` seconds. Without ``keep_watching``: one list (no checkpoint,
        or after 410) or one watch, then stop (``auditlake poll --once``)."""
        stats = PollStats(self.cluster)
        deadline = self.monotonic() + budget
        try:
            lease = self.leases.acquire(self.cluster, self.holder, budget + LEASE_MARGIN_SECONDS)
        except LeaseHeld as exc:
            stats.skipped = str(exc)
            logger.info("poll skipped", extra={"cluster": self.cluster, "reason": stats.skipped})
            return stats
        stats.state_writes += 1
        try:
            # Inside the try: asking loads the kubeconfig or token, which may fail, and the lease
            # must not stay held by a poll that died (the next one would be skipped until it ends).
            if not self.source.verifies_tls:
                logger.warning(
                    "TLS verification is OFF for this cluster (its insecure flag)", extra={"cluster": self.cluster}
                )
            _Poll(self, lease, stats, deadline).run(keep_watching)
        finally:
            self.leases.release(lease)
            stats.state_writes += 1
            stats.resource_version = (lease.checkpoint or {}).get("resource_version")
            for name, value in (("EventsPolled", stats.emitted), ("EventsQuarantined", stats.quarantined),
                                ("EventsRelists", stats.relists), ("EventsCoverageGaps", stats.gaps),
                                ("Findings", stats.findings)):  # fmt: skip
                self.metrics.add_metric(name, "Count", value)
            logger.info("poll done", extra={k: v for k, v in vars(stats).items() if v not in (None, 0, "")})
        return stats


class _Poll:
    """The state of one poll: its lease, what is buffered, and when it must end."""

    def __init__(self, poller: EventsPoller, lease: Lease, stats: PollStats, deadline: float) -> None:
        self.p, self.lease, self.stats, self.deadline = poller, lease, stats, deadline
        self.buffer = _Buffer()
        self.flushed_at = poller.monotonic()
        self._observed: tuple[int, str] = (-1, "")
        self.superseded = 0  # recurring Events a relist found changed since the checkpoint
        self.position = ""  # the version the current watch has delivered up to (and landed at its end)

    def left(self) -> float:
        return self.deadline - self.p.monotonic()

    def run(self, keep_watching: bool) -> None:
        checkpoint = self.lease.checkpoint or {}
        api: str | None = checkpoint.get("api")
        version: str | None = checkpoint.get("resource_version")
        listing = version is None  # a list is due: the first poll, or a watch's version is gone
        failures = 0  # transient errors in a row without progress
        gone_at, gone_times = "", 0  # the version watches answered 410 to, how often in a row
        self.position = version or ""
        while True:
            try:
                if api is None:
                    api = self.discover()
                self.stats.api = api
                if listing or version is None:
                    version = self.position = self.list(api, version)  # from the checkpoint on
                    listing, failures = False, 0
                    if not keep_watching:
                        return
                if self.left() - WATCH_MARGIN_SECONDS < MIN_WATCH_SECONDS:
                    return
                timeout = int(min(self.left() - WATCH_MARGIN_SECONDS, MAX_WATCH_SECONDS))
                version, lines = self.watch(api, version, timeout)
                failures, gone_times = 0, 0
                if lines == 0 or not keep_watching:  # nothing at all in it: do not spin
                    return
            except NotServed:
                if api == CORE_V1:
                    raise
                api = self.stats.api = CORE_V1  # events.k8s.io/v1 went away: same objects, same versions
            except KubeError as exc:
                if self.position != version:  # the watch delivered (and landed) this far: resume there
                    version, failures = self.position, 0
                if not isinstance(exc, Gone) or listing:
                    failures = self.retry_or_raise(exc, failures)
                elif (gone_times := gone_times + 1 if gone_at == version else 1) <= GONE_REWATCHES:
                    # Another API server's (or a warmer) watch cache may still have it.
                    gone_at = version
                    logger.warning("resourceVersion expired: watching again",
                                   extra={"cluster": self.p.cluster, "error": str(exc)})  # fmt: skip
                else:
                    logger.warning("resourceVersion expired again: listing again",
                                   extra={"cluster": self.p.cluster, "error": str(exc)})  # fmt: skip
                    self.stats.relists += 1
                    listing = True

    def retry_or_raise(self, exc: KubeError, failures: int) -> int:
        """After a transient error (or a list whose continue token expired twice: it starts over),
        pause, doubling with each failure in a row, and return the failures in a row; raise ``exc``
        when it is not transient, after too many in a row, or when the pause would eat the time kept
        to flush and release."""
        failures += 1
        pause = min(RETRY_BASE_SECONDS * 2 ** (failures - 1), RETRY_MAX_SECONDS)
        retryable = exc.transient or isinstance(exc, Gone)
        if not retryable or failures > MAX_TRANSIENT_FAILURES or self.left() - pause < WATCH_MARGIN_SECONDS:
            raise exc
        logger.warning("transient API error: trying again", extra={"cluster": self.p.cluster, "error": str(exc),
                                                                   "failures": failures, "pause": pause})  # fmt: skip
        self.stats.retries += 1
        self.p.sleep(pause)
        return failures

    def discover(self) -> str:
        """events.k8s.io/v1 when the cluster serves it (Kubernetes 1.19+), else core/v1."""
        try:
            self.p.source.get(DISCOVERY_PATH, timeout=30)
        except NotServed:
            logger.info("events.k8s.io/v1 is not served: reading core/v1 Events", extra={"cluster": self.p.cluster})
            return CORE_V1
        return EVENTS_V1

    # ------------------------------------------------------------ reading

    def observed_at(self) -> str:
        """Now, formatted at most once a second (a watch delivers thousands of Events a second)."""
        second = int(self.p.monotonic())
        if second != self._observed[0]:
            self._observed = (second, format_utc(self.p.wall()))
        return self._observed[1]

    def emit(self, obj: Any, api: str) -> None:
        buffer = self.buffer
        buffer.index += 1
        try:
            record = normalise_event(obj, cluster=self.p.cluster, api=api_of(obj, api), observed_at=self.observed_at(),
                                     detector=self.p.detector, matches=buffer.matches)  # fmt: skip
        except Invalid as exc:
            buffer.failures.append(ItemFailure(buffer.index, str(exc), item=obj))
            return
        buffer.lines.append(dumps(record))
        self.stats.emitted += 1

    def list(self, api: str, since: str | None) -> str:
        """List every Event (one snapshot); emit those after ``since``; returns the list's version."""
        started = self.p.wall()
        previous = (self.lease.checkpoint or {}).get("synced_at")
        for attempt in (1, 2):
            try:
                version = self._list_pages(api, since)
                break
            except Gone:
                # The continue token outlived the server's history (a very long list): start over.
                if attempt == 2:
                    raise
        gap = self._gap(previous, started) if previous is not None else None
        if gap is not None:
            self.buffer.lines.append(dumps(gap))
            self.stats.gaps += 1
            logger.warning("coverage gap recorded", extra={"cluster": self.p.cluster, "reason": gap["note"]})
        self.flush(api, version, started)
        return version

    def _gap(self, previous: str, listed_at: datetime) -> dict[str, Any] | None:
        """The coverage-gap record for what a list after the checkpoint ``previous`` cannot prove
        complete, or None."""
        horizon = listed_at - timedelta(seconds=self.p.event_ttl)
        reasons: list[str] = []
        if parse(previous) < horizon:
            reasons.append(
                f"checkpoint from {previous} is older than the API server's event history ({self.p.event_ttl} s): "
                f"Events between then and {format_utc(horizon)} may be lost"
            )
        if self.superseded:
            reasons.append(
                f"410 Gone: {self.superseded} Events changed since the checkpoint and were listed at their latest "
                "version; versions superseded in between (earlier counts) may be missing"
            )
        if not reasons:
            return None
        # Superseded versions may be lost up to the list itself, also when the checkpoint was older than
        # the history: the gap then spans until the list, not only until the horizon (found by the chaos
        # model: a poller away 77 minutes, Events recurring in the last hour).
        end = listed_at if self.superseded else horizon
        return gap_record(self.p.cluster, parse(previous), end, "; ".join(reasons), format_utc(listed_at))

    def _list_pages(self, api: str, since: str | None) -> str:
        query: dict[str, Any] = {"limit": self.p.page_limit}
        self.superseded = 0  # counted again by each attempt
        version: str | None = None
        while True:
            body = self.p.source.get(PATHS[api], query, timeout=60)
            try:
                page = loads(body)
                metadata, items = page["metadata"], page["items"]
                version = version or metadata["resourceVersion"]
            except (JSONError, KeyError, TypeError) as exc:
                self.quarantine_answer(body, f"list answer is not an EventList: {exc}")
                raise KubeError(f"list {PATHS[api]}: the answer is not an EventList") from None
            for item in items or ():
                self.stats.listed += 1
                if since is None or not isinstance(item, dict):
                    self.emit(item, api)
                elif newer(_version_of(item), since):
                    self.superseded += not _first_version(item)
                    self.emit(item, api)
            if len(self.buffer.lines) >= self.p.max_buffer:
                self.flush(api)  # land what was read; the checkpoint waits for the snapshot's end
            token = metadata.get("continue")
            if not token:
                return str(version)
            query["continue"] = token

    def watch(self, api: str, version: str, timeout: int) -> tuple[str, int]:
        """Watch from ``version``; returns the version reached and how many lines were read."""
        query = {"watch": "1", "resourceVersion": version, "allowWatchBookmarks": "true", "timeoutSeconds": timeout}
        count, ended = 0, False
        try:
            for line in self.p.source.stream(PATHS[api], query, timeout=timeout + READ_GRACE_SECONDS):
                count += 1
                self.stats.watched += 1
                version = self.position = self.watch_line(line, api, version)
                if len(self.buffer.lines) >= self.p.max_buffer or (
                    self.p.monotonic() - self.flushed_at >= self.p.flush_seconds
                ):
                    self.flush(api, version, self.p.wall())
            ended = True
        finally:
            # Everything up to `version` is landed before the checkpoint says so, even on 410 or an
            # error; but only a watch the server ended normally proves we were in sync until now.
            self.flush(api, version, self.p.wall() if ended else None)
        return version, count

    def watch_line(self, line: bytes, api: str, version: str) -> str:
        """Handle one watch event; returns the version it brings the watch to."""
        try:
            doc = loads(line)
            kind, obj = doc["type"], doc["object"]
            if not isinstance(obj, dict):
                raise TypeError("object is not a JSON object")
        except (JSONError, KeyError, TypeError) as exc:
            self.buffer.index += 1
            self.buffer.failures.append(ItemFailure(self.buffer.index, f"watch line unreadable: {exc}", raw=line))
            return version
        if kind == "ERROR":
            code, message = obj.get("code"), obj.get("message", "")
            if code == 410:
                raise Gone(f"watch: {message}", 410)
            raise KubeError(f"watch ended with an error: {code} {message}", code if isinstance(code, int) else 0)
        reached = (obj.get("metadata") or {}).get("resourceVersion")
        if kind in ("ADDED", "MODIFIED"):
            self.emit(obj, api)
        elif kind not in ("DELETED", "BOOKMARK"):
            self.buffer.index += 1
            self.buffer.failures.append(ItemFailure(self.buffer.index, f"unknown watch event type {kind!r}", raw=line))
        return reached if isinstance(reached, str) and reached else version

    # ------------------------------------------------------------ writing

    def quarantine_answer(self, body: bytes, reason: str) -> None:
        """An answer the API server sent that could not be read at all: kept whole (its bytes), one item."""
        cluster = self.p.cluster
        batch = Batch(cluster, self.p.wall(), batch_id(cluster, SOURCE_POLLER, body), SOURCE_POLLER, payload=body)
        quarantine(self.p.landing, batch, reason)
        self.stats.quarantined += 1

    def _worth_saving(self, checkpoint: dict[str, Any]) -> bool:
        """A new version always; the same version only to renew an old ``synced_at`` (it bounds a
        future coverage gap; minutes of precision are plenty against an hour of event history)."""
        previous = self.lease.checkpoint
        if previous is None or {**previous, "synced_at": ""} != {**checkpoint, "synced_at": ""}:
            return True
        age = parse(checkpoint["synced_at"]) - parse(previous["synced_at"])
        return age >= timedelta(seconds=SYNC_REFRESH_SECONDS)

    def flush(self, api: str, version: str | None = None, synced_at: datetime | None = None) -> None:
        """Land the buffer (raw first), then move the checkpoint to ``version`` if given; ``synced_at``
        is when we were last known to hold everything (kept from the checkpoint when None)."""
        buffer, at, cluster = self.buffer, self.p.wall(), self.p.cluster
        if buffer.lines or buffer.failures:
            batch = Batch(cluster, at, batch_id(cluster, SOURCE_POLLER, b"\n".join(buffer.lines)), SOURCE_POLLER)
            # The failures are named by themselves and the time, apart from the lines (a flush may have none).
            names = dumps([[f.index, f.reason] for f in buffer.failures]) + at.isoformat().encode()
            reason = f"{len(buffer.failures)} Events could not be read"
            landed = land(self.p.landing, batch, buffer.lines, buffer.failures, reason=reason,
                          quarantine_id=batch_id(cluster, SOURCE_POLLER, names), matches=buffer.matches,
                          watch=self.p.watch)  # fmt: skip
            self.stats.raw_objects += landed.raw_objects
            self.stats.quarantined += landed.quarantined
            self.stats.findings += landed.findings
            self.stats.alerts += landed.alerts
        self.buffer = _Buffer(index=buffer.index)
        self.flushed_at = self.p.monotonic()
        if version is not None:
            previous = (self.lease.checkpoint or {}).get("synced_at")
            synced = previous if synced_at is None and previous else format_utc(synced_at or at)
            checkpoint = {"api": api, "resource_version": version, "synced_at": synced}
            if self._worth_saving(checkpoint):
                self.p.leases.advance(self.lease, checkpoint, max(self.left(), 0) + LEASE_MARGIN_SECONDS)
                self.stats.state_writes += 1


def round_robin(names: list[str], limit: int, minute: int) -> list[str]:
    """The clusters minute ``minute`` starts: all of them when there are at most ``limit``, else the
    ``limit`` from position ``minute * limit`` (mod their number) of ``names`` on, wrapping around.
    Any ceil(K/N) consecutive minutes thus start each of K clusters at least once; stateless, so a
    repeated or retried schedule invocation of the same minute starts the same clusters."""
    if len(names) <= limit:
        return list(names)
    start = minute * limit % len(names)
    return [names[(start + i) % len(names)] for i in range(limit)]


class PollerFleet:
    """The deployed poller: the schedule fans out one invocation per registered cluster, so 100
    clusters do not wait on each other; each invocation polls one. Credentials and connections are
    kept per cluster for the life of the process (warm invocations reuse tokens until their TTL).

    Each poll runs most of a minute, so the fan-out is what the poller takes of the account's Lambda
    concurrency (10 on a new account, shared with the webhook and the compactor): at most
    ``max_fanout`` polls start per minute, round-robin over the clusters by the schedule's minute.
    A cluster that waits resumes from its checkpoint; one that waits longer than its API server
    keeps Events (``--event-ttl``, 1 h by default) gets a coverage-gap record."""

    def __init__(
        self,
        registry: Any,
        landing: Landing,
        leases: Leases,
        connect: Callable[[PollConfig], EventsSource],
        *,
        metrics: MetricsSink | None = None,
        heartbeats: Heartbeats | None = None,
        silence_minutes: int = 30,
        invoker: Any = None,  # a Lambda client: the schedule starts one invocation per cluster with it
        max_fanout: int = 10,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),  # when the schedule's event has no time
        detector: Detector | None = None,
        watch: Watch | None = None,  # findings paging; no heartbeats (see the module's docstring)
        sleep: Callable[[float], None] = time.sleep,  # the pause before a request sent again
    ) -> None:
        if max_fanout < 1:
            raise ValueError("max_fanout must be at least 1")
        self.registry, self.landing, self.leases, self.connect = registry, landing, leases, connect
        self.metrics = metrics or NoMetrics()
        self.heartbeats, self.silence_minutes = heartbeats, silence_minutes
        self.invoker, self.max_fanout, self.clock = invoker, max_fanout, clock
        self._sources: dict[str, tuple[PollConfig, EventsSource]] = {}
        self.detector, self.watch, self.sleep = detector, watch, sleep

    def handle(
        self, event: Mapping[str, Any], *, function_arn: str, seconds_left: float, request_id: str
    ) -> dict[str, Any]:
        """One Lambda invocation: the schedule's (no cluster) fans out to ``function_arn``, one
        asynchronous invocation per cluster started this minute; ``{"cluster": name}`` polls that
        cluster until ``HANDLER_RESERVE_SECONDS`` before the invocation's end."""
        if "cluster" not in event:

            def invoke(name: str) -> object:
                payload = dumps({"cluster": name})
                return self.invoker.invoke(FunctionName=function_arn, InvocationType="Event", Payload=payload)

            return {"dispatched": self.dispatch(invoke, at=self._scheduled(event))}
        stats = self.poll(str(event["cluster"]), seconds_left - HANDLER_RESERVE_SECONDS, holder=request_id)
        return vars(stats)

    def _scheduled(self, event: Mapping[str, Any]) -> datetime:
        """The minute the schedule fired for (EventBridge's ``time``: the same on a retry), else now."""
        value = event.get("time")
        if isinstance(value, str):
            try:
                return parse(value)
            except ValueError:
                logger.warning("schedule time unreadable: using the clock", extra={"time": value})
        return self.clock()

    def dispatch(self, invoke: Callable[[str], object], *, at: datetime | None = None) -> list[str]:
        """Start the polls of the minute ``at`` (``invoke`` must not wait for them): every cluster, or
        ``max_fanout`` of them round-robin; returns the clusters started."""
        names = sorted(self.registry.polled())
        minute = int((at or self.clock()).timestamp() // 60)
        started = round_robin(names, self.max_fanout, minute)
        for name in started:
            invoke(name)
        metrics = self.metrics
        deferred = len(names) - len(started)
        metrics.add_metric("PollsDispatched", "Count", len(started))
        metrics.add_metric("PollsDeferred", "Count", deferred)
        logger.info("polls dispatched", extra={"clusters": len(started)})
        if deferred:
            # Waiting is safe up to the API server's Events history (1 h by default): past it, Events
            # are lost, and the poll that resumes records the gap. Raise PollerMaxFanOut (and the
            # account's Lambda concurrency) well before every cluster's turn comes that rarely.
            every = -(-len(names) // self.max_fanout)
            logger.warning("polls deferred: more clusters than PollerMaxFanOut",
                           extra={"clusters": len(names), "dispatched": len(started), "deferred": deferred,
                                  "max_fanout": self.max_fanout, "each_polled_every_minutes": every})  # fmt: skip
        if self.heartbeats is not None:  # the same schedule keeps the dead-man switch
            silent = self.heartbeats.silent(self.silence_minutes)
            metrics.add_metric("SilentClusters", "Count", len(silent))
            if silent:
                logger.warning("clusters silent", extra={"clusters": silent, "minutes": self.silence_minutes})
        return started

    def poll(self, cluster: str, budget: float, holder: str) -> PollStats:
        config = self.registry.poll_config(cluster)
        if config is None:
            raise ValueError(f"cluster {cluster!r} is not registered for Events polling")
        cached = self._sources.get(cluster)
        if cached is None or cached[0] != config:  # new, or its registry entry changed
            cached = self._sources[cluster] = (config, self.connect(config))
        poller = EventsPoller(
            cached[1], self.landing, self.leases, cluster, holder=holder, event_ttl=config.event_ttl,
            metrics=self.metrics, detector=self.detector, watch=self.watch, sleep=self.sleep,
        )  # fmt: skip
        return poller.poll(budget)
