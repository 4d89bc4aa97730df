"""``auditlake ingest --kind events``: Kubernetes Events from files into the events raw landing.

``kubectl get events -o json`` (an EventList or List), one Event document, or JSON Lines of Events:
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
from auditlake.events.normalise import CORE_V1, api_of, normalise_event
from auditlake.ingest.intake import Batch, IngestStats, land
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
    redaction = RedactionConfig.build()  # failed items are redacted as audit items are
    if document is None:  # JSON Lines
        for line, value, error in iter_decoded(io.BytesIO(data)):
            if error is None:
                items.append((line.number, value))
            else:  # redacted as audit items are: only a head that cannot hold a Secret is kept
                failures.append(quarantine_item(line.number, error, line.raw, redaction))
    lines = []
    matches: list[Match] = []
    observed_at = format_utc(at)
    for number, item in items:
        try:
            api = api_of(item) if isinstance(item, dict) else CORE_V1
            record = normalise_event(
                item, cluster=cluster, api=api, observed_at=observed_at, detector=detector, matches=matches
            )
            lines.append(dumps(record))
        except Invalid as exc:
            failures.append(quarantine_item(number, str(exc), encode(item), redaction))
    stats = land(
        landing,
        Batch(cluster, at, batch_id(cluster, SOURCE_FILE, data), SOURCE_FILE),
        lines,
        failures,
        reason=f"{len(failures)} of {len(items) + len(failures)} Events could not be ingested",
        matches=matches,
        watch=watch,
    )
    stats.events = len(items) + len(failures)
    return stats
