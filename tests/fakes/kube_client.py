"""A recorded Kubernetes API client for the Events poller (no sockets: the poller core is exercised,
not the network). tests/fakes/kube.py is the fake API server over HTTPS, for the real client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from auditlake.events.poller import DISCOVERY_PATH


class Recording:
    """A recorded API server: list answers and watch streams, replayed in order."""

    verifies_tls = True

    def __init__(self, lists: list[bytes] | None = None, watches: list[list[bytes]] | None = None) -> None:
        self.lists, self.watches = list(lists or []), list(watches or [])

    def get(self, path: str, query: dict[str, Any] | None = None, *, timeout: float = 60.0) -> bytes:
        return b"{}" if path == DISCOVERY_PATH else self.lists.pop(0)

    def stream(self, path: str, query: dict[str, Any], *, timeout: float) -> Iterator[bytes]:
        yield from self.watches.pop(0)
