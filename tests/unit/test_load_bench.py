"""The load bench's parts that need no sockets (bench/load.py): the senders' retry loop on a hand-moved
clock, the exactly-once check's arithmetic, the percentile, and the bodies' unique auditIDs. No
timing is asserted."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from bench.load import (
    ATTEMPTS,
    BACKOFF_FACTOR,
    FIRST_BACKOFF_SECONDS,
    MAX_EVENTS_PER_BATCH,
    Bodies,
    Check,
    LoadError,
    Post,
    SenderLog,
    check,
    percentile,
    pool_items,
    run_senders,
    send_until,
)

from tests.helpers import ManualClock

START = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)


@pytest.fixture(scope="module")
def items() -> list[tuple[bytes, bytes]]:
    return pool_items(START, minutes=1, rate=5)


def scripted(clock: ManualClock, statuses: list[int | Exception], seconds: float = 0.01) -> tuple[Post, list[bytes]]:
    """A post answering ``statuses`` in turn (an exception is raised), each taking ``seconds``."""
    sent: list[bytes] = []
    answers = iter(statuses)

    def post(body: bytes) -> int:
        sent.append(body)
        clock.now += seconds
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return post, sent


def sleeper(clock: ManualClock, slept: list[float]) -> Callable[[float], None]:
    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += seconds

    return sleep


# ---------------------------------------------------------------- the check


def test_an_acknowledged_event_missing_is_lost_and_one_never_acknowledged_is_not() -> None:
    assert check(["a", "b", "c"], ["x", "y"], ["a", "c", "y"]) == Check(lost=1, duplicates=0, unexpected=0, archived=3)


def test_every_row_beyond_the_first_of_a_key_is_a_duplicate() -> None:
    # "y" was never acknowledged (its answer was lost), yet stored twice: still a duplicate.
    assert check(["a", "b"], ["y"], ["a", "a", "a", "b", "y", "y"]) == Check(0, 3, 0, 6)


def test_an_archived_event_never_sent_is_unexpected() -> None:
    assert check(["a"], [], ["a", "z", "z"]) == Check(lost=0, duplicates=1, unexpected=2, archived=3)


def test_nothing_sent_nothing_archived_is_clean() -> None:
    assert check([], [], []) == Check(0, 0, 0, 0)


# ---------------------------------------------------------------- percentile


@pytest.mark.parametrize(
    ("q", "expected"),
    [(50, 5.0), (90, 9.0), (99, 10.0), (100, 10.0), (10, 1.0), (1, 1.0), (11, 2.0)],
)
def test_nearest_rank_percentile(q: float, expected: float) -> None:
    values = [7.0, 1.0, 10.0, 3.0, 5.0, 2.0, 9.0, 4.0, 8.0, 6.0]  # 1..10, unordered
    assert percentile(values, q) == expected


def test_p99_of_a_thousand_values_is_the_990th() -> None:
    values = [float(n) for n in range(1000, 0, -1)]
    assert percentile(values, 99) == 990.0
    assert percentile(values, 50) == 500.0


def test_percentile_of_one_value_and_of_none() -> None:
    assert percentile([0.25], 99) == 0.25
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    with pytest.raises(ValueError, match="not in"):
        percentile([1.0], 0)


# ---------------------------------------------------------------- the senders


def test_a_batch_answered_2xx_at_once_is_acknowledged(items: list[tuple[bytes, bytes]]) -> None:
    clock = ManualClock(100.0)
    post, sent = scripted(clock, [200])
    bodies = Bodies(items, sender=0, seed=1)
    log = send_until(post, bodies, deadline=100.005, clock=clock)
    assert log.batches == 1 and log.retries == 0 and log.failed_batches == 0
    assert log.events == bodies.count and log.unacknowledged == []
    assert log.latencies == [pytest.approx(0.01)] and log.statuses == {200: 1}
    assert len(sent) == 1


def test_a_failed_batch_is_sent_again_with_the_same_body_and_a_growing_backoff(
    items: list[tuple[bytes, bytes]],
) -> None:
    clock, slept = ManualClock(0.0), []
    post, sent = scripted(clock, [503, ConnectionResetError("reset"), 500, 201])
    log = send_until(post, Bodies(items, 0, 1), deadline=0.001, clock=clock, sleep=sleeper(clock, slept))
    assert len(set(sent)) == 1 and len(sent) == 4  # one body, four attempts
    assert log.retries == 3 and log.batches == 1 and log.failed_batches == 0
    assert log.statuses == {503: 1, 0: 1, 500: 1, 201: 1}  # a reset is an attempt answered by nothing
    assert slept == pytest.approx([FIRST_BACKOFF_SECONDS * BACKOFF_FACTOR**n for n in range(3)])
    assert len(log.latencies) == 4


def test_after_the_last_attempt_the_batch_is_given_up_not_acknowledged(items: list[tuple[bytes, bytes]]) -> None:
    clock, slept = ManualClock(0.0), []
    post, sent = scripted(clock, [503] * ATTEMPTS)
    bodies = Bodies(items, 0, 1)
    log = send_until(post, bodies, deadline=0.001, clock=clock, sleep=sleeper(clock, slept))
    assert len(sent) == ATTEMPTS and log.retries == ATTEMPTS - 1 and len(slept) == ATTEMPTS - 1
    assert log.batches == 0 and log.failed_batches == 1
    assert log.acknowledged == [] and len(log.unacknowledged) == bodies.count


def test_the_deadline_stops_new_batches_but_not_the_one_in_flight(items: list[tuple[bytes, bytes]]) -> None:
    clock = ManualClock(0.0)
    # Each attempt takes 0.4 s: batches start at 0.0, 0.4 and 0.8 (before the 1.0 deadline); the
    # third one's retry ends past the deadline and is still made.
    post, sent = scripted(clock, [200, 200, 500, 200], seconds=0.4)
    log = send_until(post, Bodies(items, 0, 1), deadline=1.0, clock=clock, sleep=lambda _s: None)
    assert log.batches == 3 and log.retries == 1 and len(sent) == 4


def test_senders_run_on_threads_and_their_logs_are_merged(items: list[tuple[bytes, bytes]]) -> None:
    def connect(sender: int) -> tuple[Post, Callable[[], None]]:
        return (lambda body: 200 if sender % 2 else 503), lambda: None

    bodies = [Bodies(items, n, 1) for n in range(4)]
    log, elapsed = run_senders(connect, bodies, duration=0.2, sleep=lambda _s: None)
    assert elapsed >= 0.2
    # What each thread managed in 0.2 s depends on the scheduler; how their logs add up does not.
    assert log.statuses == {200: log.batches, 503: ATTEMPTS * log.failed_batches}
    assert len(log.latencies) == log.batches + ATTEMPTS * log.failed_batches
    assert log.retries == (ATTEMPTS - 1) * log.failed_batches
    odd = {f"{bodies[n].audit_id(0)[:13]}" for n in (1, 3)}  # the senders answered 200
    assert {key[:13] for key in log.acknowledged} <= odd
    assert not {key[:13] for key in log.unacknowledged} & odd
    assert len(log.acknowledged) + len(log.unacknowledged) == sum(b.count for b in bodies)
    assert log.batches and log.failed_batches


def test_a_sender_that_dies_fails_the_run(items: list[tuple[bytes, bytes]]) -> None:
    closed: list[int] = []

    def connect(sender: int) -> tuple[Post, Callable[[], None]]:
        def post(body: bytes) -> int:
            raise KeyError("a bug in the adapter, not a failed request")

        return post, lambda: closed.append(sender)

    with pytest.raises(LoadError, match="a sender failed: KeyError"):
        run_senders(connect, [Bodies(items, n, 1) for n in range(3)], duration=60.0)
    assert sorted(closed) == [0, 1, 2]


def test_merging_logs_adds_everything() -> None:
    one = SenderLog([0.1], 1, 0, 2, acknowledged=["a"])
    one.statuses[200] += 1
    two = SenderLog([0.2, 0.3], 0, 1, 4, acknowledged=[], unacknowledged=["b", "c"])
    two.statuses[503] += 2
    one.merge(two)
    assert (one.latencies, one.batches, one.failed_batches, one.retries) == ([0.1, 0.2, 0.3], 1, 1, 6)
    assert one.statuses == {200: 1, 503: 2} and one.acknowledged == ["a"] and one.unacknowledged == ["b", "c"]


# ---------------------------------------------------------------- bodies


def test_bodies_are_eventlists_of_synth_events_with_a_fresh_audit_id_each(items: list[tuple[bytes, bytes]]) -> None:
    seen: set[str] = set()
    for sender in range(3):
        bodies = Bodies(items, sender, seed=7)
        for _ in range(20):
            body, ids = bodies.next()
            document = json.loads(body)
            assert document["kind"] == "EventList" and document["apiVersion"] == "audit.k8s.io/v1"
            assert 1 <= len(ids) <= MAX_EVENTS_PER_BATCH
            assert [item["auditID"] for item in document["items"]] == ids
            assert all(
                item["stage"] and item["verb"] and item["requestReceivedTimestamp"] for item in document["items"]
            )
            assert seen.isdisjoint(ids)
            seen.update(ids)


def test_bodies_are_the_same_for_the_same_sender_and_seed(items: list[tuple[bytes, bytes]]) -> None:
    first, again, other = Bodies(items, 3, 7), Bodies(items, 3, 7), Bodies(items, 3, 8)
    batches = [first.next()[0] for _ in range(5)]
    assert batches == [again.next()[0] for _ in range(5)]
    assert batches != [other.next()[0] for _ in range(5)]
