"""The ``<kind>_live`` views (query/live.py) on the local lake: every named query answers the same
whether its events are compacted, only in raw, in both, or delivered twice to raw; and what the live
window leaves to the archive. Synthetic traffic of the last hour, landed now (fixtures relative to now)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from auditlake.archive.compactor import Compactor
from auditlake.audit.pipeline import AuditPipeline, PipelineConfig
from auditlake.demo import synth
from auditlake.events.files import ingest_events
from auditlake.ingest.files import FileIngest
from auditlake.jsonio import dumps
from auditlake.landing import parse_raw_key
from auditlake.local_lake import LocalLake
from auditlake.model import ARCHIVE_KINDS
from auditlake.query import live
from auditlake.query import named as query

NOW = datetime.now(UTC)
START = NOW - timedelta(minutes=50)  # the traffic: 40 minutes ending 10 minutes ago
WINDOW = {"since": (NOW - timedelta(hours=2)).isoformat(), "until": NOW.isoformat(), "cluster": "demo"}


def _params() -> dict[str, dict[str, str]]:
    """Each named query's own parameters, chosen to hit the planted incidents."""
    return {
        "aws_principal": {"principal": synth.INCIDENT_DENIED},
        "identity_timeline": {"identity": synth.INCIDENT_DENIED},
        "object_history": {
            "resource": "secrets",
            "namespace": synth.INCIDENT_SECRET[0],
            "name": synth.INCIDENT_SECRET[1],
        },
        "secret_changes": {"namespace": synth.INCIDENT_SECRET[0], "name": synth.INCIDENT_SECRET[1]},
    }


@dataclass
class Lake:
    lake: LocalLake
    keys: list[str]  # every raw object (audit and events)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    """A lake with an hour of synthetic audit traffic and Events landed now, nothing compacted."""
    lake = LocalLake(tmp_path_factory.mktemp("lake"))
    generator = synth.Synth(minutes=40, rate=5, seed=11, start=START)
    folder = tmp_path_factory.mktemp("in")
    audit, events = folder / "synth.jsonl", folder / "events.jsonl"
    audit.write_bytes(b"".join(dumps(e) + b"\n" for e in generator.events()))
    events.write_bytes(b"".join(dumps(e) + b"\n" for e in generator.kube_events()))
    FileIngest(AuditPipeline(PipelineConfig()), lake.landing(), "demo", chunk_events=500).jsonl(audit)
    ingest_events(events, lake.landing("events"), "demo")
    keys = sorted(lake.store().list("raw/"))
    assert len([k for k in keys if k.startswith("raw/audit/")]) > 4  # enough objects to compact half of
    return Lake(lake, keys)


def _copy(source: Lake, target: Path) -> LocalLake:
    shutil.copytree(source.lake.root, target)
    return LocalLake(target)


def _compact(lake: LocalLake, keys: list[str]) -> None:
    report = Compactor(lake.store(), lake.archives(), lake.locks()).compact(keys)
    assert not report.failed and not report.quarantined


def _redeliver(lake: LocalLake, key: str) -> str:
    """The same batch landed again under another batch id in the same hour (a sender that retried with
    other framing): every key of it twice in raw."""
    copy = key.replace(".ndjson.zst", "-again.ndjson.zst")
    (lake.root / copy).write_bytes((lake.root / key).read_bytes())
    return copy


def _row(row: tuple[Any, ...]) -> tuple[Any, ...]:
    # array_agg's order is the rows' order, which SQL leaves open (forbidden_bursts' source_ips,
    # resources, verbs are sets): compared as sorted lists. Everything else as it is.
    return tuple(sorted(value, key=repr) if isinstance(value, list) else value for value in row)


def _answers(engine: query.LocalEngine) -> dict[str, list[tuple[Any, ...]]]:
    answers = {}
    params = _params()
    for name in query.names():
        named = query.load(name)
        rows = engine.run(named.sql, named.bind({**WINDOW, **params.get(name, {})})).rows
        answers[name] = sorted((_row(row) for row in rows), key=repr)
    return answers


@pytest.fixture(scope="module")
def before(source: Lake, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[tuple[Any, ...]]]:
    """What the named queries answered before the live views: everything compacted, the archive alone."""
    lake = _copy(source, tmp_path_factory.mktemp("all") / "lake")
    _compact(lake, source.keys)
    answers = _answers(query.LocalEngine(lake.archive_dir))
    hit = [name for name, rows in answers.items() if rows]
    assert len(hit) >= 6, hit  # the comparison below means something only if most queries answer rows
    return answers


def test_the_named_queries_read_the_live_views() -> None:
    for name in query.names():
        sql = query.load(name).sql
        for kind in ARCHIVE_KINDS:
            assert f"FROM {kind}\n" not in sql and f"FROM {kind} " not in sql, name


