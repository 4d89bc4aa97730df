"""The local lake's layout: every path under one root, and a lake laid out by the previous version
(backfill checkpoints in LAKE/checkpoints) keeps its checkpoints."""

from __future__ import annotations

from pathlib import Path

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


def test_an_old_lakes_checkpoints_are_moved_once(tmp_path: Path) -> None:
    _old_lake(tmp_path)
    checkpoints = LocalLake(tmp_path).checkpoints()
    assert checkpoints.load("backfill/Lab") == (STATE, 2)
    assert not (tmp_path / "checkpoints").exists()
    checkpoints.save("backfill/Lab", {**STATE, "pages": 2}, 2)
    # Asked again: read from the new place only.
    assert LocalLake(tmp_path).checkpoints().load("backfill/Lab") == ({**STATE, "pages": 2}, 3)


def test_a_checkpoint_already_in_the_new_place_wins(tmp_path: Path) -> None:
    _old_lake(tmp_path)
    LocalCheckpoints(tmp_path / "state" / "checkpoints").save("backfill/Lab", {"newer": True}, 0)
    LocalCheckpoints(tmp_path / "checkpoints").save("backfill/Other", STATE, 0)
    checkpoints = LocalLake(tmp_path).checkpoints()
    assert checkpoints.load("backfill/Lab") == ({"newer": True}, 1)
    assert checkpoints.load("backfill/Other") == (STATE, 1)
