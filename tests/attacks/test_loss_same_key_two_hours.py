"""11.11: the same key (cluster, audit_id, stage) with times in two different hours. Compacted
together, it is archived once. Compacted apart, each copy's anti-join reads only its own hour's
partition, so it is archived twice: the limit the README states ("Each key once, whatever arrives
twice"). kube-apiserver never sends this (a redelivery carries the same times); this test holds the
README to what the code does."""

from __future__ import annotations

from pathlib import Path

from auditlake.jsonio import dumps
from auditlake.landing import encode_lines
from auditlake.stores.local import LocalStore
from tests.attacks.loss import archived, compact, land, record


def copies(lake: Path, *, together: bool) -> int:
    first = record(1, "2026-11-21T12:59:59.999999Z")
    second = {**record(1, "2026-11-21T13:00:00.000000Z"), "ingested_at": "2026-11-21T13:00:01.000000Z"}
    land(lake, encode_lines([dumps(first)]), "first")
    if not together:
        compact(lake)
        for key in list(LocalStore(lake).list("raw/")):
            (lake / key).unlink()  # raw objects expire; only the second arrives at the next compaction
    land(lake, encode_lines([dumps(second)]), "second")
    compact(lake)
    return archived(lake)["audit_id"].to_pylist().count(first["audit_id"])


def test_the_same_key_in_two_hours_compacted_together_is_archived_once(tmp_path: Path) -> None:
    assert copies(tmp_path / "lake", together=True) == 1


def test_the_same_key_in_two_hours_compacted_apart_is_the_stated_limit(tmp_path: Path) -> None:
    assert copies(tmp_path / "lake", together=False) == 2  # README, "Each key once": the limit
