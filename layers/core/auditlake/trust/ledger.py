"""The ledger: every archive file the compactor writes, recorded *before* it is written, and
marked ``stored`` once its create-only write succeeded (two phases).

The hourly digest seals the files whose real write time (S3 LastModified, a file's ctime) falls
in its window, with what the ledger says of each (key, SHA-256, bytes, rows, event time range).
``written_at`` is stamped just before the entry is recorded, so a file is written within
``SETTLE`` after it: an entry whose file is not there yet is left for the next digest (the
window ends before it). One still without a file after ``SETTLE``:

- marked ``stored``: the file was written and is gone: listed in the digest as ``unwritten``, and
  ``verify`` reports it ``vanished`` (a file removed before it was sealed);
- never marked: a write that failed, or a compactor killed or timed out before its write (its
  raw objects are compacted again by the retry, into another file): listed as ``abandoned``,
  reported, not a finding. The mark follows the write by one call: a compactor killed between the
  two leaves a file, sealed as any other (a present file never needs its mark);
- recorded before marks existed (``stored`` absent): ``unwritten``, as before.

So a file removed before it was sealed passes as abandoned only when its compactor also died
between its write and its mark. A line that cannot be read (a compactor killed mid-append) is
skipped and reported.

DynamoDB: ``LEDGER#<yyyy-mm-ddThh>/<key>`` (the hour the file was written), kept 30 days (the
digest copies what it needs); the mark is an UpdateItem of the same item. Local:
``<lake>/state/ledger/<yyyy-mm-ddThh>.jsonl``, the mark a line ``{"stored": <key>}`` after it.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
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
    # The second phase: False until the file's write succeeded; None: recorded before marks existed.
    stored: bool | None = False

    def sealed(self) -> dict[str, Any]:
        """What a digest seals of it (the mark is the ledger's, not the file's)."""
        fields = asdict(self)
        del fields["stored"]
        return fields


def hours(start: datetime, end: datetime) -> Iterator[str]:
    """The ledger hours (``yyyy-mm-ddThh``) that overlap [start, end)."""
    hour = start.replace(minute=0, second=0, microsecond=0)
    while hour < end:
        yield f"{hour:%Y-%m-%dT%H}"
        hour += timedelta(hours=1)


class Ledger(Protocol):
    damaged: list[str]  # entries that could not be read, named (hour file and line, or key)

    def record(self, entry: Entry) -> None: ...

    def confirm(self, entry: Entry) -> None:
        """The second phase: ``entry``'s file was written."""
        ...

    def entries(self, hour: str) -> list[Entry]: ...

    def first_hour(self) -> str | None:
        """The earliest hour with entries, when the ledger can tell cheaply (None: it cannot)."""
        ...


class DynamoLedger:
    def __init__(self, client: Any, table: str) -> None:
        self.client, self.table = client, table
        self.damaged: list[str] = []

    def record(self, entry: Entry) -> None:
        item = {k: _attribute(v) for k, v in asdict(entry).items() if v is not None}
        expires = int(datetime.fromisoformat(entry.written_at.replace("Z", "+00:00")).timestamp()) + KEEP_SECONDS
        try:
            self.client.put_item(
                TableName=self.table,
                Item={**ledger_key(entry.written_at[:13], entry.key), **item, TTL: {"N": str(expires)}},
            )
        except (BotoCoreError, ClientError) as exc:
            raise StoreError(f"cannot record {entry.key} in the ledger: {exc}") from exc

    def confirm(self, entry: Entry) -> None:
        try:
            self.client.update_item(
                TableName=self.table,
                Key=ledger_key(entry.written_at[:13], entry.key),
                UpdateExpression="SET #s = :t",
                ConditionExpression="attribute_exists(pk)",  # never an item of its own
                ExpressionAttributeNames={"#s": "stored"},  # a name, whatever DynamoDB reserves
                ExpressionAttributeValues={":t": {"BOOL": True}},
            )
        except (BotoCoreError, ClientError) as exc:
            raise StoreError(f"cannot mark {entry.key} stored in the ledger: {exc}") from exc

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
                        fields = {k: _value(v) for k, v in item.items() if k not in ("pk", "sk", TTL)}
                        out.append(Entry(**{"stored": None, **fields}))  # type: ignore[arg-type]
                    except (KeyError, TypeError, ValueError) as exc:
                        self.damaged.append(f"{ledger_partition(hour)} {item.get('sk', {}).get('S', '?')}: {exc}")
        except (BotoCoreError, ClientError) as exc:
            raise StoreError(f"cannot read the ledger for {hour}: {exc}") from exc
        return out


def _attribute(value: str | int | bool) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"BOOL": value}
    return {"N": str(value)} if isinstance(value, int) else {"S": value}


def _value(attribute: dict[str, Any]) -> str | int | bool:
    if "BOOL" in attribute:
        return bool(attribute["BOOL"])
    return int(attribute["N"]) if "N" in attribute else str(attribute["S"])


class LocalLedger:
    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.damaged: list[str] = []

    def record(self, entry: Entry) -> None:
        self._append(entry.written_at[:13], asdict(entry))

    def confirm(self, entry: Entry) -> None:
        self._append(entry.written_at[:13], {"stored": entry.key})

    def _append(self, hour: str, line: dict[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        with (self.directory / f"{hour}.jsonl").open("ab+") as handle:  # + : read its end
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)  # compactions in parallel append whole lines
            # A line cut by a killed compactor must not swallow this one: start on a line of its own.
            end = os.fstat(handle.fileno()).st_size
            cut = end > 0 and os.pread(handle.fileno(), 1, end - 1) != b"\n"
            handle.write((b"\n" if cut else b"") + dumps(line) + b"\n")
            handle.flush()
            os.fsync(handle.fileno())

    def first_hour(self) -> str | None:
        return min((p.stem for p in self.directory.glob("*.jsonl")), default=None)

    def entries(self, hour: str) -> list[Entry]:
        try:
            text = (self.directory / f"{hour}.jsonl").read_bytes()
        except FileNotFoundError:
            return []
        out: list[Entry] = []
        stored: set[str] = set()
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                fields = loads(line)
                if isinstance(fields, dict) and fields.keys() == {"stored"} and isinstance(fields["stored"], str):
                    stored.add(fields["stored"])
                else:
                    out.append(Entry(**{"stored": None, **fields}))
            except (ValueError, TypeError) as exc:
                self.damaged.append(f"{hour}.jsonl line {number}: {str(exc)[:80]}")
        return [replace(entry, stored=True) if entry.key in stored else entry for entry in out]
