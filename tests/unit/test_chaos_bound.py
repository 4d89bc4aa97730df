"""The chaos run's time bound (tests/chaos/model.py ``rounds``): ``make chaos MINUTES=m`` ends about
m minutes in, whether nothing fails (the example in progress is abandoned between two steps and not
counted) or a failure is being shrunk (shrinking stops at the deadline; the failing steps are still
printed and the failure raised, naming the seed). Small machines without AWS: each step sleeps."""

from __future__ import annotations

import time

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import invariant, rule

from tests.chaos import model
from tests.chaos.model import BoundedMachine, Stats, bounded, rounds

STEP_SECONDS = 0.05
STEPS = 20


class Quiet(BoundedMachine):
    """Never fails; every step takes a while and counts one event."""

    @rule(n=st.integers(0, 100))
    @bounded
    def step(self, n: int) -> None:
        time.sleep(STEP_SECONDS)
        self.stats.events_sent += 1

    @invariant()
    def counted(self) -> None:
        self.stats.steps += 1
        self.step_done = True

    def teardown(self) -> None:
        if self.end_of_example() == "complete":
            self.stats.events_archived = self.stats.events_sent  # "checked" only at the end of an example


class Failing(BoundedMachine):
    """Fails once the numbers drawn add up: many shrink attempts, each as slow as its steps."""

    total = 0

    @rule(n=st.integers(0, 10))
    @bounded
    def add(self, n: int) -> None:
        time.sleep(STEP_SECONDS)
        self.total += n
        assert self.total < 60, f"total {self.total}"  # at least 6 steps: each shrink attempt is slow

    @invariant()
    def counted(self) -> None:
        self.step_done = True

    def teardown(self) -> None:
        self.end_of_example()


@pytest.fixture(autouse=True)
def fresh_stats() -> None:
    model._Run.stats = Stats(seed=7)


def test_past_the_deadline_the_example_in_progress_is_abandoned_and_not_counted() -> None:
    started = time.perf_counter()
    stats = rounds(Quiet, 7, deadline=started + 0.5, steps=STEPS)  # one example: 20 x 0.05 s = 1 s
    elapsed = time.perf_counter() - started
    assert 0.5 <= elapsed < 0.5 + 3 * STEP_SECONDS, elapsed
    # Only complete examples count: what the abandoned one sent is taken back out.
    assert stats.events_archived == stats.events_sent, stats


def test_a_failure_is_shrunk_only_until_the_deadline_then_raised_with_its_seed() -> None:
    started = time.perf_counter()
    with pytest.raises(AssertionError, match="total") as failure:
        rounds(Failing, 7, deadline=started + 2.5, steps=STEPS)  # the first example (all zeros) passes
    elapsed = time.perf_counter() - started
    # Shrinking alone takes far longer here (unbounded: 238 s, measured); the overrun is
    # the shrink attempt under way and the final replay, each at most one example (20 steps, 1 s).
    assert elapsed < 2.5 + 2 * STEPS * STEP_SECONDS + 1.0, elapsed
    notes = "\n".join(getattr(failure.value, "__notes__", []))
    assert "state.add(" in notes  # the failing steps (Hypothesis' notes, printed with the traceback)
    assert "chaos: seed 7, round 0 (Hypothesis seed 7): the steps above reproduce it (shrinking stopped" in notes
