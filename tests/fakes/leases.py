"""Lease-store doubles (the Events poller's leases and checkpoints)."""

from __future__ import annotations

from typing import Any

from auditlake.events.leases import Lease, LocalLeases


class CountingLeases(LocalLeases):
    """Local leases that count every write to the store."""

    writes = 0

    def acquire(self, cluster: str, holder: str, seconds: float) -> Lease:
        self.writes += 1
        return super().acquire(cluster, holder, seconds)

    def advance(self, lease: Lease, checkpoint: dict[str, Any], seconds: float) -> None:
        self.writes += 1
        super().advance(lease, checkpoint, seconds)

    def release(self, lease: Lease) -> None:
        self.writes += 1
        super().release(lease)
