"""Checkpoints: where a long-running reader stopped, so it resumes instead of starting over.

Each checkpoint is a small JSON document with a version. ``save`` succeeds only if the stored
version is still the one the caller loaded (optimistic concurrency): two runs over the same
checkpoint cannot both advance it; the second learns at its next save and stops.

DynamoDB: item ``CHECKPOINT#<name>/CHECKPOINT`` in the state table. Local: ``<dir>/<name>.json``,
replaced atomically under a file lock.
"""

from __future__ import annotations

import fcntl
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from auditlake.jsonio import JSONError, dumps, dumps_str, loads
from auditlake.state_table import checkpoint_key, conditional_write


class CheckpointError(RuntimeError):
    pass


class CheckpointConflict(CheckpointError):
    """Someone else saved this checkpoint since we loaded it."""


class Checkpoints(Protocol):
    def load(self, name: str) -> tuple[dict[str, Any] | None, int]:
        """The stored document (None when there is none) and its version (0 when there is none)."""
        ...

    def save(self, name: str, value: dict[str, Any], version: int) -> int:
        """Store ``value`` if the stored version is still ``version``; returns the new version."""
        ...


class DynamoCheckpoints:
    def __init__(self, client: Any, table: str) -> None:
        self.client = client
        self.table = table

    def load(self, name: str) -> tuple[dict[str, Any] | None, int]:
        try:
            item = self.client.get_item(TableName=self.table, Key=checkpoint_key(name), ConsistentRead=True).get("Item")
        except (BotoCoreError, ClientError) as exc:
            raise CheckpointError(f"cannot read checkpoint {name}: {exc}") from exc
        if not item:
            return None, 0
        return loads(item["state"]["S"].encode()), int(item["version"]["N"])

    def save(self, name: str, value: dict[str, Any], version: int) -> int:
        write = uuid.uuid4().hex
        saved = conditional_write(
            lambda: self.client.put_item(
                TableName=self.table,
                Item={
                    **checkpoint_key(name),
                    "state": {"S": dumps_str(value)},
                    "version": {"N": str(version + 1)},
                    "write": {"S": write},
                    "updated_at": {"S": datetime.now(UTC).isoformat()},
                },
                # A stored checkpoint has version >= 1, so version 0 means "none may exist yet".
                # ``#w = :w``: botocore's retry of this very put after its answer was lost.
                ConditionExpression="attribute_not_exists(pk) OR version = :v OR #w = :w",
                ExpressionAttributeNames={"#w": "write"},
                ExpressionAttributeValues={":v": {"N": str(version)}, ":w": {"S": write}},
            ),
            CheckpointError,
            f"save checkpoint {name}",
        )
        if saved is None:
            raise CheckpointConflict(f"checkpoint {name} was advanced by another run")
        return version + 1


class LocalCheckpoints:
    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def _path(self, name: str) -> Path:
        return self.directory / f"{name}.json"

    @contextmanager
    def locked(self, path: Path) -> Iterator[None]:
        """Hold the lock of the checkpoint file ``path`` (its ``.lock`` beside it), as load and save do."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _read(self, path: Path) -> tuple[dict[str, Any] | None, int]:
        try:
            doc = loads(path.read_bytes())
        except FileNotFoundError:
            return None, 0
        except JSONError as exc:
            raise CheckpointError(f"{path}: {exc.reason}") from None
        return doc["state"], int(doc["version"])

    def load(self, name: str) -> tuple[dict[str, Any] | None, int]:
        path = self._path(name)
        with self.locked(path):
            return self._read(path)

    def save(self, name: str, value: dict[str, Any], version: int) -> int:
        path = self._path(name)
        with self.locked(path):
            if self._read(path)[1] != version:
                raise CheckpointConflict(f"checkpoint {name} was advanced by another run")
            partial = path.with_suffix(".partial")
            partial.write_bytes(dumps({"state": value, "version": version + 1}))
            os.replace(partial, path)
        return version + 1
