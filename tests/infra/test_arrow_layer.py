"""A pyarrow trimmed by layers/arrow/trim.sh still does everything the compactor needs: this
machine's pyarrow, trimmed by the same script, compacts a raw landing in a subprocess."""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pyarrow

from auditlake.audit.pipeline import AuditPipeline, PipelineConfig
from auditlake.landing import Landing
from auditlake.stores.local import LocalStore
from tests.helpers import ROOT, complete_events

SCRIPT = """
import sys, pyarrow
assert pyarrow.__file__.startswith(sys.argv[1]), pyarrow.__file__
from auditlake.archive.compactor import Compactor
from auditlake.archive.locks import LocalLocks
from auditlake.stores.local import LocalStore
raw, archive = LocalStore(sys.argv[2]), LocalStore(sys.argv[2] + "/archive")
report = Compactor(raw, {"audit": archive, "events": archive}, LocalLocks(sys.argv[2] + "/locks")).compact(
    list(raw.list("raw/")))
print(report.rows_written, len(report.files))
"""


def test_trimmed_pyarrow_compacts(tmp_path: Path) -> None:
    trimmed = tmp_path / "layer"
    shutil.copytree(Path(pyarrow.__file__).parent, trimmed / "pyarrow")
    subprocess.run(["sh", str(ROOT / "layers" / "arrow" / "trim.sh"), str(trimmed)], check=True)
    assert not (trimmed / "pyarrow" / "flight.py").exists()
    lake = tmp_path / "lake"
    result = AuditPipeline(PipelineConfig()).process(
        complete_events("audit/liggitt__audit2rbac__demo_v1.jsonl"),
        cluster="c",
        source="file",
        ingested_at="2026-01-01T00:00:00.000000Z",
    )
    Landing(LocalStore(lake)).write_raw("c", datetime(2026, 1, 1, tzinfo=UTC), "b", result.lines)
    # The trimmed copy comes first on the path, as the layer does in Lambda.
    env = {"PYTHONPATH": f"{trimmed}:{ROOT / 'layers' / 'core'}", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(trimmed), str(lake)], env=env, capture_output=True,
                         text=True, check=False)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["37", "2"]  # the events span 19:55-20:01: two hour partitions
