"""11.8: a raw object cut short (a crashed writer, a partial copy). zstandard's streaming reader
returns what it could from a cut frame and raises nothing, so it was "compacted" into zero rows, with
no quarantine and nothing to retry. It must be quarantined whole, its bytes kept as they were."""

from __future__ import annotations

from pathlib import Path

from auditlake.landing import encode_lines
from auditlake.stores.local import LocalStore
from tests.attacks.loss import archived, compact, land, lines, manifests, record


def test_a_cut_raw_object_is_quarantined_not_compacted_into_nothing(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    whole = encode_lines(lines(*(record(n) for n in range(50))).splitlines())
    cut = whole[: len(whole) * 2 // 3]
    key = land(lake, cut)
    output = compact(lake)
    assert archived(lake).num_rows == 0 and "quarantined objects" in output
    ((name, manifest),) = manifests(lake).items()
    assert manifest["raw_key"] == key and "cut" in manifest["reason"] and ".compact-" in name
    assert LocalStore(lake).get(manifest["object_key"]) == cut  # as it was, for whoever can recover it
