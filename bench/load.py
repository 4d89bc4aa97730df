"""The audit webhook under load (issue 16, item 5): ``auditlake serve`` and the Lambda handler, each
under ``SENDERS`` concurrent senders for ``DURATION_SECONDS``, then proven lossless after compaction.

Senders are threads that behave like kube-apiserver's webhook backend: one batch at a time, an
EventList of 1..``MAX_EVENTS_PER_BATCH`` realistic events (demo.synth.Synth's, each given a fresh,
unique auditID, so every event of the run has its own dedupe key), and a batch answered non-2xx (or
not answered: a reset, a timeout) sent again with the same body, up to ``ATTEMPTS`` attempts with a
backoff growing 1.5x (kube-apiserver waits 10 s first; ``FIRST_BACKOFF_SECONDS`` here, so a 60 s run
sees its retries). A sender stops starting batches at the deadline; the batch in flight finishes.

* **serve**: a real ``auditlake serve`` process (uvicorn, its default policy: keep every event; the
  built-in rules; the local lake in a temporary directory), the senders in this process, each with
  one keep-alive ``http.client`` connection (reopened after an error). Afterwards ``auditlake
  compact`` (compact_pending) on the lake, and its audit archive read back.
* **lambda**: functions/webhook/app.py imported once (tests.helpers.load_function, as a cold start)
  against moto server (ThreadedMotoServer, in a process of its own: in this one it would share the
  handler threads' GIL), and ``SENDERS`` threads calling its ``lambda_handler`` with API Gateway HTTP
  API payload-2.0 events (tests/events/http_api_post.json). One module shared by the threads: this is
  the handler's core (token registry, pipeline, rules, S3 landing, Powertools logging and metrics)
  under concurrent callers inside one process, not 50 warm containers (those would share no
  clients, caches or GIL); every S3 and DynamoDB call is answered by moto, whose time is in the
  figures. Afterwards the compactor core (``Compactor.compact`` on every raw key, as
  assembly.build_compactor builds it) and the audit archive bucket read back.

The phases run one after the other; the two compactions then run side by side (nothing is timed
any more): on moto, compaction reads one raw object per batch at moto's pace, which is most of a
run's time beyond the two phases.

The check (``check``): every event of every batch answered 2xx is archived exactly once by its key
(``lost`` counts those absent, ``duplicates`` the rows beyond the first per key); an event whose
batch was never answered 2xx is not lost when absent (the sender gave up on it; it may be archived:
its batch may have been stored before its answer was lost); an archived event that was never sent
is ``unexpected``. The figures (``load_figures``): serve_events_per_sec (events acknowledged / the
phase's wall time), serve_p50_ms, serve_p99_ms (per HTTP attempt, from sending the request to
reading the whole answer), serve_batches, serve_ratio_to_ingest_core (serve's rate / the same
webhook core, ``AuditWebhook.handle`` as ``auditlake serve`` builds it, landing in a local lake, on
the first batches the senders sent, one thread, no HTTP: the best of two rounds just before the
phase and one just after, in the same run), lambda_events_per_sec, lambda_p50_ms, lambda_p99_ms
(per handler call), lambda_batches, load_lost and load_duplicates (sums over both),
load_unexpected, load_retries (attempts after the first, both), lambda_handler_errors (invocations
that raised, answered 500 as API Gateway does: see ``lambda_connect``), load_senders, load_seconds.
``LoadError`` is raised when the check fails.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import math
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from auditlake.demo.synth import Synth
from auditlake.jsonio import dumps

ROOT = Path(__file__).resolve().parents[1]
DURATION_SECONDS = 60.0
SENDERS = 50
MAX_EVENTS_PER_BATCH = 100
ATTEMPTS = 5  # kube-apiserver's webhook backend: 5 attempts, then the batch is dropped
FIRST_BACKOFF_SECONDS = 0.1  # kube-apiserver: 10 s; scaled down so a 60 s run sees retries happen
BACKOFF_FACTOR = 1.5
REQUEST_TIMEOUT_SECONDS = 60.0
POOL_MINUTES, POOL_RATE, POOL_SEED = 10, 20, 16  # ~12,000 realistic events, re-keyed into every batch
CORE_BATCHES_PER_SENDER = 4  # the baseline's bodies: the first batches each sender sent
CLUSTER = "load"
TOKEN = "alk_load-bench-token"  # a throwaway token for a lake that lives for one run
_PLACEHOLDER = "\x00auditID\x00"
_HEAD = b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":['

Post = Callable[[bytes], int]  # one attempt: the HTTP status (0: no answer)


class LoadError(RuntimeError):
    """The no-loss / no-duplicate check failed, or a phase could not run."""


# ---------------------------------------------------------------- bodies


def pool_items(start: datetime, minutes: float = POOL_MINUTES, rate: float = POOL_RATE) -> list[tuple[bytes, bytes]]:
    """Synth's events serialised as EventList items, each split around its auditID's value (so a batch
    is a join, not a re-serialisation: the senders must not be the bottleneck)."""
    items = []
    marker = dumps(_PLACEHOLDER)
    for event in Synth(minutes=minutes, rate=rate, seed=POOL_SEED, start=start).events():
        item = {k: v for k, v in event.items() if k not in ("kind", "apiVersion")}
        item["auditID"] = _PLACEHOLDER
        before, after = dumps(item).split(marker)
        items.append((before, after))
    return items


class Bodies:
    """One sender's batches: deterministic for (``sender``, ``seed``), every event with an auditID
    of its own (the sender number and a counter, UUID-shaped)."""

    def __init__(self, items: Sequence[tuple[bytes, bytes]], sender: int, seed: int) -> None:
        self.items, self.sender, self.seed = items, sender, seed
        self.rng = random.Random(seed * 1_000_003 + sender)  # reproducible traffic
        self.count = 0

    def audit_id(self, n: int) -> str:
        return f"{self.seed & 0xFFFFFFFF:08x}-{self.sender & 0xFFFF:04x}-4000-8000-{n:012x}"

    def next(self) -> tuple[bytes, list[str]]:
        size = self.rng.randint(1, MAX_EVENTS_PER_BATCH)
        first = self.rng.randrange(len(self.items))
        ids = [self.audit_id(self.count + i) for i in range(size)]
        self.count += size
        parts = []
        for i, audit_id in enumerate(ids):
            before, after = self.items[(first + i) % len(self.items)]
            parts.append(before + b'"' + audit_id.encode() + b'"' + after)
        return _HEAD + b",".join(parts) + b"]}", ids


# ---------------------------------------------------------------- senders


@dataclass
class SenderLog:
    """What senders saw: every attempt's latency, the batches and events answered 2xx, those given up."""

    latencies: list[float] = field(default_factory=list)  # seconds, one per attempt
    batches: int = 0  # answered 2xx
    failed_batches: int = 0  # not answered 2xx after ATTEMPTS attempts
    retries: int = 0  # attempts after a batch's first
    statuses: Counter[int] = field(default_factory=Counter)  # per attempt; 0: no answer
    acknowledged: list[str] = field(default_factory=list)
    unacknowledged: list[str] = field(default_factory=list)

    @property
    def events(self) -> int:
        return len(self.acknowledged)

    def merge(self, other: SenderLog) -> None:
        self.latencies += other.latencies
        self.batches += other.batches
        self.failed_batches += other.failed_batches
        self.retries += other.retries
        self.statuses.update(other.statuses)
        self.acknowledged += other.acknowledged
        self.unacknowledged += other.unacknowledged


