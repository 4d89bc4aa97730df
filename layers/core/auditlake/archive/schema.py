"""Arrow schemas of the archive, derived from model.py (the one place the columns are defined).

Two schemas per kind: ``read`` for raw NDJSON lines (timestamps as written: microseconds) and
``archive`` for Parquet (timestamps in milliseconds, the precision Athena reads from Parquet).
"""

from __future__ import annotations

from functools import cache

import pyarrow as pa

from auditlake.model import ArchiveKind

_READ = {
    "string": pa.string(),
    "json": pa.string(),
    "int32": pa.int32(),
    "timestamp": pa.timestamp("us"),
    "list<string>": pa.list_(pa.string()),
}
ARCHIVE_TIMESTAMP = pa.timestamp("ms")


@cache
def read_schema(kind: ArchiveKind) -> pa.Schema:
    return pa.schema([(name, _READ[type_]) for name, type_ in kind.columns])


@cache
def archive_schema(kind: ArchiveKind) -> pa.Schema:
    return pa.schema(
        [(name, ARCHIVE_TIMESTAMP if type_ == "timestamp" else _READ[type_]) for name, type_ in kind.columns]
    )


@cache
def timestamp_columns(kind: ArchiveKind) -> tuple[str, ...]:
    return tuple(name for name, type_ in kind.columns if type_ == "timestamp")
