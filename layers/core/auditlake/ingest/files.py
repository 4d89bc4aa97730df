"""``auditlake ingest``: existing audit log files through the same pipeline as the webhook.

Files are streamed in chunks (one raw object per chunk), so a multi-gigabyte log never sits in
memory. A line that is not JSON (a last line cut short by a crash or a rotation) is quarantined with
its line number, only up to its first body (see ``pipeline.quarantine_item``).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from auditlake.audit.normalise import Invalid
from auditlake.audit.parse import EnvelopeError, eventlist_raw_items, iter_decoded, iter_lines, top_kind
from auditlake.audit.pipeline import AuditPipeline, ItemFailure, quarantine_item, refused_items
from auditlake.audit.redact import RedactionConfig
from auditlake.events.normalise import CORE_V1, api_of, normalise_event
from auditlake.jsonio import JSONError, dumps, encode, loads
from auditlake.landing import Landing, batch_id
from auditlake.model import SOURCE_FILE
from auditlake.timestamps import format_utc
from auditlake.trust.alerts import Watch

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
    alerts: int = 0  # 403 bursts reported

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
        watch: Watch | None = None,
    ) -> None:
        self.watch = watch or Watch()
        self.pipeline = pipeline
        self.landing = landing
        self.cluster = cluster
        self.clock = clock
        self.chunk_events = chunk_events
        self.progress = progress or (lambda _bytes: None)

    def jsonl(self, path: Path) -> IngestStats:
        """One Event per line, as the audit log backend writes; a line may also hold an EventList."""
        stats = IngestStats()
        raws: list[Any] = []
        numbers: list[int] = []
        refused: list[ItemFailure] = []
        with path.open("rb") as handle:
            for line in iter_lines(handle):
                # A saved webhook body by its top-level kind: an audit event's body may be an EventList too.
                if b'"EventList"' in line.raw and top_kind(line.raw) == "EventList":
                    try:
                        items = eventlist_raw_items(line.raw)
                    except EnvelopeError as exc:  # its items, or itself, kept redacted; its head if not JSON
                        failures = refused_items(line.raw, exc, self._redaction()) or [
                            quarantine_item(0, exc.reason, line.raw, self._redaction())
                        ]
                        for failure in failures:
                            failure.index = line.number
                        refused += failures
                        continue
                    raws += items
                    numbers += [line.number] * len(items)
                else:
                    raws.append(line.raw)
                    numbers.append(line.number)
                if len(raws) >= self.chunk_events:
                    stats.add(self._chunk(raws, numbers, refused))
                    raws, numbers, refused = [], [], []
                    self.progress(handle.tell())
            if raws or refused:
                stats.add(self._chunk(raws, numbers, refused))
            self.progress(handle.tell())
        return stats

    def eventlist(self, path: Path) -> IngestStats:
        """A file holding one JSON document: an EventList (a saved webhook body) or a single Event."""
        data = path.read_bytes()
        try:
            items = eventlist_raw_items(data, single_event=True)
        except EnvelopeError as exc:
            refused = refused_items(data, exc, self._redaction())
            self.landing.quarantine(
                self.cluster,
                self.clock(),
                batch_id(self.cluster, SOURCE_FILE, data),
                source=SOURCE_FILE,
                reason=exc.reason,
                payload=data,
                failures=refused or (),
            )
            self.progress(len(data))
            return IngestStats(events=max(1, len(refused or ())), quarantined=max(1, len(refused or ())))
        stats = IngestStats()
        for start in range(0, len(items), self.chunk_events):
            part = items[start : start + self.chunk_events]
            stats.add(self._chunk(part, range(start, start + len(part)), []))
        self.progress(len(data))
        return stats

    def _redaction(self) -> RedactionConfig:
        return self.pipeline.config().redaction

    def _chunk(self, raws: Sequence[Any], numbers: Sequence[int], refused: list[ItemFailure]) -> IngestStats:
        """One raw object, and one quarantine manifest if anything failed."""
        at = self.clock()
        result = self.pipeline.items(
            raws, cluster=self.cluster, source=SOURCE_FILE, ingested_at=format_utc(at), numbers=numbers
        )
        failures = refused + result.failures
        payload = b"\n".join(bytes(raw) for raw in raws) + b"".join(encode(f.item) + (f.raw or b"") for f in refused)
        batch = batch_id(self.cluster, SOURCE_FILE, payload)
        raw_key = self.landing.write_raw(self.cluster, at, batch, result.lines)
        alerts = self.watch.stored(self.cluster, result.denials)
        if failures:
            self.landing.quarantine(
                self.cluster,
                at,
                batch,
                source=SOURCE_FILE,
                reason=f"{len(failures)} of {len(raws) + len(refused)} items could not be ingested",
                failures=failures,
            )
        return IngestStats(
            events=len(raws) + len(refused),
            accepted=result.accepted,
            quarantined=len(failures),
            filtered=result.filtered,
            redacted=result.redacted,
            forbidden=result.forbidden,
            raw_objects=1 if raw_key else 0,
            alerts=len(alerts),
        )


def ingest_events(
    path: Path, landing: Landing, cluster: str, *, clock: Callable[[], datetime] | None = None
) -> IngestStats:
    """Kubernetes Events from a file: ``kubectl get events -o json`` (an EventList or List), one Event
    document, or JSON Lines of Events. Each becomes a record of the events archive."""
    at = (clock or (lambda: datetime.now(UTC)))()
    data = path.read_bytes()
    items: list[tuple[int, Any]] = []
    try:
        document = loads(data)
    except JSONError:
        document = None
    if isinstance(document, dict):
        listed = document.get("items")
        items = list(enumerate(listed)) if isinstance(listed, list) else [(0, document)]
    failures: list[ItemFailure] = []
    if document is None:  # JSON Lines
        for line, value, error in iter_decoded(io.BytesIO(data)):
            if error is None:
                items.append((line.number, value))
            else:  # redacted as audit items are: only a head that cannot hold a Secret is kept
                failures.append(quarantine_item(line.number, error, line.raw, RedactionConfig.build()))
    lines = []
    for number, item in items:
        try:
            api = api_of(item) if isinstance(item, dict) else CORE_V1
            lines.append(dumps(normalise_event(item, cluster=cluster, api=api, observed_at=format_utc(at))))
        except Invalid as exc:
            failures.append(quarantine_item(number, str(exc), encode(item), RedactionConfig.build()))
    batch = batch_id(cluster, SOURCE_FILE, data)
    raw_key = landing.write_raw(cluster, at, batch, lines)
    if failures:
        reason = f"{len(failures)} of {len(items) + len(failures)} Events could not be ingested"
        landing.quarantine(cluster, at, batch, source=SOURCE_FILE, reason=reason, failures=failures)
    return IngestStats(
        events=len(items) + len(failures),
        accepted=len(lines),
        quarantined=len(failures),
        raw_objects=int(bool(raw_key)),
    )
