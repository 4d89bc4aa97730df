"""The archive's contract: levels, stages and the columns of a normalised audit record.

Column types use a small vocabulary (``string``, ``int32``, ``timestamp``, ``list<string>``, and
``json`` = a string holding JSON) so the Lambda-side core needs no pyarrow; the Arrow schema and
the Glue tables are derived from this one list.
"""

from __future__ import annotations

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

# Where a record came from (the `source` column).
SOURCE_WEBHOOK: Final = "webhook"
SOURCE_FILE: Final = "file"
