"""The fleet simulation of `make bench` (bench/fleet.py) at a tiny scale: what it must show holds.

The hourly layout writes a file or two per partition however many clusters land (the hour's own
run, and the run that takes its stragglers) plus one per late batch; every event sent is archived
exactly once in both layouts (stragglers, backfills and redeliveries included); late objects go
through the SQS path; the ideal layout answers the named queries as the compacted ones do. No
timing is asserted: only counts and answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from bench.bench import keep_all_policy
from bench.fleet import (
    CountingLocks,
    EventSourceMapping,
    Fleet,
    FleetRun,
    LockCounter,
    Mapping,
    archive_files,
    archived_keys,
    check_answers,
    check_exactly_once,
    ideal_layout,
    layout_figures,
    query_figures,
    simulate,
)

from auditlake.archive.locks import LocalLocks

START = datetime(2026, 10, 1, tzinfo=UTC)  # simulated time: nothing reads the wall clock


def tiny(clusters: int) -> Fleet:
    return Fleet(clusters=clusters, hours=3, busy=1, start=START, workers=1)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[int, FleetRun]:
    config = keep_all_policy()
    return {n: simulate(tiny(n), config, tmp_path_factory.mktemp(f"fleet{n}")) for n in (5, 10)}


def partitions(archive: Path) -> set[tuple[str, str]]:
    return {(p.parts[-3], p.parts[-2]) for p in archive_files(archive)}


@pytest.mark.parametrize("clusters", [5, 10])
def test_the_hourly_layout_writes_a_file_or_two_per_partition_whatever_the_clusters(
    runs: dict[int, FleetRun], clusters: int
) -> None:
    run = runs[clusters]
    deployed = run.layouts["deployed"].archive
    late = run.objects.get("late", 0)
    # The hour's own run and the run of the next landing hour (its stragglers), plus one per late batch.
    assert len(archive_files(deployed)) <= 2 * len(partitions(deployed)) + late
    assert len(archive_files(run.layouts["per_batch"].archive)) > len(archive_files(deployed))


def test_files_do_not_grow_with_the_clusters(runs: dict[int, FleetRun]) -> None:
    files = {n: len(archive_files(run.layouts["deployed"].archive)) for n, run in runs.items()}
    assert runs[10].events > runs[5].events
    assert files[10] <= files[5] + 1  # one more partition of stragglers at most (a cluster's last seconds)


@pytest.mark.parametrize("clusters", [5, 10])
def test_every_event_sent_is_archived_exactly_once_in_both_layouts(runs: dict[int, FleetRun], clusters: int) -> None:
    run = runs[clusters]
    figures = {name: layout_figures(run, layout) for name, layout in run.layouts.items()}
    check_exactly_once(run, figures)  # raises otherwise
    for layout in run.layouts.values():
        assert archived_keys(layout.archive) == (run.events, run.events)
        assert layout.busy == 0


def test_the_day_has_stragglers_late_objects_and_redeliveries(runs: dict[int, FleetRun]) -> None:
    run = runs[10]
    assert run.objects["straggler"] > 0
    assert run.objects["late"] > 0
    assert run.objects["redelivery"] > 0
    # Late objects (a landing hour already compacted) were archived by the SQS path, each once.
    assert run.layouts["deployed"].late_compacted >= run.objects["late"]


def test_the_ideal_layout_answers_the_named_queries_as_the_compacted_ones(
    runs: dict[int, FleetRun], tmp_path: Path
) -> None:
    run = runs[5]
    ideal_layout(run.layouts["deployed"].archive, tmp_path / "ideal")
    assert len(archive_files(tmp_path / "ideal")) == len(partitions(tmp_path / "ideal"))  # one file each
    archives = {"deployed": run.layouts["deployed"].archive, "ideal": tmp_path / "ideal",
                "per_batch": run.layouts["per_batch"].archive}  # fmt: skip
    _, answers = query_figures(run.fleet, archives)
    found = check_answers(answers)
    assert set(found) == {"secret_changes", "forbidden_bursts", "identity_timeline"}
    assert found["secret_changes"] >= 5  # the planted deletion (and its read) in every cluster
    answers["per_batch"]["secret_changes"] = answers["per_batch"]["secret_changes"][1:]
    with pytest.raises(AssertionError, match="per_batch layout answers differently"):
        check_answers(answers)


def test_the_event_source_mapping_cuts_batches_by_window_and_by_size() -> None:
    queue = EventSourceMapping(Mapping(timedelta(seconds=300), 3, 2))
    for n in range(5):
        queue.notify(START + timedelta(seconds=n), f"k{n}")
    # Two pollers in turn: k0 k2 k4 fill the first (cut at once), k1 k3 wait for the window.
    assert queue.deadline() == START + timedelta(seconds=4)
    assert queue.cut(START + timedelta(seconds=4)) == [["k0", "k2", "k4"]]
    assert queue.deadline() == START + timedelta(seconds=301)
    assert queue.cut(START + timedelta(seconds=200)) == []
    assert queue.cut(START + timedelta(seconds=301)) == [["k1", "k3"]]
    assert queue.deadline() is None


def test_a_lock_wait_is_counted_once_per_acquisition(tmp_path: Path) -> None:
    counter = LockCounter()
    holder, waiter = LocalLocks(tmp_path), CountingLocks(LocalLocks(tmp_path), counter)
    token = holder.acquire("p", 60)
    assert token is not None
    assert waiter.acquire("p", 60) is None
    assert waiter.acquire("p", 60) is None
    holder.release("p", token)
    assert waiter.acquire("p", 60) is not None
    assert counter.waits == 1
