"""A short fixed-seed pass of the chaos model (tests/chaos/model.py): the deployed pipeline under
AWS and Kubernetes faults and kills, every acknowledged event archived exactly once, verify passing.
``make chaos`` runs it longer with any seed."""

from __future__ import annotations

from tests.chaos.model import run


def test_a_fixed_seed_pass_loses_nothing_duplicates_nothing_and_verifies() -> None:
    stats = run(16, examples=4, steps=12)
    assert stats.lost == 0 and stats.duplicates == 0 and stats.acknowledged_without_store == 0, stats
    assert stats.verify_ok, stats
    assert stats.faults_injected > 0 and stats.kills > 0, stats
    assert stats.events_acknowledged > 0 and stats.events_archived >= stats.events_acknowledged, stats
