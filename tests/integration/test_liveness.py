"""The dead-man switch on DynamoDB (moto server): deliveries beat, the schedule counts the silent."""

from __future__ import annotations

from typing import Any

from auditlake.events.poller import PollerFleet
from auditlake.trust.liveness import Heartbeats
from tests.helpers import AwsStack, ManualClock


def test_a_cluster_quiet_for_too_long_is_silent(aws: AwsStack) -> None:
    clock = ManualClock(1_800_000_000.0)
    beats = Heartbeats(aws.dynamodb, aws.table, clock=clock)
    beats.beat("prod")
    beats.beat("edge")
    clock.now += 20 * 60
    beats.beat("edge")
    assert beats.silent(30) == []
    clock.now += 15 * 60  # prod: 35 minutes, edge: 15
    assert beats.silent(30) == ["prod"]


def test_beats_are_written_at_most_once_a_minute_and_never_fail_delivery(aws: AwsStack) -> None:
    clock = ManualClock(1_800_000_000.0)
    calls: list[Any] = []

    class Counting:
        def update_item(self, **kwargs: Any) -> None:
            calls.append(kwargs)
            aws.dynamodb.update_item(**kwargs)

    beats = Heartbeats(Counting(), aws.table, clock=clock)
    for _ in range(100):
        beats.beat("prod")
    assert len(calls) == 1
    broken = Heartbeats(aws.dynamodb, "no-such-table", clock=clock)
    broken.beat("prod")  # logged, not raised


def test_the_schedule_publishes_the_silent_count(aws: AwsStack) -> None:
    clock = ManualClock(1_800_000_000.0)
    beats = Heartbeats(aws.dynamodb, aws.table, clock=clock)
    beats.beat("prod")
    clock.now += 3600
    published: list[tuple[str, float]] = []

    class Metrics:
        def add_metric(self, name: str, unit: str, value: float) -> None:
            published.append((name, value))

    class Registry:
        def polled(self) -> dict[str, Any]:
            return {}

    fleet = PollerFleet(Registry(), None, None, lambda config: None, metrics=Metrics(),  # type: ignore[arg-type]
                        heartbeats=beats, silence_minutes=30)  # fmt: skip
    assert fleet.dispatch(lambda name: None) == []
    assert ("SilentClusters", 1) in published
