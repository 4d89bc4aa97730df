"""11.8: a raw object of two zstd frames (appended, or written by a streaming compressor). The
one-shot reader stopped after the first frame and the second frame's events were silently lost.
Every frame is read."""

from __future__ import annotations

from pathlib import Path

import zstandard

from tests.attacks.loss import archived, compact, land, lines, manifests, record


def test_every_frame_of_a_raw_object_is_archived(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    first = zstandard.ZstdCompressor().compress(lines(record(1), record(2)))  # records its size
    streamed = zstandard.ZstdCompressor().compressobj()  # does not
    second = streamed.compress(lines(record(3), record(4))) + streamed.flush()
    land(lake, first + second)
    compact(lake)
    assert sorted(archived(lake)["audit_id"].to_pylist()) == [record(n)["audit_id"] for n in (1, 2, 3, 4)]
    assert manifests(lake) == {}


def test_bytes_after_the_last_frame_are_quarantined(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    land(lake, zstandard.ZstdCompressor().compress(lines(record(1))) + b"trailing garbage")
    compact(lake)
    assert archived(lake).num_rows == 0
    ((_, manifest),) = manifests(lake).items()
    assert "not zstd" in manifest["reason"]
