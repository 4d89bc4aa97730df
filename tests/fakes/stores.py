"""Store doubles (the Store port of auditlake.stores)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import BinaryIO

from auditlake.stores import StoreError


class Discard:
    """A store that keeps nothing: the benchmark measures ingest, not the disk."""

    def put(self, key: str, data: bytes, content_type: str, *, create_only: bool = False) -> None:
        return None

    def open(self, key: str) -> BinaryIO:
        raise StoreError(f"{key}: nothing is kept")

    def get(self, key: str) -> bytes:
        raise StoreError(f"{key}: nothing is kept")

    def size(self, key: str) -> int | None:
        return None

    def modified(self, key: str) -> datetime | None:
        return None

    def list(self, prefix: str) -> Iterator[str]:
        return iter(())