def send_until(
    post: Post,
    bodies: Bodies,
    deadline: float,
    *,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
    attempts: int = ATTEMPTS,
) -> SenderLog:
    """Send batches one after the other until ``deadline`` (of ``clock``); each one is retried with
    the same body, as kube-apiserver does, until a 2xx or ``attempts`` attempts."""
    log = SenderLog()
    while clock() < deadline:
        body, ids = bodies.next()
        delay = FIRST_BACKOFF_SECONDS
        for attempt in range(1, attempts + 1):
            started = clock()
            try:
                status = post(body)
            except (OSError, http.client.HTTPException):
                status = 0  # a reset or a timeout: "did it happen?" is unknown, so the batch is sent again
            log.latencies.append(clock() - started)
            log.statuses[status] += 1
            if 200 <= status < 300:
                log.batches += 1
                log.acknowledged += ids
                break
            if attempt < attempts:
                log.retries += 1
                sleep(delay)
                delay *= BACKOFF_FACTOR
        else:
            log.failed_batches += 1
            log.unacknowledged += ids
    return log


def run_senders(connect: Callable[[int], tuple[Post, Callable[[], None]]], bodies: list[Bodies], duration: float,
                *, sleep: Callable[[float], None] = time.sleep) -> tuple[SenderLog, float]:  # fmt: skip
    """One thread per ``bodies``, each with its own ``connect(sender)`` (a post and a close), all
    started together; the merged log and the wall time from the start to the last one's end.
    ``sleep`` is the senders' backoff."""
    logs: list[SenderLog | BaseException] = [SenderLog() for _ in bodies]
    barrier = threading.Barrier(len(bodies) + 1)
    deadline = [0.0]

    def sender(number: int) -> None:
        post, close = connect(number)
        try:
            barrier.wait()
            logs[number] = send_until(post, bodies[number], deadline[0], sleep=sleep)
        except BaseException as exc:  # reported below: a sender that died must fail the run
            logs[number] = exc
        finally:
            close()

    threads = [threading.Thread(target=sender, args=(n,), name=f"sender-{n}") for n in range(len(bodies))]
    for thread in threads:
        thread.start()
    started = time.perf_counter()
    deadline[0] = started + duration
    barrier.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    merged = SenderLog()
    for log in logs:
        if isinstance(log, BaseException):
            raise LoadError(f"a sender failed: {log!r}") from log
        merged.merge(log)
    return merged, elapsed


