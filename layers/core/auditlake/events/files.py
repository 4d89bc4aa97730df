"""``auditlake ingest --kind events``: Kubernetes Events from files into the events raw landing.

``kubectl get events -o json`` (an EventList or List), one Event document, or JSON Lines of Events:
each Event is normalised as the poller normalises it and the file lands as one batch through
``intake.land`` (source ``file``). An Event that cannot be normalised, or a line that is not JSON,
is quarantined, redacted as audit items are (only a head that cannot hold a Secret is kept).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from auditlake.audit.parse import iter_decoded
from auditlake.audit.pipeline import quarantine_item
from auditlake.audit.redact import RedactionConfig
from auditlake.events.normalise import CORE_V1, api_of, normalise_event
from auditlake.ingest.intake import Batch, IngestStats, land
from auditlake.jsonio import JSONError, dumps, encode, loads
from auditlake.landing import Invalid, ItemFailure, Landing, batch_id
from auditlake.model import SOURCE_FILE
from auditlake.timestamps import format_utc


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
    redaction = RedactionConfig.build()  # failed items are redacted as audit items are
    if document is None:  # JSON Lines
        for line, value, error in iter_decoded(io.BytesIO(data)):
            if error is None:
                items.append((line.number, value))
            else:  # redacted as audit items are: only a head that cannot hold a Secret is kept
                failures.append(quarantine_item(line.number, error, line.raw, redaction))
    lines = []
    for number, item in items:
        try:
            api = api_of(item) if isinstance(item, dict) else CORE_V1
            lines.append(dumps(normalise_event(item, cluster=cluster, api=api, observed_at=format_utc(at))))
        except Invalid as exc:
            failures.append(quarantine_item(number, str(exc), encode(item), redaction))
    stats = land(
        landing,
        Batch(cluster, at, batch_id(cluster, SOURCE_FILE, data), SOURCE_FILE),
        lines,
        failures,
        reason=f"{len(failures)} of {len(items) + len(failures)} Events could not be ingested",
    )
    stats.events = len(items) + len(failures)
    return stats
