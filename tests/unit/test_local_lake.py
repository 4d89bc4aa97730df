"""The local lake's layout: every path under one root, and a lake laid out by the previous version
(backfill checkpoints in LAKE/checkpoints) keeps its checkpoints."""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NoReturn

import pytest

from auditlake.ingest.checkpoints import LocalCheckpoints
from auditlake.local_lake import LocalLake

STATE = {"eks_cluster": "Lab", "cursor_ms": 180_000, "pages": 1}


def _old_lake(root: Path) -> None:
    """A lake as the previous version left it: a checkpoint saved twice, with its lock file."""
    old = LocalCheckpoints(root / "checkpoints")
    version = old.save("backfill/Lab", {**STATE, "pages": 0}, 0)
    old.save("backfill/Lab", STATE, version)


def test_every_path_is_under_the_root(tmp_path: Path) -> None:
    lake = LocalLake(tmp_path)
    paths = [value for name in dir(LocalLake) if isinstance(value := getattr(lake, name), Path)]
    paths.append(lake.token_file("c1"))
    assert len(paths) >= 12
    assert all(path.is_relative_to(tmp_path) and path != tmp_path for path in paths)
    assert not any(tmp_path.iterdir())  # naming a path creates nothing


def test_checkpoints_live_under_state(tmp_path: Path) -> None:
    lake = LocalLake(tmp_path)
    lake.checkpoints().save("backfill/Lab", STATE, 0)
    assert (tmp_path / "state" / "checkpoints" / "backfill").is_dir()
    assert not (tmp_path / "checkpoints").exists()


def _old_json(root: Path) -> list[Path]:
    return sorted((root / "checkpoints").rglob("*.json"))


def test_an_old_lakes_checkpoints_are_moved_once(tmp_path: Path) -> None:
    _old_lake(tmp_path)
    checkpoints = LocalLake(tmp_path).checkpoints()
    assert checkpoints.load("backfill/Lab") == (STATE, 2)
    # The checkpoint left; its lock file stays (an earlier version's run may hold it).
    assert _old_json(tmp_path) == []
    assert (tmp_path / "checkpoints" / "backfill" / "Lab.lock").exists()
    checkpoints.save("backfill/Lab", {**STATE, "pages": 2}, 2)
    # Asked again: read from the new place only.
    assert LocalLake(tmp_path).checkpoints().load("backfill/Lab") == ({**STATE, "pages": 2}, 3)


def test_a_checkpoint_already_in_the_new_place_wins(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _old_lake(tmp_path)
    LocalCheckpoints(tmp_path / "state" / "checkpoints").save("backfill/Lab", {"newer": True}, 0)
    LocalCheckpoints(tmp_path / "checkpoints").save("backfill/Other", STATE, 0)
    with caplog.at_level(logging.WARNING, logger="auditlake.local_lake"):
        checkpoints = LocalLake(tmp_path).checkpoints()
        LocalLake(tmp_path).checkpoints()
    assert checkpoints.load("backfill/Lab") == ({"newer": True}, 1)
    assert checkpoints.load("backfill/Other") == (STATE, 1)
    # The old one is kept aside, not rescanned, and said once.
    old = tmp_path / "checkpoints" / "backfill" / "Lab.json.superseded"
    assert old.exists() and _old_json(tmp_path) == []
    assert [r.getMessage() for r in caplog.records if "Lab.json" in r.getMessage()] == [
        f"{tmp_path / 'checkpoints' / 'backfill' / 'Lab.json'}: "
        f"{tmp_path / 'state' / 'checkpoints' / 'backfill' / 'Lab.json'} wins; the old checkpoint is kept as {old}"
    ]


def test_a_move_cut_between_link_and_unlink_is_finished(tmp_path: Path) -> None:
    _old_lake(tmp_path)
    new = tmp_path / "state" / "checkpoints" / "backfill" / "Lab.json"
    new.parent.mkdir(parents=True)
    os.link(tmp_path / "checkpoints" / "backfill" / "Lab.json", new)
    assert LocalLake(tmp_path).checkpoints().load("backfill/Lab") == (STATE, 2)
    assert _old_json(tmp_path) == [] and not list((tmp_path / "checkpoints").rglob("*.superseded"))


def test_concurrent_runs_move_each_checkpoint_once(tmp_path: Path) -> None:
    """Two backfills started together on an old lake: both see every checkpoint, neither fails."""
    clusters = [f"c{i}" for i in range(40)]
    old = LocalCheckpoints(tmp_path / "checkpoints")
    for cluster in clusters:
        old.save(f"backfill/{cluster}", {**STATE, "eks_cluster": cluster}, 0)
    start = threading.Barrier(4)

    def run() -> list[tuple[dict[str, object] | None, int]]:
        start.wait()
        checkpoints = LocalLake(tmp_path).checkpoints()
        return [checkpoints.load(f"backfill/{cluster}") for cluster in clusters]

    with ThreadPoolExecutor(4) as pool:
        results = [future.result() for future in [pool.submit(run) for _ in range(4)]]
    expected = [({**STATE, "eks_cluster": cluster}, 1) for cluster in clusters]
    assert results == [expected] * 4
    assert _old_json(tmp_path) == [] and not list((tmp_path / "checkpoints").rglob("*.superseded"))
    assert len(list((tmp_path / "checkpoints").rglob("*.lock"))) == len(clusters)  # none deleted


def test_a_second_run_does_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _old_lake(tmp_path)
    LocalLake(tmp_path).checkpoints()
    assert (tmp_path / "checkpoints" / "MOVED").exists()

    def scanned(*_: object) -> NoReturn:
        raise AssertionError("the old checkpoints/ was scanned again")

    monkeypatch.setattr(Path, "rglob", scanned)
    monkeypatch.setattr(os, "link", scanned)
    assert LocalLake(tmp_path).checkpoints().load("backfill/Lab") == (STATE, 2)
