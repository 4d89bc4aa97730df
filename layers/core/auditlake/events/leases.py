"""Poller leases: one poller per cluster at a time, and a checkpoint only its lease holder can move.

The lease and the checkpoint are one record, so taking the lease also loads the checkpoint and
advancing the checkpoint also extends the lease: one write each. Every acquisition increments a
fencing token; ``advance`` succeeds only while the lease is still ours (same holder, same fence,
not expired), so a poller that was paused past its lease and replaced can never move the
checkpoint back or forward. What such a poller already wrote to the raw landing is harmless:
the compactor deduplicates by (cluster, uid, resource_version).

DynamoDB: ``POLLER#<cluster>/LEASE`` in the state table (not the TTL attribute: a checkpoint
never expires). Local: ``<lake>/state/poller/<cluster>.json`` under a file lock.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from auditlake.jsonio import JSONError, dumps, dumps_str, loads
from auditlake.state_table import conditional_write, poller_key


class LeaseError(RuntimeError):
    pass


class LeaseHeld(LeaseError):
    """Another poller holds this cluster's lease."""


class LeaseLost(LeaseError):
    """The lease expired or was taken over: the checkpoint was not moved."""


@dataclass
class Lease:
    cluster: str
    holder: str
    fence: int
    expires_at: float
    checkpoint: dict[str, Any] | None  # as the previous holder left it; None before the first poll


class Leases(Protocol):
    def acquire(self, cluster: str, holder: str, seconds: float) -> Lease: ...

    def advance(self, lease: Lease, checkpoint: dict[str, Any], seconds: float) -> None:
        """Store the checkpoint and extend the lease by ``seconds``; LeaseLost if it is not ours."""
        ...

    def release(self, lease: Lease) -> None: ...


class DynamoLeases:
    def __init__(self, client: Any, table: str, *, clock: Callable[[], float] = time.time) -> None:
        self.client, self.table, self.clock = client, table, clock

    def acquire(self, cluster: str, holder: str, seconds: float) -> Lease:
        now = self.clock()
        answer = conditional_write(
            lambda: self.client.update_item(
                TableName=self.table,
                Key=poller_key(cluster),
                UpdateExpression="SET holder = :h, lease_until = :u, fence = if_not_exists(fence, :z) + :one",
                # The last clause: botocore's retry of this very update after its answer was lost (only
                # this attempt wrote this holder with this lease end); the fence then counts it twice.
                ConditionExpression="attribute_not_exists(pk) OR lease_until <= :now "
                "OR (holder = :h AND lease_until = :u)",
                ExpressionAttributeValues={
                    ":h": {"S": holder},
                    ":u": {"N": f"{now + seconds:.3f}"},
                    ":z": {"N": "0"},
                    ":one": {"N": "1"},
                    ":now": {"N": f"{now:.3f}"},
                },
                ReturnValues="ALL_NEW",
            ),
            LeaseError,
            f"take the lease of {cluster}",
        )
        if answer is None:
            raise LeaseHeld(f"the poller lease of {cluster} is held by another run")
        item = answer["Attributes"]
        checkpoint = loads(item["checkpoint"]["S"].encode()) if "checkpoint" in item else None
        return Lease(cluster, holder, int(item["fence"]["N"]), now + seconds, checkpoint)

    def _owned_update(self, lease: Lease, expression: str, values: dict[str, Any], *, check_expiry: bool,
                      what: str) -> bool:  # fmt: skip
        """An update that only the lease's holder may make; False when it is not theirs any more."""
        condition = "holder = :h AND fence = :f" + (" AND lease_until > :now" if check_expiry else "")
        now = {":now": {"N": f"{self.clock():.3f}"}} if check_expiry else {}
        answer = conditional_write(
            lambda: self.client.update_item(
                TableName=self.table,
                Key=poller_key(lease.cluster),
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeValues={":h": {"S": lease.holder}, ":f": {"N": str(lease.fence)}, **now, **values},
            ),
            LeaseError,
            what,
        )
        return answer is not None

    def advance(self, lease: Lease, checkpoint: dict[str, Any], seconds: float) -> None:
        until = self.clock() + seconds
        values = {":c": {"S": dumps_str(checkpoint)}, ":u": {"N": f"{until:.3f}"}}
        what = f"save the checkpoint of {lease.cluster}"
        if not self._owned_update(lease, "SET checkpoint = :c, lease_until = :u", values, check_expiry=True, what=what):
            raise LeaseLost(f"lost the poller lease of {lease.cluster} (fence {lease.fence})")
        lease.expires_at, lease.checkpoint = until, checkpoint

    def release(self, lease: Lease) -> None:
        # Not ours any more (expired and taken over): nothing to release.
        self._owned_update(lease, "SET lease_until = :z", {":z": {"N": "0"}}, check_expiry=False,
                           what=f"release the lease of {lease.cluster}")  # fmt: skip


class LocalLeases:
    """The same protocol in a directory (``auditlake poll``): several local pollers on one lake agree."""

    def __init__(self, directory: str | os.PathLike[str], *, clock: Callable[[], float] = time.time) -> None:
        self.directory, self.clock = Path(directory), clock

    @contextmanager
    def _record(self, cluster: str) -> Iterator[tuple[Path, dict[str, Any]]]:
        path = self.directory / f"{cluster}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                record = loads(path.read_bytes())
            except FileNotFoundError:
                record = {}
            except JSONError as exc:
                raise LeaseError(f"{path}: {exc.reason}") from None
            yield path, record
        finally:
            os.close(fd)

    @staticmethod
    def _write(path: Path, record: dict[str, Any]) -> None:
        partial = path.with_suffix(".partial")
        partial.write_bytes(dumps(record))
        os.replace(partial, path)

    def acquire(self, cluster: str, holder: str, seconds: float) -> Lease:
        now = self.clock()
        with self._record(cluster) as (path, record):
            if record.get("lease_until", 0) > now:
                raise LeaseHeld(f"the poller lease of {cluster} is held by {record.get('holder')}")
            record.update(holder=holder, lease_until=now + seconds, fence=record.get("fence", 0) + 1)
            self._write(path, record)
        return Lease(cluster, holder, record["fence"], now + seconds, record.get("checkpoint"))

    def _owns(self, record: dict[str, Any], lease: Lease) -> bool:
        return record.get("holder") == lease.holder and record.get("fence") == lease.fence

    def advance(self, lease: Lease, checkpoint: dict[str, Any], seconds: float) -> None:
        now = self.clock()
        with self._record(lease.cluster) as (path, record):
            if not self._owns(record, lease) or record.get("lease_until", 0) <= now:
                raise LeaseLost(f"lost the poller lease of {lease.cluster} (fence {lease.fence})")
            record.update(checkpoint=checkpoint, lease_until=now + seconds)
            self._write(path, record)
        lease.expires_at, lease.checkpoint = now + seconds, checkpoint

    def release(self, lease: Lease) -> None:
        with self._record(lease.cluster) as (path, record):
            if self._owns(record, lease):
                record["lease_until"] = 0
                self._write(path, record)
