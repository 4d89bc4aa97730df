"""The ledger: every archive file the compactor writes, recorded *before* it is written.

The hourly digest seals the files whose real write time (S3 LastModified, a file's ctime) falls
in its window, with what the ledger says of each (key, SHA-256, bytes, rows, event time range).
``written_at`` is stamped just before the entry is recorded, so a file is written within
``SETTLE`` after it: an entry whose file is not there yet is left for the next digest (the
window ends before it); one still without a file after ``SETTLE`` is listed in the digest as
never written, and ``verify`` reports it (a failed write looks like a file removed before it was
sealed). A line that cannot be read (a compactor killed mid-append) is skipped and reported.

DynamoDB: ``LEDGER#<yyyy-mm-ddThh>/<key>`` (the hour the file was written), kept 30 days (the
digest copies what it needs). Local: ``<lake>/state/ledger/<yyyy-mm-ddThh>.jsonl``.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from auditlake.jsonio import dumps, loads
from auditlake.state_table import TTL, ledger_key, ledger_partition
from auditlake.stores import StoreError

KEEP_SECONDS = 30 * 86400
SETTLE = timedelta(minutes=10)  # written_at -> the file written: above the compactor's Lambda timeout


@dataclass(frozen=True)
class Entry:
    key: str  # audit/dt=.../hour=.../<cluster>-<stamp>-<id>.parquet (or events/...)
    sha256: str
    bytes: int
    rows: int
    first_event: str  # the partition time column's range in the file, RFC 3339
    last_event: str
    written_at: str  # when the compactor wrote it, RFC 3339 UTC


def hours(start: datetime, end: datetime) -> Iterator[str]:
    """The ledger hours (``yyyy-mm-ddThh``) that overlap [start, end)."""
    hour = start.replace(minute=0, second=0, microsecond=0)
    while hour < end:
        yield f"{hour:%Y-%m-%dT%H}"
        hour += timedelta(hours=1)


class Ledger(Protocol):
    damaged: list[str]  # entries that could not be read, named (hour file and line, or key)

    def record(self, entry: Entry) -> None: ...

    def entries(self, hour: str) -> list[Entry]: ...

    def first_hour(self) -> str | None:
        """The earliest hour with entries, when the ledger can tell cheaply (None: it cannot)."""
        ...


class DynamoLedger:
    def __init__(self, client: Any, table: str) -> None:
        self.client, self.table = client, table
        self.damaged: list[str] = []

    def record(self, entry: Entry) -> None:
        item = {k: {"N": str(v)} if isinstance(v, int) else {"S": v} for k, v in asdict(entry).items()}
        expires = int(datetime.fromisoformat(entry.written_at.replace("Z", "+00:00")).timestamp()) + KEEP_SECONDS
        try:
            self.client.put_item(
                TableName=self.table,
                Item={**ledger_key(entry.written_at[:13], entry.key), **item, TTL: {"N": str(expires)}},
            )
        except (BotoCoreError, ClientError) as exc:
            raise StoreError(f"cannot record {entry.key} in the ledger: {exc}") from exc

    def first_hour(self) -> str | None:
        return None  # a table scan; the deployed digest starts a day before its first run instead

    def entries(self, hour: str) -> list[Entry]:
        out: list[Entry] = []
        try:
            pages = self.client.get_paginator("query").paginate(
                TableName=self.table,
                KeyConditionExpression="pk = :p",
                ExpressionAttributeValues={":p": {"S": ledger_partition(hour)}},
                ConsistentRead=True,
            )
            for page in pages:
                for item in page.get("Items", ()):
                    try:
                        fields: dict[str, Any] = {k: int(v["N"]) if "N" in v else v["S"] for k, v in item.items()}
                        out.append(Entry(**{k: v for k, v in fields.items() if k not in ("pk", "sk", TTL)}))
                    except (KeyError, TypeError, ValueError) as exc:
                        self.damaged.append(f"{ledger_partition(hour)} {item.get('sk', {}).get('S', '?')}: {exc}")
        except (BotoCoreError, ClientError) as exc:
            raise StoreError(f"cannot read the ledger for {hour}: {exc}") from exc
        return out


class LocalLedger:
    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.damaged: list[str] = []

    def record(self, entry: Entry) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        with (self.directory / f"{entry.written_at[:13]}.jsonl").open("ab+") as handle:  # + : read its end
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)  # compactions in parallel append whole lines
            # A line cut by a killed compactor must not swallow this one: start on a line of its own.
            end = os.fstat(handle.fileno()).st_size
            cut = end > 0 and os.pread(handle.fileno(), 1, end - 1) != b"\n"
            handle.write((b"\n" if cut else b"") + dumps(asdict(entry)) + b"\n")
            handle.flush()
            os.fsync(handle.fileno())

    def first_hour(self) -> str | None:
        return min((p.stem for p in self.directory.glob("*.jsonl")), default=None)

    def entries(self, hour: str) -> list[Entry]:
        try:
            text = (self.directory / f"{hour}.jsonl").read_bytes()
        except FileNotFoundError:
            return []
        out = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                out.append(Entry(**loads(line)))
            except (ValueError, TypeError) as exc:
                self.damaged.append(f"{hour}.jsonl line {number}: {str(exc)[:80]}")
        return out
