"""Named locks with a lease: one compactor at a time per archive partition.

DynamoDB: a conditional put of ``LOCK#<name>`` that succeeds only if no unexpired lease exists; the
release deletes it only if we still hold it. A holder that dies leaves the lease to expire. The
lease must outlive the holder's longest critical section (the compactor's Lambda timeout), so an
expired lease means its holder is gone.

A table that cannot be reached raises LockError (the key and the conditional write: state_table).

Local: ``flock`` on a file per lock; the operating system releases it if the process dies.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from auditlake.state_table import TTL, conditional_write, lock_key


class LockError(RuntimeError):
    """The lock table could not be reached (not: someone else holds the lock)."""


class Locks(Protocol):
    def acquire(self, name: str, lease_seconds: int) -> str | None:
        """A token if the lock is now ours, None if someone else holds it."""
        ...

    def release(self, name: str, token: str) -> None: ...


class DynamoLocks:
    def __init__(self, client: Any, table: str, *, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.table = table
        self.clock = clock

    def acquire(self, name: str, lease_seconds: int) -> str | None:
        token = secrets.token_hex(16)
        now = int(self.clock())

        def put() -> str:
            self.client.put_item(
                TableName=self.table,
                Item={
                    **lock_key(name),
                    "owner": {"S": token},
                    "expires_at": {"N": str(now + lease_seconds)},
                    TTL: {"N": str(now + lease_seconds + 86400)},  # DynamoDB removes stale items
                },
                # ``#o = :token``: botocore's retry of this very put after its answer was lost (a fresh
                # token per acquire: nobody else's lock matches).
                ConditionExpression="attribute_not_exists(pk) OR expires_at < :now OR #o = :token",
                ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues={":now": {"N": str(now)}, ":token": {"S": token}},
            )
            return token

        return conditional_write(put, LockError, f"take the lock {name}")  # None: someone else holds it

    def release(self, name: str, token: str) -> None:
        delete = partial(
            self.client.delete_item,
            TableName=self.table,
            Key=lock_key(name),
            ConditionExpression="#o = :token",
            ExpressionAttributeNames={"#o": "owner"},
            ExpressionAttributeValues={":token": {"S": token}},
        )
        conditional_write(delete, LockError, f"release the lock {name}")  # refused: lost the lease meanwhile


class LocalLocks:
    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self._held: dict[str, int] = {}

    def acquire(self, name: str, lease_seconds: int) -> str | None:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / (name.replace("/", "_").replace("#", "_") + ".lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        token = secrets.token_hex(8)
        self._held[token] = fd
        return token

    def release(self, name: str, token: str) -> None:
        fd = self._held.pop(token, None)
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
