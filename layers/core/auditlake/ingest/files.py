"""``auditlake ingest``: existing audit log files through the same pipeline as the webhook.

Files are streamed in chunks (one raw object per chunk), so a multi-gigabyte log never sits in
memory; a gzip file (by its magic bytes) is read gunzipped (``ingest.inputs``). A line that is not
JSON (a last line cut short by a crash or a rotation) is quarantined with
its line number, only up to its first body (see ``audit.pipeline.quarantine_item``). Each chunk lands
through ``intake.land``. Kubernetes Events files are ``events.files``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from auditlake.audit.parse import EnvelopeError, Line, eventlist_raw_items, iter_lines, top_kind
from auditlake.audit.pipeline import AuditPipeline, quarantine_item, refused_items
from auditlake.audit.redact import RedactionConfig
from auditlake.ingest.inputs import InputError, open_input, read_input
from auditlake.ingest.intake import Batch, IngestStats, land, quarantine
from auditlake.jsonio import encode
from auditlake.landing import ItemFailure, Landing, batch_id
from auditlake.model import SOURCE_FILE
from auditlake.timestamps import format_utc
from auditlake.trust.alerts import Watch

CHUNK_EVENTS = 5000


class CutInput(InputError):
    """A gzip file whose stream ends early: ``stats`` counts what was read before it and landed."""

    def __init__(self, reason: str, stats: IngestStats) -> None:
        super().__init__(reason)
        self.stats = stats


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
        """One Event per line, as the audit log backend writes; a line may also hold an EventList.
        A gzip file is read gunzipped; when its stream is cut short, what came before lands and
        ``CutInput`` (with those counts) says so."""
        stats = IngestStats()
        raws: list[Any] = []
        numbers: list[int] = []
        refused: list[ItemFailure] = []
        with open_input(path) as handle:
            try:
                for line in iter_lines(handle):
                    self._line(line, raws, numbers, refused)
                    if len(raws) >= self.chunk_events:
                        stats.add(self._chunk(raws, numbers, refused))
                        raws, numbers, refused = [], [], []
                        self.progress(handle.tell())
            except InputError as exc:
                # A file still being written or rotated: what was read lands, then the caller hears the rest did not.
                if raws or refused:
                    stats.add(self._chunk(raws, numbers, refused))
                raise CutInput(str(exc), stats) from None
            if raws or refused:
                stats.add(self._chunk(raws, numbers, refused))
            self.progress(handle.tell())
        return stats

    def _line(self, line: Line, raws: list[Any], numbers: list[int], refused: list[ItemFailure]) -> None:
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
                return
            raws += items
            numbers += [line.number] * len(items)
        else:
            raws.append(line.raw)
            numbers.append(line.number)

    def eventlist(self, path: Path) -> IngestStats:
        """A file holding one JSON document: an EventList (a saved webhook body) or a single Event."""
        data = read_input(path)
        try:
            items = eventlist_raw_items(data, single_event=True)
        except EnvelopeError as exc:
            refused = refused_items(data, exc, self._redaction())
            batch = Batch(self.cluster, self.clock(), batch_id(self.cluster, SOURCE_FILE, data), SOURCE_FILE, data)
            quarantine(self.landing, batch, exc.reason, refused or ())
            self.progress(path.stat().st_size)
            return IngestStats(events=max(1, len(refused or ())), quarantined=max(1, len(refused or ())))
        stats = IngestStats()
        for start in range(0, len(items), self.chunk_events):
            part = items[start : start + self.chunk_events]
            stats.add(self._chunk(part, range(start, start + len(part)), []))
        self.progress(path.stat().st_size)
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
        stats = land(
            self.landing,
            Batch(self.cluster, at, batch_id(self.cluster, SOURCE_FILE, payload), SOURCE_FILE),
            result.lines,
            failures,
            reason=f"{len(failures)} of {len(raws) + len(refused)} items could not be ingested",
            result=result,
            watch=self.watch,
        )
        stats.events = len(raws) + len(refused)
        return stats