def test_all_compacted_and_still_in_raw(source: Lake, before: dict[str, Any], tmp_path: Path) -> None:
    """(a)+(c): every raw object compacted and still in raw: each row once."""
    lake = _copy(source, tmp_path / "lake")
    _compact(lake, source.keys)
    assert _answers(query.LocalEngine(lake.archive_dir, lake.root)) == before


def test_nothing_compacted(source: Lake, before: dict[str, Any], tmp_path: Path) -> None:
    lake = _copy(source, tmp_path / "lake")
    engine = query.LocalEngine(lake.archive_dir, lake.root)
    assert engine.run("SELECT count(*) FROM audit").rows == [(0,)]
    assert _answers(engine) == before


def test_half_compacted(source: Lake, before: dict[str, Any], tmp_path: Path) -> None:
    """(b): every other raw object compacted, the rest only in raw."""
    lake = _copy(source, tmp_path / "lake")
    _compact(lake, source.keys[::2])
    engine = query.LocalEngine(lake.archive_dir, lake.root)
    archived = engine.run("SELECT count(*) FROM audit").rows[0][0]
    live_rows = engine.run("SELECT count(*) FROM audit_live").rows[0][0]
    assert 0 < archived < live_rows
    assert _answers(engine) == before


@pytest.mark.parametrize("compacted", [False, True], ids=["raw-only", "half-compacted"])
def test_a_redelivered_batch_counts_once(source: Lake, before: dict[str, Any], tmp_path: Path, compacted: bool) -> None:
    """(d): one batch twice in raw (the same keys under two objects), compacted or not."""
    lake = _copy(source, tmp_path / "lake")
    audit = [k for k in source.keys if k.startswith("raw/audit/")]
    copies = [_redeliver(lake, audit[0]), _redeliver(lake, audit[1])]
    if compacted:
        _compact(lake, [audit[1], *source.keys[::2]])
    engine = query.LocalEngine(lake.archive_dir, lake.root)
    key = ", ".join(ARCHIVE_KINDS["audit"].key)
    total, distinct = engine.run(f"SELECT count(*), count(DISTINCT ({key})) FROM audit_live").rows[0]
    assert total == distinct
    assert all(parse_raw_key(c) is not None for c in copies)
    assert _answers(engine) == before


def test_live_equals_the_archive_once_compacted(source: Lake, tmp_path: Path) -> None:
    """Row for row (every column, dt and hour): the raw side converts as the compactor does."""
    lake = _copy(source, tmp_path / "lake")
    raw_only = query.LocalEngine(lake.archive_dir, lake.root)
    _compact(lake, source.keys)
    archived = query.LocalEngine(lake.archive_dir)
    for kind in ("audit", "events"):
        columns = ", ".join(f'"{n}"' for n, _ in live.view_columns(ARCHIVE_KINDS[kind]))
        fresh = raw_only.connection.execute(f"SELECT {columns} FROM {kind}_live ORDER BY ALL").fetchall()
        assert fresh
        assert fresh == archived.connection.execute(f"SELECT {columns} FROM {kind} ORDER BY ALL").fetchall()


def test_the_live_window(tmp_path: Path) -> None:
    """Raw objects landed before the live hours are not read (the archive has them); a raw row whose
    time is older than the window waits for the archive; one in the window shows before compaction."""
    lake = LocalLake(tmp_path)
    hour = NOW.replace(minute=0, second=0, microsecond=0)
    old = synth.Synth(minutes=1, rate=5, seed=3, start=hour - timedelta(hours=live.WINDOW_HOURS + 2))
    fresh = synth.Synth(minutes=1, rate=5, seed=4, start=NOW - timedelta(minutes=5))
    pipeline = AuditPipeline(PipelineConfig())
    for name, generator, landed in (
        ("backfill", old, NOW),  # old events landed now
        ("stale", fresh, hour - timedelta(hours=live.RAW_HOURS + 1)),  # landed before the live hours
        ("fresh", fresh, NOW),
    ):
        path = tmp_path / f"{name}.jsonl"
        path.write_bytes(b"".join(dumps(e) + b"\n" for e in generator.events()))
        FileIngest(pipeline, lake.landing(), name, clock=lambda landed=landed: landed).jsonl(path)
    engine = query.LocalEngine(lake.archive_dir, lake.root, now=NOW)
    clusters = dict(engine.run("SELECT cluster, count(*) FROM audit_live GROUP BY cluster").rows)
    assert set(clusters) == {"fresh"}
    assert sum(len(v) for v in engine.raw_files(ARCHIVE_KINDS["audit"], lake.root, NOW).values()) == 2


def test_without_a_landing_live_is_the_archive(tmp_path: Path) -> None:
    engine = query.LocalEngine(tmp_path / "archive")
    for kind in ARCHIVE_KINDS.values():
        columns = [c[0] for c in engine.connection.execute(f"DESCRIBE {live.live_view(kind)}").fetchall()]
        assert columns == [n for n, _ in live.view_columns(kind)]
        assert engine.run(f"SELECT count(*) FROM {live.live_view(kind)}").rows == [(0,)]
