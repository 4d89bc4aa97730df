"""11.8: an empty raw object (zero bytes, or a zstd frame holding no line) was "compacted" into zero
rows with no trace. Each is quarantined, with the reason."""

from __future__ import annotations

from pathlib import Path

import zstandard

from tests.attacks.loss import archived, compact, land, lines, manifests, record


def test_empty_raw_objects_are_quarantined_and_their_neighbours_archived(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    land(lake, b"", "empty")
    land(lake, zstandard.ZstdCompressor().compress(b""), "no-lines")
    land(lake, zstandard.ZstdCompressor().compress(lines(record(1))), "good")
    compact(lake)
    assert archived(lake)["audit_id"].to_pylist() == [record(1)["audit_id"]]
    reasons = sorted(m["reason"] for m in manifests(lake).values())
    assert len(reasons) == 2 and "empty object" in reasons[0] and "no records" in reasons[1]