# ---------------------------------------------------------------- the check


@dataclass(frozen=True)
class Check:
    lost: int  # acknowledged, not archived
    duplicates: int  # archived rows beyond the first of their key
    unexpected: int  # archived, never sent
    archived: int  # archived rows


def check(acknowledged: Iterable[str], unacknowledged: Iterable[str], archived: Iterable[str]) -> Check:
    """The exactly-once check by key: see the module docstring."""
    counts = Counter(archived)
    acked = set(acknowledged)
    sent = acked | set(unacknowledged)
    return Check(
        lost=sum(1 for key in acked if key not in counts),
        duplicates=sum(n - 1 for n in counts.values()),
        unexpected=sum(n for key, n in counts.items() if key not in sent),
        archived=sum(counts.values()),
    )


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``th percentile (0 < q <= 100): the smallest value with at least q% of the
    values at or below it."""
    if not values:
        raise ValueError("no values")
    if not 0 < q <= 100:
        raise ValueError(f"percentile {q} is not in (0, 100]")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def _audit_keys(table: Any) -> list[str]:
    """The archived rows of the bench's cluster (a pyarrow Table with cluster and audit_id), by the key
    the check counts: every event's auditID is unique, so audit_id is its dedupe key (cluster,
    audit_id, stage) here."""
    import pyarrow.compute as pc

    return [str(key) for key in table.filter(pc.equal(table["cluster"], CLUSTER))["audit_id"].to_pylist()]


# ---------------------------------------------------------------- serve


class _ServeProcess:
    """``auditlake serve`` on a free port; ``ready()`` waits for its "listening on" line (started
    early, its start-up overlaps the bench's own, untimed, preparation)."""

    def __init__(self, lake: Path, token_file: Path, log: Path) -> None:
        self.log_path, self.log = log, log.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "auditlake", "serve", "--lake", str(lake), "--port", "0", "--cluster", CLUSTER,
             "--token-file", str(token_file)],
            stdout=subprocess.PIPE, stderr=self.log, text=True, cwd=ROOT,
        )  # fmt: skip
        self.host, self.port, self.path = "", 0, ""

    def ready(self) -> None:
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if not line.startswith("listening on "):
            self.stop()
            raise LoadError(f"auditlake serve did not start: {line!r}; {self.log_path.read_text()[-2000:]}")
        url = line.removeprefix("listening on ")
        address, path = url.split("://", 1)[1].split("/", 1)
        host, port = address.rsplit(":", 1)
        self.host, self.port, self.path = host, int(port), "/" + path

    def stop(self) -> None:
        self.process.terminate()  # graceful: requests in flight finish
        self.process.communicate(timeout=60)
        self.log.close()


