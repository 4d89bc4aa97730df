"""``auditlake ingest``: existing audit log files through the same pipeline as the webhook.

Files are streamed in chunks (one raw object per chunk), so a multi-gigabyte log never sits in
memory. A line that is not JSON is quarantined with its bytes unchanged, with its line number.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path

from .landing import Landing
from .model import SOURCE_FILE
from .parse import EnvelopeError, Line, iter_jsonl, parse_eventlist
from .pipeline import AuditPipeline, ItemFailure
from .timestamps import format_utc

CHUNK_EVENTS = 5000


@dataclass
class IngestStats:
    events: int = 0
    accepted: int = 0
    quarantined: int = 0
    filtered: int = 0
    redacted: int = 0
    forbidden: int = 0
    raw_objects: int = 0

    def add(self, other: IngestStats) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


class FileIngest:
    def __init__(
        self,
        pipeline: AuditPipeline,
        landing: Landing,
        cluster: str,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        chunk_events: int = CHUNK_EVENTS,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.landing = landing
        self.cluster = cluster
        self.clock = clock
        self.chunk_events = chunk_events
        self.progress = progress or (lambda _bytes: None)

    def jsonl(self, path: Path) -> IngestStats:
        stats = IngestStats()
        chunk: list[Line] = []
        with path.open("rb") as handle:
            for line in iter_jsonl(handle):
                chunk.append(line)
                if len(chunk) >= self.chunk_events:
                    stats.add(self._chunk(chunk))
                    self.progress(handle.tell())
                    chunk = []
            if chunk:
                stats.add(self._chunk(chunk))
            self.progress(handle.tell())
        return stats

    def eventlist(self, path: Path) -> IngestStats:
        data = path.read_bytes()
        try:
            items = parse_eventlist(data)
        except EnvelopeError as exc:
            at = self.clock()
            self.landing.quarantine(
                self.cluster, at, _digest(data), source=SOURCE_FILE, reason=exc.reason, payload=data
            )
            self.progress(len(data))
            return IngestStats(events=1, quarantined=1)
        stats = IngestStats()
        for start in range(0, len(items), self.chunk_events):
            part = items[start : start + self.chunk_events]
            lines = [Line(start + i + 1, b"", value=item) for i, item in enumerate(part)]
            stats.add(self._chunk(lines, salt=f"{_digest(data)}:{start}".encode(), whole=data))
        self.progress(len(data))
        return stats

    def _chunk(self, lines: list[Line], salt: bytes = b"", whole: bytes | None = None) -> IngestStats:
        """One raw object. ``whole`` is the complete file when lines carry no bytes of their own."""
        at = self.clock()
        good = [line for line in lines if line.error is None]
        failures = [ItemFailure(line.number, line.error or "", raw=line.raw) for line in lines if line.error]
        result = self.pipeline.process(
            [line.value for line in good],
            cluster=self.cluster,
            source=SOURCE_FILE,
            ingested_at=format_utc(at),
        )
        unreadable = []
        for failure in result.failures:
            line = good[failure.index]
            failure.index = line.number  # report file line numbers
            if not failure.intact:
                unreadable.append(line.raw)
        failures += result.failures
        batch = _digest(salt + b"\n".join(line.raw for line in lines))
        raw_key = self.landing.write_raw(self.cluster, at, batch, result.lines)
        if failures:
            payload = (whole if whole is not None else b"\n".join(unreadable)) if unreadable else None
            self.landing.quarantine(
                self.cluster,
                at,
                batch,
                source=SOURCE_FILE,
                reason=f"{len(failures)} of {len(lines)} lines could not be ingested",
                payload=payload,
                failures=failures,
            )
        return IngestStats(
            events=len(lines),
            accepted=result.accepted,
            quarantined=len(failures),
            filtered=result.filtered,
            redacted=result.redacted,
            forbidden=result.forbidden,
            raw_objects=1 if raw_key else 0,
        )


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]
