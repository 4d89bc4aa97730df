"""Poller leases on DynamoDB (moto server) and in a local directory: one holder at a time, a fence
per acquisition, and a checkpoint only the current holder can move."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from auditlake.events.leases import DynamoLeases, LeaseHeld, LeaseLost, Leases, LocalLeases
from tests.helpers import AwsStack, ManualClock


@pytest.fixture(params=["dynamodb", "local"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[ManualClock], Leases]:
    if request.param == "dynamodb":
        aws: AwsStack = request.getfixturevalue("aws")
        return lambda clock: DynamoLeases(aws.dynamodb, aws.table, clock=clock)
    return lambda clock: LocalLeases(tmp_path / "leases", clock=clock)


def test_one_holder_at_a_time_and_fences_grow(make: Callable[[ManualClock], Leases]) -> None:
    clock = ManualClock(1_000_000.0)
    leases = make(clock)
    first = leases.acquire("prod", "a", 60)
    assert (first.fence, first.checkpoint) == (1, None)
    with pytest.raises(LeaseHeld):
        leases.acquire("prod", "b", 60)
    leases.acquire("staging", "b", 60)  # another cluster is another lease
    leases.advance(first, {"resource_version": "7"}, 60)
    leases.release(first)
    second = leases.acquire("prod", "b", 60)
    assert (second.fence, second.checkpoint) == (2, {"resource_version": "7"})


def test_a_holder_past_its_lease_cannot_move_the_checkpoint(make: Callable[[ManualClock], Leases]) -> None:
    clock = ManualClock(1_000_000.0)
    leases = make(clock)
    stale = leases.acquire("prod", "a", 30)
    clock.now += 31  # paused past its lease
    with pytest.raises(LeaseLost):
        leases.advance(stale, {"resource_version": "9"}, 30)
    fresh = leases.acquire("prod", "b", 30)
    leases.advance(fresh, {"resource_version": "10"}, 30)
    with pytest.raises(LeaseLost):  # even when the new holder's lease lapses, the fence stops it
        clock.now += 31
        leases.advance(stale, {"resource_version": "11"}, 30)
    leases.release(stale)  # releasing someone else's lease does nothing
    assert leases.acquire("prod", "c", 30).checkpoint == {"resource_version": "10"}