def serve_connect(host: str, port: int, path: str, token: str) -> Callable[[int], tuple[Post, Callable[[], None]]]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def connect(_sender: int) -> tuple[Post, Callable[[], None]]:
        conn = http.client.HTTPConnection(host, port, timeout=REQUEST_TIMEOUT_SECONDS)

        def post(body: bytes) -> int:
            try:
                conn.request("POST", path, body, headers)
                response = conn.getresponse()
                response.read()  # the whole answer: the connection is kept for the next batch
                return response.status
            except (OSError, http.client.HTTPException):
                conn.close()  # reopened by the next request
                raise

        return post, conn.close

    return connect


def ingest_core_rate(bodies: list[tuple[bytes, int]], lakes: list[Path]) -> float:
    """Events per second of the webhook core as ``auditlake serve`` builds it (cli/ingest.py: the
    default pipeline, the built-in rules, the lake's watch, its landing), ``handle`` in one thread;
    the best of one round per lake (a fresh lake each: the same batch again would find its object)."""
    from auditlake.cli.options import build_detector, build_pipeline, lake_watch
    from auditlake.clusters.registry import StaticTokens, token_hash
    from auditlake.ingest.webhook import AuditWebhook
    from auditlake.local_lake import LocalLake
    from auditlake.model import SOURCE_WEBHOOK

    pipeline = build_pipeline(None, True, ())
    pipeline.detector, rules = build_detector(lakes[0], (), False)
    authorization = f"Bearer {TOKEN}"
    best = 0.0
    for lake in lakes:
        webhook = AuditWebhook(
            StaticTokens({token_hash(TOKEN): CLUSTER}),
            pipeline,
            LocalLake(lake).landing("audit"),
            source=SOURCE_WEBHOOK,
            watch=lake_watch(lake, rules=rules),
        )
        started = time.perf_counter()
        for body, _ in bodies:
            status = webhook.handle(authorization, body).status
            if status != 200:
                raise LoadError(f"the ingest core answered {status}")
        best = max(best, sum(n for _, n in bodies) / (time.perf_counter() - started))
    return best


def start_compact(lake: Path, log: Path) -> subprocess.Popen[bytes]:
    """``auditlake compact`` (compact_pending on every raw object of the lake) in its own process, so it
    runs beside the compactor of the Lambda phase: two cores, not one GIL."""
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "auditlake", "compact", "--lake", str(lake)],
                                stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)  # fmt: skip


def local_archive_keys(lake: Path, compacting: subprocess.Popen[bytes], log: Path) -> list[str]:
    """Once ``auditlake compact`` has finished (exit 0: nothing left to retry), the audit archive's keys."""
    import pyarrow.dataset as ds

    from auditlake.local_lake import LocalLake

    if compacting.wait() != 0:
        raise LoadError(f"auditlake compact exited {compacting.returncode}: {log.read_text()[-2000:]}")
    dataset = ds.dataset(LocalLake(lake).archive_dir / "audit", format="parquet", partitioning="hive")
    return _audit_keys(dataset.to_table(columns=["cluster", "audit_id"]))


