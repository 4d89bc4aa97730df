"""A short fixed-seed pass of the chaos model (tests/chaos/model.py): the deployed pipeline under
AWS and Kubernetes faults and kills, every acknowledged event archived exactly once, verify passing.
``make chaos`` runs it longer with any seed."""

from __future__ import annotations

from tests.chaos.model import replay, run
from tests.helpers import corpus_kube_events


def test_a_fixed_seed_pass_loses_nothing_duplicates_nothing_and_verifies() -> None:
    stats = run(16, examples=4, steps=12)
    assert stats.lost == 0 and stats.duplicates == 0 and stats.acknowledged_without_store == 0, stats
    assert stats.verify_ok, stats
    assert stats.faults_injected > 0 and stats.kills > 0, stats
    assert stats.events_acknowledged > 0 and stats.events_archived >= stats.events_acknowledged, stats


def test_a_series_event_recurring_is_archived_at_every_version() -> None:
    """make chaos seeds 1 and 2, shrunk by hand: an Event with a series (events.k8s.io's
    recurrences) recurs twice between polls. Each version must be archived, nothing quarantined (the
    model's recurrences once made an invalid series.lastObservedTime; the poller quarantined that
    version, and the model, owing it, reported it lost)."""
    series = next(n for n, event in enumerate(corpus_kube_events()) if event.get("series"))
    with replay(1) as machine:
        machine.cold_starts()
        machine.archive_is_honest()
        uid = machine.add_event(series)
        machine.recur(uid)
        machine.recur(uid)
        machine._poll(None, remaining_ms=12_500)
        machine.archive_is_honest()
    assert machine.stats.lost == 0 and machine.stats.events_archived == 3, machine.stats
