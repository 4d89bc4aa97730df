"""One landing path: ``land()`` stores a batch, ``failed()`` is the one failure ladder.

Every ingest path (the webhook, the CloudWatch forwarder, file import, the Events poller and Events
file import) reads what it was sent its own way into normalised lines and quarantined items; from
there on they all take the same path, in one fixed order:

1. raw: the lines as one raw object (none when no line was kept);
2. findings: the batch's detection findings (the matches of rules that generate them, evaluated by
   the path before policy and redaction) as one raw object of kind ``findings`` under the batch's
   id (none when nothing matched), so a retry rewrites the same key;
3. quarantine: the items that failed, when any, in one manifest beside it;
4. the post-store hook (``trust.alerts.Watch``: 403 bursts, the cluster's heartbeat), only once all
   are stored, so an alert never names a record or a finding the lake does not hold;
5. counts, then, for a path that reports them, metrics and a log line.

A path answers its sender only after ``land`` returns. When it raises, ``failed`` maps the error to
the outcome the path answers with: StoreError, nothing is acknowledged and the sender retries onto
the same keys (batch ids are content hashes); AlertError, the batch is stored but a burst could not
be paged, and the retry rewrites the same objects and pages once; anything else, the delivery is
quarantined as "internal error" when storage allows, then the path answers with an error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING

from auditlake.jsonio import encode
from auditlake.landing import ItemFailure, Landing
from auditlake.metrics import BATCH_METRICS, MetricsSink, emit_counts
from auditlake.stores import StoreError
from auditlake.trust.alerts import AlertError

if TYPE_CHECKING:
    from auditlake.audit.pipeline import BatchResult
    from auditlake.detect.matches import Match
    from auditlake.trust.alerts import Watch

logger = logging.getLogger(__name__)

INTERNAL_ERROR = "internal error"  # the quarantine reason of a delivery an unexpected error stopped


@dataclass
class IngestStats:
    """What landing one batch, or a run of them (``add``), came to."""

    events: int = 0  # items received; set by the path, which knows how it counts them
    accepted: int = 0
    quarantined: int = 0
    filtered: int = 0
    redacted: int = 0
    forbidden: int = 0
    raw_objects: int = 0
    alerts: int = 0  # 403 bursts reported
    findings: int = 0  # detection findings stored (raw/findings/)

    def add(self, other: IngestStats) -> None:
        """Sum ``other`` into this; a field ``other`` lacks (a subclass's own) adds nothing."""
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name, 0))

    def counts(self) -> dict[str, int]:
        """The per-batch counts every path reports, by metrics.BATCH_METRICS' names and order."""
        return {name: getattr(self, name) for name, _metric in BATCH_METRICS}


@dataclass(frozen=True)
class Batch:
    """One delivery on its way to the landing. ``id`` names its raw object and quarantine manifest
    (``landing.batch_id``: a retry lands on the same keys). ``payload``, for a path that keeps it,
    is the delivery's bytes as received: a quarantine manifest names them by hash, and keeps them
    when nothing in them could be read. ``context`` says where it came from (a log group)."""

    cluster: str
    at: datetime
    id: str
    source: str
    payload: bytes | None = None
    context: Mapping[str, object] | None = None


def quarantine(
    landing: Landing,
    batch: Batch,
    reason: str,
    failures: Sequence[ItemFailure] = (),
    *,
    quarantine_id: str | None = None,
) -> tuple[str, ...]:
    """The batch's quarantine (under ``quarantine_id`` when it is not the batch's own id)."""
    return landing.quarantine(
        batch.cluster,
        batch.at,
        quarantine_id or batch.id,
        source=batch.source,
        reason=reason,
        payload=batch.payload,
        failures=failures,
        context=batch.context,
    )


def land(
    landing: Landing,
    batch: Batch,
    lines: Sequence[bytes],
    failures: Sequence[ItemFailure] = (),
    *,
    reason: str = "",
    quarantine_id: str | None = None,
    result: BatchResult | None = None,
    matches: Sequence[Match] | None = None,
    watch: Watch | None = None,
    metrics: MetricsSink | None = None,
    logged: str = "",
) -> IngestStats:
    """Land ``lines`` (raw), the findings of ``matches`` (raw, kind ``findings``) and ``failures``
    (quarantine, with ``reason``), then call ``watch`` with the batch's 403 records, then count;
    ``metrics`` get the counts and ``logged`` names the log line, for a path that reports per batch.
    ``result`` is the audit pipeline's outcome, when there is one (what was filtered, redacted,
    forbidden, and its matches); ``matches`` are the rule matches of a path without one (Events).
    ``quarantine_id`` names the manifest when a path names its failures apart from its lines (the
    poller). Raises what the store or the hook raise (see ``failed``); the stats' ``events`` are
    left to the path."""
    if matches is None:
        matches = result.matches if result is not None else ()
    raw_key = landing.write_raw(batch.cluster, batch.at, batch.id, lines)
    findings = finding_lines(matches)
    # In the same store as the raw lines (the raw bucket), under the same batch id.
    Landing(landing.store, "findings").write_raw(batch.cluster, batch.at, batch.id, findings)
    if failures:
        quarantine(landing, batch, reason, failures, quarantine_id=quarantine_id)
    published = watch.stored(batch.cluster, matches, metrics) if watch is not None else []
    stats = IngestStats(
        accepted=len(lines),
        quarantined=len(failures),
        filtered=result.filtered if result is not None else 0,
        redacted=result.redacted if result is not None else 0,
        forbidden=result.forbidden if result is not None else 0,
        raw_objects=int(raw_key is not None),
        alerts=len(published),
        findings=len(findings),
    )
    if metrics is not None:
        emit_counts(metrics, stats.counts())
    if logged:
        logger.info(logged, extra={"cluster": batch.cluster, "batch": batch.id, "raw_key": raw_key, **stats.counts()})
    return stats


def finding_lines(matches: Sequence[Match]) -> list[bytes]:
    """The stored lines of the matches that generate findings (a base rule that only feeds a
    correlation does not): ``model.FindingRecord`` as JSON, null columns left out."""
    return [encode(match.finding) for match in matches if match.generate]


class Failure(Enum):
    """What a delivery that could not be landed comes to: (log message, metric). Each path answers
    its sender by it (the webhook with a status code, the forwarder by raising for Lambda's retry)."""

    STORAGE = ("storage failed", "StorageFailures")
    ALERTING = ("alerting failed", "AlertFailures")
    INTERNAL = ("unexpected error", "InternalErrors")


def failed(exc: Exception, metrics: MetricsSink, keep: Callable[[str], object], **where: object) -> Failure:
    """The failure ladder, called where a path catches ``exc``: logged (with ``where``) and counted;
    for an unexpected error the delivery is first kept, ``keep(INTERNAL_ERROR)`` (its quarantine),
    in case no retry ever succeeds. A quarantine that fails too is logged, not raised."""
    if isinstance(exc, StoreError):
        failure = Failure.STORAGE
    elif isinstance(exc, AlertError):
        failure = Failure.ALERTING
    else:
        failure = Failure.INTERNAL
    message, metric = failure.value
    logger.error(message, exc_info=exc, extra=where)
    metrics.add_metric(metric, "Count", 1)
    if failure is Failure.INTERNAL:
        try:
            keep(INTERNAL_ERROR)
        except Exception:
            logger.exception("quarantine failed too", extra=where)
    return failure