@dataclass
class Phase:
    """One phase's senders' log, its wall time, and (serve) the core's rate and the lake it filled."""

    log: SenderLog
    elapsed: float
    core: float = 0.0
    lake: Path | None = None
    errors: int = 0  # invocations that raised (lambda)

    def report(self, name: str, archived: list[str]) -> Check:
        result = check(self.log.acknowledged, self.log.unacknowledged, archived)
        log = self.log
        print(
            f"{name}: {log.events:,} events in {log.batches:,} batches acknowledged in {self.elapsed:.1f} s: "
            f"{log.events / self.elapsed:,.0f} events/s; p50 {percentile(log.latencies, 50) * 1000:.1f} ms, "
            f"p99 {percentile(log.latencies, 99) * 1000:.1f} ms; statuses {dict(log.statuses)}, retries "
            f"{log.retries}, given up {log.failed_batches}; archived {result.archived:,}, lost {result.lost}, "
            f"duplicates {result.duplicates}, unexpected {result.unexpected}"
        )
        return result


def serve_phase(work: Path, server: _ServeProcess, lake: Path, items: Sequence[tuple[bytes, bytes]], *,
                duration: float, senders: int, seed: int) -> Phase:  # fmt: skip
    """The ingest core's baseline, then ``server`` under the senders; its lake is left to compact."""
    # The baseline on the bodies the senders send first (regenerated: Bodies is deterministic).
    makers = [Bodies(items, n, seed) for n in range(senders)]
    first = [
        (body, len(ids)) for maker in makers for body, ids in (maker.next() for _ in range(CORE_BATCHES_PER_SENDER))
    ]
    before = ingest_core_rate(first, [work / "core-0", work / "core-1"])
    try:
        server.ready()
        log, elapsed = run_senders(
            serve_connect(server.host, server.port, server.path, TOKEN),
            [Bodies(items, n, seed) for n in range(senders)],
            duration,
        )
    finally:
        server.stop()
    # Once more after: the machine's load changes over a minute; the best of the rounds is the core's.
    core = max(before, ingest_core_rate(first, [work / "core-2"]))
    print(f"serve: the ingest core alone (one thread, no HTTP): {core:,.0f} events/s (before: {before:,.0f})")
    return Phase(log, elapsed, core, lake)


# ---------------------------------------------------------------- the Lambda handler


# moto in server mode (ThreadedMotoServer, as tests/conftest.py starts it), in a process of its own: in
# this one it would share the handler threads' GIL, and the figures would be moto's more than the
# handler's. It prints its address, and stops when its stdin closes.
_MOTO = """
import logging, sys
from moto.server import ThreadedMotoServer
logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line per request
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
host, port = server.get_host_and_port()
print(f"http://{host}:{port}", flush=True)
sys.stdin.read()
server.stop()
"""


def start_moto() -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", _MOTO], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


@contextlib.contextmanager
def _moto_stack(server: subprocess.Popen[str]) -> Iterator[dict[str, str]]:
    """``server`` (start_moto) once it is listening, the environment pointing at it, and the stack's
    buckets and table (as tests/conftest.py makes them); yields the function's environment
    variables. The server stops on leaving."""
    import boto3

    assert server.stdout is not None and server.stdin is not None
    endpoint = server.stdout.readline().strip()
    if not endpoint.startswith("http://"):
        server.kill()
        server.wait()
        raise LoadError(f"moto server did not start: {endpoint!r}")
    from tests.helpers import MOTO_ENV, environment

    try:
        with environment({**MOTO_ENV, "AWS_ENDPOINT_URL": endpoint}):
            s3, dynamodb = boto3.client("s3"), boto3.client("dynamodb")
            names = {
                "AUDITLAKE_RAW_BUCKET": "load-raw", "AUDITLAKE_AUDIT_BUCKET": "load-audit",
                "AUDITLAKE_EVENTS_BUCKET": "load-events", "AUDITLAKE_FINDINGS_BUCKET": "load-findings",
            }  # fmt: skip
            for bucket in names.values():
                s3.create_bucket(Bucket=bucket)
            dynamodb.create_table(
                TableName="load-state",
                BillingMode="PAY_PER_REQUEST",
                AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                      {"AttributeName": "sk", "AttributeType": "S"}],
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            )  # fmt: skip
            yield {**names, "AUDITLAKE_STATE_TABLE": "load-state"}
    finally:
        server.stdin.close()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@contextlib.contextmanager
