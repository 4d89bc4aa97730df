"""Issue 11.15: 403s from 400 distinct identities a batch, fifteen batches (an attacker rotating
identities to flood the local counter). Each batch reads and writes the counter's state once, whatever
the number of identities and windows it touches; every denial is stored."""

from __future__ import annotations

from pathlib import Path

import pytest

from auditlake.local_lake import LocalLake
from tests.helpers import forbidden_matches, forbidden_rules


def test_a_flood_of_identities_costs_one_read_and_one_write_a_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = LocalLake(tmp_path).alert_counter_file
    io: list[str] = []
    read, write = Path.read_bytes, Path.write_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: io.append(f"read {self.name}") or read(self))
    monkeypatch.setattr(Path, "write_bytes", lambda self, data: io.append(f"write {self.name}") or write(self, data))
    bursts = LocalLake(tmp_path).bursts(correlations=forbidden_rules().correlations)
    for batch in range(15):
        matches = [m for n in range(400) for m in forbidden_matches(1, user=f"rotated-{batch}-{n}", first=n)]
        io.clear()
        assert bursts.observe(matches) == []
        assert io == ["read alerts.json", "write alerts.partial"]
    assert state.stat().st_size > 15 * 400 * 20  # every identity's bucket is counted, none dropped
