"""The Store port: where raw, quarantined and archived objects go. Adapters: S3 and a local directory."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import BinaryIO, Protocol


class StoreError(RuntimeError):
    """Writing or reading failed; the caller answers 5xx (or leaves the message) so it is retried."""


class AlreadyExists(StoreError):
    """A create-only write found the key taken: archive files are never overwritten."""


class Archived(StoreError):
    """The object exists but sits in an archive tier (S3 Glacier Flexible Retrieval or Deep
    Archive, not restored): it cannot be read until it is restored. Its size and write time can."""


class Store(Protocol):
    def put(self, key: str, data: bytes, content_type: str, *, create_only: bool = False) -> None:
        """Durably store ``data`` under ``key``; returns only once the object is readable, whole.
        ``create_only`` refuses to replace an existing object (AlreadyExists)."""
        ...

    def open(self, key: str) -> BinaryIO:
        """A seekable reader (Parquet footers and single columns are read without the whole file)."""
        ...

    def get(self, key: str) -> bytes: ...

    def size(self, key: str) -> int | None:
        """The object's size in bytes; None when there is no such object."""
        ...

    def list(self, prefix: str) -> Iterator[str]:
        """Keys under ``prefix``, in lexicographic order."""
        ...

    def modified(self, key: str) -> datetime | None:
        """When the object was really written (S3 LastModified; a file's ctime, which no one can
        set back or forward without the system clock), UTC; None when there is no such object."""
        ...
