"""What evaluating rules gives every ingest path: a ``Match`` per (rule, event), from a ``Detector``.

The audit pipeline calls ``Detector.audit`` on every decoded event before its policy and redaction
(``audit/pipeline.py``), the Events paths call ``Detector.events`` on every Event before it is
normalised; ``ingest/intake.land`` stores the matches' findings with the batch and hands all
matches to the post-store hook (``trust/alerts.Watch``), which counts correlation rules' base
matches and pages findings at or above the alert level.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Match:
    """``rule`` matched one event. ``finding`` is a ``model.FindingRecord``, stored when
    ``generate`` (a base rule only correlations use has ``generate`` False). ``fields`` holds the
    event's values of the fields correlation rules over this rule group or count by (Sigma names),
    each a string or None (a list value joined by ","; never a body value)."""

    rule: str  # the rule's id
    name: str | None  # the rule's name, which correlation rules may refer to instead of the id
    level: str
    generate: bool
    finding: Any
    fields: Mapping[str, str | None]


class Detector(Protocol):
    def audit(self, event: Any, cluster: str, ingested_at: str) -> Sequence[Match]:
        """Matches of one audit event (``audit.schema.AuditEvent``, as decoded), before policy."""
        ...

    def events(self, event: Mapping[str, Any], cluster: str, observed_at: str) -> Sequence[Match]:
        """Matches of one Kubernetes Event (its JSON object, core/v1 or events.k8s.io/v1)."""
        ...