def _quiet_function_output() -> Iterator[None]:
    """The function's Powertools log lines and metrics (one JSON document per invocation, on stdout,
    which Lambda sends to CloudWatch Logs) written to /dev/null: still produced, not shown; and the
    auditlake loggers the function reconfigured at import given back their settings afterwards."""
    loggers = {
        name: logging.getLogger(name) for name in list(logging.root.manager.loggerDict) if name.startswith("auditlake")
    }
    loggers["auditlake"] = logging.getLogger("auditlake")
    saved = {name: (list(lg.handlers), lg.level, lg.propagate) for name, lg in loggers.items()}
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), warnings.catch_warnings():
        # Powertools' Metrics is one object per module: with threads sharing the module, one call's
        # flush publishes another's metrics and that one finds none left (and warns). A container
        # runs one invocation at a time, so deployed this does not happen.
        warnings.filterwarnings("ignore", "No application metrics to publish", UserWarning)
        try:
            yield
        finally:
            for name in list(logging.root.manager.loggerDict):
                if name.startswith("auditlake"):
                    lg = logging.getLogger(name)
                    lg.handlers, lg.level, lg.propagate = saved.get(name, ([], logging.NOTSET, True))


def lambda_connect(handler: Callable[[dict[str, Any], Any], dict[str, Any]], token: str,
                   errors: Counter[str]) -> Callable[[int], tuple[Post, Callable[[], None]]]:  # fmt: skip
    """Senders that invoke ``handler`` as API Gateway does. An invocation that raises is answered 500,
    as API Gateway answers a function error (the sender retries it), and counted in ``errors`` by
    exception type: with one module shared by threads, Powertools' Metrics (one metric set per
    process) can be flushed by one call while another adds to it ("dictionary changed size during
    iteration"): a fault of this harness that a container, one invocation at a time, cannot have;
    it happens after the batch was stored, so it is a lost answer, which the check must survive."""
    import json

    from tests.helpers import LambdaContext, fixture

    template = fixture("http_api_post.json")
    headers = {**template["headers"], "authorization": f"Bearer {token}"}

    def connect(sender: int) -> tuple[Post, Callable[[], None]]:
        calls = [0]

        def post(body: bytes) -> int:
            calls[0] += 1
            request_id = f"{sender:08x}-0000-4000-8000-{calls[0]:012x}"
            context = {**template["requestContext"], "requestId": request_id}
            event = {**template, "headers": headers, "requestContext": context, "body": body.decode()}
            try:
                reply = handler(event, LambdaContext(aws_request_id=request_id))
            except Exception as exc:  # what API Gateway makes of a function error
                errors[type(exc).__name__] += 1
                return 500
            json.loads(reply["body"])  # the answer is read, as API Gateway reads it
            return int(reply["statusCode"])

        return post, lambda: None

    return connect


def s3_archive_keys(env: dict[str, str]) -> list[str]:
    """The compactor core, as the function builds it, on every raw key; then the audit bucket's rows."""
    import boto3
    import pyarrow as pa
    import pyarrow.parquet as pq

    from auditlake.assembly import build_compactor
    from auditlake.settings import Settings
    from auditlake.stores.s3 import S3Store

    s3, dynamodb = boto3.client("s3"), boto3.client("dynamodb")
    settings = Settings.from_env(env)
    raw = S3Store(s3, settings.raw_bucket)
    report = build_compactor(settings, s3=s3, dynamodb=dynamodb).compact(list(raw.list("raw/")))
    if report.failed or report.quarantined:
        raise LoadError(f"compaction left {len(report.failed)} to retry, quarantined {len(report.quarantined)}")
    archive = S3Store(s3, settings.audit_bucket)
    keys: list[str] = []
    for key in archive.list(""):
        if key.endswith(".parquet"):
            keys += _audit_keys(pq.read_table(pa.BufferReader(archive.get(key)), columns=["cluster", "audit_id"]))
    return keys


