"""The archive's contract: levels, stages, and the columns of audit and Events records.

Column types use a small vocabulary (``string``, ``int32``, ``timestamp``, ``list<string>``, and
``json`` = a string holding JSON) so the Lambda-side core needs no pyarrow; the Arrow schemas
(``archive/schema.py``) and the Glue tables in template.yaml are derived from these lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import msgspec

LEVELS: Final = ("None", "Metadata", "Request", "RequestResponse")
LEVEL_RANK: Final = {name: rank for rank, name in enumerate(LEVELS)}
STAGES: Final = ("RequestReceived", "ResponseStarted", "ResponseComplete", "Panic")

AUDIT_COLUMNS: Final[tuple[tuple[str, str], ...]] = (
    ("cluster", "string"),
    ("source", "string"),
    ("audit_id", "string"),
    ("stage", "string"),
    ("level", "string"),
    ("received_level", "string"),
    ("verb", "string"),
    ("request_uri", "string"),
    ("user_name", "string"),
    ("user_uid", "string"),
    ("user_groups", "list<string>"),
    ("user_extra", "json"),
    ("impersonated_user_name", "string"),
    ("impersonated_user_uid", "string"),
    ("impersonated_user_groups", "list<string>"),
    ("impersonated_user_extra", "json"),
    ("source_ips", "list<string>"),
    ("user_agent", "string"),
    ("object_resource", "string"),
    ("object_subresource", "string"),
    ("object_namespace", "string"),
    ("object_name", "string"),
    ("object_api_group", "string"),
    ("object_api_version", "string"),
    ("object_uid", "string"),
    ("object_resource_version", "string"),
    ("response_code", "int32"),
    ("response_status", "string"),
    ("response_reason", "string"),
    ("response_message", "string"),
    ("response_details", "json"),
    ("request_received_at", "timestamp"),
    ("stage_at", "timestamp"),
    ("authz_decision", "string"),
    ("authz_reason", "string"),
    ("annotations", "json"),
    ("request_object", "json"),
    ("response_object", "json"),
    ("redactions", "list<string>"),
    ("extra", "json"),
    ("ingested_at", "timestamp"),
)

AUDIT_COLUMN_NAMES: Final = tuple(name for name, _ in AUDIT_COLUMNS)

_PYTHON_TYPES: Final[dict[str, Any]] = {
    "string": str,
    "json": str,
    "timestamp": str,  # canonical RFC 3339, microseconds, UTC ("...T12:00:00.000000Z")
    "int32": int,
    "list<string>": list[str],
}

# One raw landing line. Null columns are left out of the line (a reader with the schema sees null).
# Built positionally, in AUDIT_COLUMNS order: keyword construction costs ~15x more per event.
AuditRecord: Any = msgspec.defstruct(
    "AuditRecord",
    [(name, _PYTHON_TYPES[kind] | None, None) for name, kind in AUDIT_COLUMNS],
    omit_defaults=True,
)

EVENT_COLUMNS: Final[tuple[tuple[str, str], ...]] = (
    ("cluster", "string"),
    ("api", "string"),  # events.k8s.io/v1 or v1 (core): which API the poller read it from
    ("uid", "string"),
    ("resource_version", "string"),
    ("namespace", "string"),
    ("name", "string"),
    ("type", "string"),
    ("reason", "string"),
    ("action", "string"),
    ("note", "string"),
    ("regarding_kind", "string"),
    ("regarding_namespace", "string"),
    ("regarding_name", "string"),
    ("regarding_uid", "string"),
    ("regarding_api_version", "string"),
    ("regarding_field_path", "string"),
    ("related", "json"),
    ("reporting_controller", "string"),
    ("reporting_instance", "string"),
    ("event_time", "timestamp"),  # when it happened: eventTime, series, lastTimestamp, ... (see events/normalise.py)
    ("first_timestamp", "timestamp"),
    ("last_timestamp", "timestamp"),
    ("count", "int32"),
    ("series_count", "int32"),
    ("series_last_observed", "timestamp"),
    ("extra", "json"),
    ("observed_at", "timestamp"),
)
EVENT_COLUMN_NAMES: Final = tuple(name for name, _ in EVENT_COLUMNS)

# Sigma's levels, lowest first: a finding's ``level`` and the stack's AlertLevel are one of these.
SIGMA_LEVELS: Final = ("informational", "low", "medium", "high", "critical")
SIGMA_LEVEL_RANK: Final = {name: rank for rank, name in enumerate(SIGMA_LEVELS)}

# A detection: one rule matched one event (an audit event, or a Kubernetes Event: then ``audit_id``
# holds the Event's uid and ``verb`` is empty). Never secret material: ``details`` names the body
# keys a rule matched on, never their values (detect/).
FINDING_COLUMNS: Final[tuple[tuple[str, str], ...]] = (
    ("rule_id", "string"),  # the Sigma rule's id
    ("title", "string"),
    ("level", "string"),  # SIGMA_LEVELS
    ("cluster", "string"),
    ("audit_id", "string"),
    ("at", "timestamp"),  # the event's time (requestReceivedTimestamp; an Event's event_time)
    ("identity", "string"),  # user.username (an Event's reporting controller)
    ("verb", "string"),
    ("resource", "string"),  # objectRef.resource[/subresource] (an Event's regarding kind)
    ("namespace", "string"),
    ("name", "string"),
    ("source_ips", "list<string>"),
    ("user_agent", "string"),
    ("details", "json"),  # what matched: {"fields": {path: shown value or "<key matched>"}, ...}
    ("ingested_at", "timestamp"),
)
FINDING_COLUMN_NAMES: Final = tuple(name for name, _ in FINDING_COLUMNS)

# The Glue (Hive) type of each column type.
GLUE_TYPES: Final = {
    "string": "string",
    "json": "string",
    "int32": "int",
    "timestamp": "timestamp",
    "list<string>": "array<string>",
}


@dataclass(frozen=True)
class ArchiveKind:
    """One data class of the archive: its columns, dedupe key, partition time and row order."""

    name: str
    columns: tuple[tuple[str, str], ...]
    key: tuple[str, ...]
    time_column: str
    order: tuple[str, ...]  # within (cluster, hour): time, then the key, for a stable order
    # Among deliveries of one key the first ingested is kept.
    first_of: str


AUDIT = ArchiveKind(
    "audit",
    AUDIT_COLUMNS,
    key=("cluster", "audit_id", "stage"),
    time_column="request_received_at",
    order=("cluster", "request_received_at", "audit_id", "stage"),
    first_of="ingested_at",
)
EVENTS = ArchiveKind(
    "events",
    EVENT_COLUMNS,
    key=("cluster", "uid", "resource_version"),
    time_column="event_time",
    order=("cluster", "event_time", "uid", "resource_version"),
    first_of="observed_at",
)
FINDINGS = ArchiveKind(
    "findings",
    FINDING_COLUMNS,
    key=("cluster", "rule_id", "audit_id"),  # one finding per rule and event, whichever stages matched
    time_column="at",
    order=("cluster", "at", "rule_id", "audit_id"),
    first_of="ingested_at",
)
ARCHIVE_KINDS: Final = {kind.name: kind for kind in (AUDIT, EVENTS, FINDINGS)}

# One finding, as a raw landing line (FINDING_COLUMNS order; null columns left out).
FindingRecord: Any = msgspec.defstruct(
    "FindingRecord",
    [(name, _PYTHON_TYPES[kind] | None, None) for name, kind in FINDING_COLUMNS],
    omit_defaults=True,
)

# Where a record came from (the `source` column).
SOURCE_WEBHOOK: Final = "webhook"
SOURCE_FILE: Final = "file"
SOURCE_CLOUDWATCH: Final = "cloudwatch"  # the EKS subscription and its backfill: the same messages
