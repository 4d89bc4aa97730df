"""The Events poller's figures for `make bench`, on a recorded watch stream (no sockets: the poller
core is measured, not the network).

* poll_events_per_sec - watch lines (ADDED/MODIFIED of the corpus's real Events, made unique)
  through EventsPoller: parse, normalise, serialise, compress, checkpoint; storage discarded.
* poll_ratio_to_ceiling - that rate / orjson loads + dumps + the same zstd compression of the same
  lines, interleaved in the same run.
* poll_state_writes_10_events / poll_state_writes_10000_events - writes to the lease/checkpoint
  store by one poll of 10 and of 10,000 Events: they must not grow with the number of Events.
"""

from __future__ import annotations

import json
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import zstandard

from auditlake.events.leases import LocalLeases
from auditlake.events.normalise import CORE_V1
from auditlake.events.poller import EventsPoller
from auditlake.landing import Landing
from auditlake.stores import Store
from tests.fakes.kube_client import Recording
from tests.fakes.leases import CountingLeases

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus" / "events"
ROUNDS = 5
STREAM_EVENTS = 50_000


def watch_lines(count: int, corpus: Path = CORPUS) -> list[bytes]:
    """``count`` ADDED/MODIFIED lines of real Events, each a new (uid, resourceVersion)."""
    events = [e for p in sorted(corpus.glob("*.eventlist.json")) for e in json.loads(p.read_text())["items"]]
    lines = []
    for n in range(count):
        event = dict(events[n % len(events)], kind="Event", apiVersion="v1")
        event["metadata"] = {**event["metadata"], "uid": f"{event['metadata']['uid']}-{n // len(events)}",
                             "resourceVersion": str(1000 + n)}  # fmt: skip
        lines.append(orjson.dumps({"type": "MODIFIED" if n % 3 else "ADDED", "object": event}))
    return lines


def poll_once(lines: list[bytes], store: Store, leases: LocalLeases) -> int:
    """One poll watching ``lines`` from an existing checkpoint; returns the Events emitted."""
    poller = EventsPoller(Recording(watches=[lines]), Landing(store, "events"), leases, "bench", holder="bench")
    return poller.poll(60, keep_watching=False).emitted


def seed_checkpoint(leases: LocalLeases) -> None:
    lease = leases.acquire("bench", "seed", 60)
    synced = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    leases.advance(lease, {"api": CORE_V1, "resource_version": "999", "synced_at": synced}, 60)
    leases.release(lease)


def ceiling(lines: list[bytes]) -> int:
    out = [orjson.dumps(orjson.loads(line)["object"]) for line in lines]
    return len(zstandard.ZstdCompressor(level=3).compress(b"\n".join(out)))


def polling_figures(store: Store) -> dict[str, Any]:
    lines = watch_lines(STREAM_EVENTS)
    with tempfile.TemporaryDirectory(prefix="auditlake-bench-poll-") as tmp:
        leases = CountingLeases(Path(tmp) / "leases")
        seed_checkpoint(leases)
        times: dict[str, list[float]] = {"poll": [], "ceiling": []}
        for _ in range(ROUNDS):
            started = time.perf_counter()
            assert poll_once(lines, store, leases) == len(lines)
            times["poll"].append(time.perf_counter() - started)
            started = time.perf_counter()
            ceiling(lines)
            times["ceiling"].append(time.perf_counter() - started)
        writes = {}
        for count in (10, 10_000):
            before = leases.writes
            poll_once(lines[:count], store, leases)
            writes[count] = leases.writes - before
    rate = {k: len(lines) / min(v) for k, v in times.items()}
    print(f"poller: {rate['poll']:,.0f} Events/s (ceiling {rate['ceiling']:,.0f}); state writes per poll {writes}")
    return {
        "poll_events_per_sec": round(rate["poll"]),
        "poll_ratio_to_ceiling": round(rate["poll"] / rate["ceiling"], 3),
        "poll_state_writes_10_events": writes[10],
        "poll_state_writes_10000_events": writes[10_000],
    }