def lambda_phase(env: dict[str, str], items: Sequence[tuple[bytes, bytes]], duration: float, senders: int,
                 seed: int) -> Phase:  # fmt: skip
    """The webhook function imported on the moto stack of ``env``, its handler under the senders."""
    import boto3
    import pytest

    from auditlake.clusters.registry import DynamoRegistry, token_hash
    from tests.helpers import load_function

    DynamoRegistry(boto3.client("dynamodb"), env["AUDITLAKE_STATE_TABLE"]).add_cluster(
        CLUSTER, token_hash(TOKEN), created_at=datetime.now(UTC).isoformat()
    )
    patch = pytest.MonkeyPatch()  # load_function sets the function's environment through it
    errors: Counter[str] = Counter()
    try:
        with _quiet_function_output():
            app = load_function(patch, "webhook", env)
            log, elapsed = run_senders(
                lambda_connect(app.lambda_handler, TOKEN, errors),
                [Bodies(items, senders + n, seed) for n in range(senders)],  # auditIDs of their own
                duration,
            )
    finally:
        patch.undo()
    if errors:
        print(f"lambda handler: invocations that raised (answered 500, retried): {dict(errors)}")
    return Phase(log, elapsed, errors=sum(errors.values()))


# ---------------------------------------------------------------- figures


def load_figures(duration: float = DURATION_SECONDS, senders: int = SENDERS, seed: int = POOL_SEED) -> dict[str, Any]:
    """Both phases one after the other (never at once: they would share this machine's two cores),
    then both compactions side by side (nothing is timed any more), the check, and the figures of
    the module docstring. Raises LoadError when an acknowledged event is lost or archived twice, or
    an event never sent is archived."""
    with tempfile.TemporaryDirectory(prefix="auditlake-load-") as tmp:
        work = Path(tmp)
        # Both servers start first: their start-up overlaps making the traffic, which is not timed.
        lake, token_file = work / "serve-lake", work / "token"
        token_file.write_text(TOKEN + "\n")
        server, moto = _ServeProcess(lake, token_file, work / "serve.log"), start_moto()
        try:
            start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
            items = pool_items(start)
            serve = serve_phase(work, server, lake, items, duration=duration, senders=senders, seed=seed)
        except BaseException:
            moto.kill()
            moto.wait()
            raise
        assert serve.lake is not None
        with _moto_stack(moto) as env:
            lam = lambda_phase(env, items, duration, senders, seed)
            started = time.perf_counter()
            compacting = start_compact(serve.lake, work / "compact.log")
            try:
                lambda_archived = s3_archive_keys(env)
            finally:
                serve_archived = local_archive_keys(serve.lake, compacting, work / "compact.log")
            print(f"load: both compacted and read back in {time.perf_counter() - started:.1f} s")
    s_check = serve.report(f"serve ({senders} senders, HTTP)", serve_archived)
    l_check = lam.report(f"lambda handler ({senders} threads, in-process)", lambda_archived)
    s_rate, l_rate = serve.log.events / serve.elapsed, lam.log.events / lam.elapsed
    figures = {
        "serve_events_per_sec": round(s_rate),
        "serve_p50_ms": round(percentile(serve.log.latencies, 50) * 1000, 1),
        "serve_p99_ms": round(percentile(serve.log.latencies, 99) * 1000, 1),
        "serve_batches": serve.log.batches,
        "serve_ratio_to_ingest_core": round(s_rate / serve.core, 3),
        "lambda_events_per_sec": round(l_rate),
        "lambda_p50_ms": round(percentile(lam.log.latencies, 50) * 1000, 1),
        "lambda_p99_ms": round(percentile(lam.log.latencies, 99) * 1000, 1),
        "lambda_batches": lam.log.batches,
        "load_lost": s_check.lost + l_check.lost,
        "load_duplicates": s_check.duplicates + l_check.duplicates,
        "load_unexpected": s_check.unexpected + l_check.unexpected,
        "load_retries": serve.log.retries + lam.log.retries,
        "lambda_handler_errors": lam.errors,
        "load_senders": senders,
        "load_seconds": duration,
    }
    if figures["load_lost"] or figures["load_duplicates"] or figures["load_unexpected"]:
        raise LoadError(f"the no-loss / no-duplicate check failed: {figures}")
    return figures
