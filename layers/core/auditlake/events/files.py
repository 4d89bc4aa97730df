"""``auditlake ingest --kind events``: Kubernetes Events from files into the events raw landing.

``kubectl get events -o json`` or ``-o yaml`` (an EventList or List), one Event document, or JSON
Lines of Events, gzip or not (``ingest.inputs``):
each Event is normalised as the poller normalises it and the file lands as one batch through
``intake.land`` (source ``file``). An Event that cannot be normalised, or a line that is not JSON,
is quarantined, redacted as audit items are (only a head that cannot hold a Secret is kept).
With a ``detector``, the Events rules' findings land with the file's batch (``events.normalise``).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from auditlake.audit.parse import iter_decoded
from auditlake.audit.pipeline import quarantine_item
from auditlake.audit.redact import RedactionConfig
from auditlake.events.normalise import api_of, normalise_event
from auditlake.ingest.inputs import InputError, looks_like_yaml, read_input, yaml_document
from auditlake.ingest.intake import Batch, IngestStats, land
from auditlake.ingest.quarantine import Prepared, Reingest, parsed
from auditlake.jsonio import JSONError, dumps, encode, loads
from auditlake.landing import Invalid, ItemFailure, Landing, batch_id
from auditlake.model import SOURCE_FILE
from auditlake.timestamps import format_utc

if TYPE_CHECKING:
    from auditlake.detect.matches import Detector, Match
    from auditlake.trust.alerts import Watch


def ingest_events(
    path: Path,
    landing: Landing,
    cluster: str,
    *,
    clock: Callable[[], datetime] | None = None,
    detector: Detector | None = None,
    watch: Watch | None = None,
) -> IngestStats:
    """Kubernetes Events from a file: ``kubectl get events -o json`` or ``-o yaml`` (an EventList or
    List), one Event document, or JSON Lines of Events, gzip or not. Each becomes a record of the
    events archive. ``events`` counts each Event or unreadable line once."""
    data = read_input(path)
    items: list[tuple[int, Any]] = []
    unreadable: list[ItemFailure] = []
    redaction = RedactionConfig.build()  # failed items are redacted as audit items are
    try:
        document = loads(data)
    except JSONError:
        document = None
    if document is None and looks_like_yaml(data):
        try:
            document = yaml_document(data)
        except InputError as exc:  # kept as audit items are: only a head that cannot hold a Secret
            unreadable.append(quarantine_item(0, str(exc), data, redaction))
    if isinstance(document, dict):
        listed = document.get("items")
        items = list(enumerate(listed)) if isinstance(listed, list) else [(0, document)]
    elif document is None and not unreadable:  # JSON Lines
        for line, value, error in iter_decoded(io.BytesIO(data)):
            if error is None:
                items.append((line.number, value))
            else:
                unreadable.append(quarantine_item(line.number, error, line.raw, redaction))
    else:  # a JSON or YAML value that is not an object: one item, which fails on its own
        items = [(0, document)]
    return land_events(
        items, landing, cluster, batch=batch_id(cluster, SOURCE_FILE, data), unreadable=unreadable,
        clock=clock, detector=detector, watch=watch,
    )  # fmt: skip


def land_events(
    items: list[tuple[int, Any]],
    landing: Landing,
    cluster: str,
    *,
    batch: str,
    unreadable: list[ItemFailure] | None = None,
    source: str = SOURCE_FILE,
    clock: Callable[[], datetime] | None = None,
    detector: Detector | None = None,
    watch: Watch | None = None,
) -> IngestStats:
    """Events given as parsed values (with the position each is reported by), normalised and landed as
    one batch ``batch``; ``unreadable``: what could not even be parsed (quarantined with them)."""
    at = (clock or (lambda: datetime.now(UTC)))()
    lines, failures, matches = normalise_events(items, cluster, at, detector)
    failures = list(unreadable or ()) + failures
    total = len(items) + len(unreadable or ())  # each Event or line once: one that fails is not counted again
    stats = land(
        landing,
        Batch(cluster, at, batch, source),
        lines,
        failures,
        reason=f"{len(failures)} of {total} Events could not be ingested",
        matches=matches,
        watch=watch,
    )
    stats.events = total
    return stats


def normalise_events(
    items: list[tuple[int, Any]], cluster: str, at: datetime, detector: Detector | None = None
) -> tuple[list[bytes], list[ItemFailure], list[Match]]:
    """Each Event normalised as the poller normalises it: the lines, the items that fail (redacted as
    audit items are) and the Events rules' matches."""
    redaction = RedactionConfig.build()
    failures: list[ItemFailure] = []
    lines = []
    matches: list[Match] = []
    observed_at = format_utc(at)
    for number, item in items:
        try:
            if not isinstance(item, dict):
                raise Invalid(f"expected an Event object, got a JSON {type(item).__name__}")
            record = normalise_event(
                item, cluster=cluster, api=api_of(item), observed_at=observed_at, detector=detector, matches=matches
            )
            lines.append(dumps(record))
        except Invalid as exc:
            failures.append(quarantine_item(number, str(exc), encode(item), redaction))
    return lines, failures, matches


def events_reingest(detector: Detector | None = None) -> Reingest:
    """``auditlake quarantine retry`` of Events: the entry's records normalised again (``normalise_events``)."""

    def prepare(records: list[tuple[int, bytes]], cluster: str, _source: str, at: datetime) -> Prepared:
        redaction = RedactionConfig.build()
        values, unreadable = [], []
        for index, value, error in parsed(records):
            if error is None:
                values.append((index, value))
            else:
                raw = dict(records)[index]
                unreadable.append(quarantine_item(index, error, raw, redaction))
        lines, failures, matches = normalise_events(values, cluster, at, detector)
        return Prepared(lines, unreadable + failures, matches=matches)

    return prepare
