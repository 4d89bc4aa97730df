"""A page is claimed before it is published, and the claim is a lease until it is confirmed published
(trust/alerts.py): a process killed between its claim and its publish (no ``finally`` runs, no call
releases the claim) must not cost the page. Found by the fault injector (tests/chaos/aws_faults.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from auditlake.trust.alerts import (
    PUBLISH_LEASE_SECONDS,
    AlertError,
    Correlations,
    FindingPages,
    LocalCounter,
    LocalPageClaims,
    forbidden_thresholds,
)
from tests.chaos.aws_faults import Killed
from tests.helpers import ManualClock, Pager, forbidden_matches, forbidden_rules
from tests.unit.test_alerts_rules import finding


def bursts(tmp_path: Path, pager: Pager, clock: ManualClock) -> Correlations:
    return Correlations(LocalCounter(tmp_path / "alerts.json", clock=clock), pager,
                        forbidden_rules().correlations, thresholds=forbidden_thresholds(10, 0))  # fmt: skip


def test_a_burst_whose_pager_died_after_claiming_is_paged_by_a_retry_once_the_claim_lapses(tmp_path: Path) -> None:
    clock, pager = ManualClock(datetime.now(UTC).timestamp()), Pager(die=1)
    alerts = bursts(tmp_path, pager, clock)
    with pytest.raises(Killed):
        alerts.observe(forbidden_matches(10))
    clock.now += 10  # kube-apiserver's first retry: the claim may still be publishing
    with pytest.raises(AlertError, match="being paged by another delivery"):
        alerts.observe(forbidden_matches(10))
    clock.now += PUBLISH_LEASE_SECONDS  # its claimer is dead for sure: the retry takes it over
    assert len(alerts.observe(forbidden_matches(10))) == 1
    assert alerts.observe(forbidden_matches(10)) == []  # confirmed: never again
    assert len(pager.sent) == 1


def test_a_page_published_but_not_confirmed_is_sent_twice_never_zero_times(tmp_path: Path) -> None:
    clock, pager = ManualClock(datetime.now(UTC).timestamp()), Pager()
    alerts = bursts(tmp_path, pager, clock)
    counter = alerts.counter
    assert isinstance(counter, LocalCounter)
    confirm = counter.confirm

    def lost(*_: object) -> None:
        raise AlertError("the confirmation's answer was lost")

    counter.confirm = lost  # type: ignore[method-assign]
    assert len(alerts.observe(forbidden_matches(10))) == 1  # published; the failure is only logged
    counter.confirm = confirm  # type: ignore[method-assign]
    clock.now += PUBLISH_LEASE_SECONDS + 1
    alerts.observe(forbidden_matches(10))
    alerts.observe(forbidden_matches(10))
    assert len(pager.sent) == 2


def test_a_finding_whose_pager_died_after_claiming_is_paged_by_a_retry_once_the_claim_lapses(tmp_path: Path) -> None:
    clock, pager = ManualClock(datetime.now(UTC).timestamp()), Pager(die=1)
    pages = FindingPages(LocalPageClaims(tmp_path / "pages.json", clock=clock), pager, dedup_minutes=60)
    with pytest.raises(Killed):
        pages.observe([finding(1)])
    with pytest.raises(AlertError, match="being paged by another delivery"):
        pages.observe([finding(1)])
    clock.now += PUBLISH_LEASE_SECONDS + 1
    assert len(pages.observe([finding(1)])) == 1
    clock.now += 60  # within the dedup window, confirmed: not again
    assert pages.observe([finding(2)]) == []
    assert len(pager.sent) == 1
