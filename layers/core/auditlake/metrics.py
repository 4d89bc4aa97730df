"""What ingest reports as metrics: one sink protocol (Powertools Metrics fits it), one set of names."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

# Per-batch outcome -> metric name; the same names for every ingest path, so one dashboard fits all.
BATCH_METRICS = (
    ("accepted", "EventsAccepted"),
    ("quarantined", "EventsQuarantined"),
    ("filtered", "EventsFiltered"),
    ("redacted", "EventsRedacted"),
    ("forbidden", "Forbidden403Seen"),
    ("findings", "Findings"),  # detection findings stored with the batch
)


class MetricsSink(Protocol):
    def add_metric(self, name: str, unit: str, value: float) -> None: ...


class NoMetrics:
    def add_metric(self, name: str, unit: str, value: float) -> None:
        return None


def emit_counts(metrics: MetricsSink, counts: Mapping[str, int]) -> None:
    """``counts`` by the outcome names of BATCH_METRICS (``intake.IngestStats.counts``)."""
    for name, metric in BATCH_METRICS:
        metrics.add_metric(metric, "Count", counts[name])
