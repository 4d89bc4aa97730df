"""The Store port: where raw and quarantined objects go. Adapters: S3 (boto3) and a local directory."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol


class StoreError(RuntimeError):
    """Writing or reading failed; the caller answers 5xx so the sender retries."""


class Store(Protocol):
    def put(self, key: str, data: bytes, content_type: str) -> None:
        """Durably store ``data`` under ``key``; returns only once the object is readable."""
        ...

    def get(self, key: str) -> bytes: ...

    def list(self, prefix: str) -> Iterator[str]:
        """Keys under ``prefix``, in lexicographic order."""
        ...
