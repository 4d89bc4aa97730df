"""What ingest reports as metrics: one sink protocol (Powertools Metrics fits it), one set of names."""

from __future__ import annotations

from typing import Protocol

from auditlake.audit.pipeline import BatchResult

# Per-batch outcome -> metric name; the same names for every ingest path, so one dashboard fits all.
BATCH_METRICS = (
    ("accepted", "EventsAccepted"),
    ("quarantined", "EventsQuarantined"),
    ("filtered", "EventsFiltered"),
    ("redacted", "EventsRedacted"),
    ("forbidden", "Forbidden403Seen"),
)


class MetricsSink(Protocol):
    def add_metric(self, name: str, unit: str, value: float) -> None: ...


class NoMetrics:
    def add_metric(self, name: str, unit: str, value: float) -> None:
        return None


def batch_counts(result: BatchResult, quarantined: int | None = None) -> dict[str, int]:
    """``quarantined`` overrides the pipeline's count when the caller refused items before it."""
    return {
        "accepted": result.accepted,
        "quarantined": len(result.failures) if quarantined is None else quarantined,
        "filtered": result.filtered,
        "redacted": result.redacted,
        "forbidden": result.forbidden,
    }


def emit_counts(metrics: MetricsSink, counts: dict[str, int]) -> None:
    for name, metric in BATCH_METRICS:
        metrics.add_metric(metric, "Count", counts[name])
