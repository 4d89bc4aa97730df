"""Compaction and archive figures for `make bench` (see bench.py for the keys).

The raw lakes are built the way production builds them: synthetic traffic through the webhook
pipeline (keep-all policy) into `raw/audit/...ndjson.zst` objects, one per API-server batch.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import sqlglot
from sqlglot import exp

from auditlake.archive.compactor import Compactor
from auditlake.archive.locks import LocalLocks
from auditlake.audit.pipeline import AuditPipeline, PipelineConfig
from auditlake.demo.replay import batches, eventlist
from auditlake.demo.synth import INCIDENT_SECRET, Synth
from auditlake.landing import RAW_SUFFIX, Landing, raw_prefix
from auditlake.model import ARCHIVE_KINDS, AUDIT_COLUMN_NAMES
from auditlake.query import named as query
from auditlake.stores.local import LocalStore
from auditlake.timestamps import format_utc, parse

CLUSTER = "bench"


@dataclass
class RawLake:
    root: Path
    events: int
    raw_json_bytes: int  # the landed NDJSON, uncompressed

    def keys(self) -> list[str]:
        return sorted(LocalStore(self.root).list(raw_prefix("audit")))


def build_raw_lake(
    root: Path, config: PipelineConfig, *, start: datetime, minutes: int, rate: float, slice_minutes: int = 60
) -> RawLake:
    """One Synth per slice of traffic (each with its planted incidents): memory stays flat however long."""
    shutil.rmtree(root, ignore_errors=True)
    landing = Landing(LocalStore(root))
    pipeline = AuditPipeline(config)
    events = raw_bytes = 0
    for n, offset in enumerate(range(0, minutes, slice_minutes)):
        synth = Synth(minutes=min(slice_minutes, minutes - offset), rate=rate, seed=n,
                      start=start + timedelta(minutes=offset))  # fmt: skip
        for i, batch in enumerate(batches(synth.events())):
            at = parse(json.loads(batch[-1])["stageTimestamp"])  # landed when the batch was sent
            result = pipeline.eventlist(eventlist(batch), cluster=CLUSTER, source="webhook", ingested_at=format_utc(at))
            landing.write_raw(CLUSTER, at, f"s{n:04d}b{i:05d}", result.lines)
            events += len(result.lines)
            raw_bytes += sum(map(len, result.lines)) + len(result.lines)
    return RawLake(root, events, raw_bytes)


def compact_local(lake: Path, out: Path, keys: list[str]) -> int:
    shutil.rmtree(out, ignore_errors=True)
    archive = LocalStore(out)
    report = Compactor(LocalStore(lake), {"audit": archive}, LocalLocks(out / ".locks")).compact(keys)
    if report.failed or report.quarantined:
        raise SystemExit(f"bench compaction failed: {report.failed or report.quarantined}")
    return report.rows_written


def duckdb_copy(lake: Path, out: Path) -> int:
    out.unlink(missing_ok=True)
    source = lake / raw_prefix("audit") / "**" / f"*{RAW_SUFFIX}"
    connection = duckdb.connect()
    connection.execute(
        f"COPY (SELECT * FROM read_json('{source}', format = 'newline_delimited', compression = 'zstd')) "
        f"TO '{out}' (FORMAT parquet, COMPRESSION zstd)"
    )
    return int(connection.execute(f"SELECT count(*) FROM '{out}'").fetchone()[0])  # type: ignore[index]


# DuckDB's name for each column type of the model (auditlake.model): the raw lines read with the
# archive's explicit types, as our compactor reads them, not with DuckDB's type sniffing.
DUCKDB_TYPES = {"string": "VARCHAR", "json": "VARCHAR", "int32": "INTEGER", "timestamp": "TIMESTAMP",
                "list<string>": "VARCHAR[]"}  # fmt: skip


def duckdb_same_job_sql(lake: Path, out: Path, kind_name: str = "audit") -> str:
    """Our compactor's job in DuckDB SQL, on the same raw objects: read with the explicit column types,
    keep the first ingested row per key, sort in archive order, timestamps in milliseconds (the
    archive's precision), zstd Parquet partitioned by dt/hour. QUALIFY row_number() is the fastest of
    the formulations tried (DISTINCT ON then ORDER BY took ~15% longer on 500k events)."""
    kind = ARCHIVE_KINDS[kind_name]
    columns = ", ".join(f"'{name}': '{DUCKDB_TYPES[type_]}'" for name, type_ in kind.columns)
    select = ", ".join(
        f"{name}::TIMESTAMP_MS AS {name}" if type_ == "timestamp" else name for name, type_ in kind.columns
    )
    source = lake / raw_prefix(kind.name) / "**" / f"*{RAW_SUFFIX}"
    time_column = kind.time_column
    return (
        f"COPY (SELECT {select}, strftime({time_column}, '%Y-%m-%d') AS dt, strftime({time_column}, '%H') AS hour "
        f"FROM read_json('{source}', format = 'newline_delimited', compression = 'zstd', columns = {{{columns}}}) "
        f"QUALIFY row_number() OVER (PARTITION BY {', '.join(kind.key)} ORDER BY {kind.first_of}) = 1 "
        f"ORDER BY {', '.join(kind.order)}) "
        f"TO '{out}' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (dt, hour))"
    )


def duckdb_same_job(lake: Path, out: Path) -> int:
    shutil.rmtree(out, ignore_errors=True)
    connection = duckdb.connect()
    connection.execute(duckdb_same_job_sql(lake, out))
    count = connection.execute(f"SELECT count(*) FROM read_parquet('{out}/**/*.parquet')").fetchone()
    return int(count[0])  # type: ignore[index]


def parquet_bytes(root: Path) -> int:
    return sum(path.stat().st_size for path in root.rglob("*.parquet"))


def throughput(lake: RawLake, work: Path, rounds: int) -> dict[str, float]:
    """Interleaved rounds, best of each: ours vs DuckDB reading the same raw objects, both as a plain
    COPY (no dedupe, no sort, one file) and doing our job (``duckdb_same_job_sql``)."""
    keys = lake.keys()
    runs: dict[str, Callable[[], int]] = {
        "ours": lambda: compact_local(lake.root, work / "ours", keys),
        "duckdb": lambda: duckdb_copy(lake.root, work / "duckdb.parquet"),
        "duckdb_same_job": lambda: duckdb_same_job(lake.root, work / "duckdb-same-job"),
    }
    best = dict.fromkeys(runs, float("inf"))
    for round_ in range(rounds):
        for name, run in runs.items():
            started = time.perf_counter()
            rows = run()
            best[name] = min(best[name], time.perf_counter() - started)
            if rows != lake.events:  # synthetic traffic holds no duplicates: every event must come out once
                raise SystemExit(f"{name} wrote {rows} rows of {lake.events}")
        print(
            f"compaction round {round_ + 1}: ours {best['ours']:.2f}s, duckdb COPY {best['duckdb']:.2f}s, "
            f"duckdb same job {best['duckdb_same_job']:.2f}s (best so far)"
        )
    return {
        "compact_events_per_sec": lake.events / best["ours"],
        "duckdb_events_per_sec": lake.events / best["duckdb"],
        "duckdb_same_job_events_per_sec": lake.events / best["duckdb_same_job"],
        "ours_bytes": parquet_bytes(work / "ours"),
        "duckdb_bytes": (work / "duckdb.parquet").stat().st_size,
        "duckdb_same_job_bytes": parquet_bytes(work / "duckdb-same-job"),
    }


PEAK_HARNESS = """
import json, sys, time
from pathlib import Path
sys.path.insert(0, {bench!r})
from compaction import compact_local, RawLake
lake = RawLake(Path({lake!r}), 0, 0)
started = time.perf_counter()
rows = compact_local(lake.root, Path({out!r}), lake.keys())
seconds = time.perf_counter() - started
# VmHWM is this process's own peak; ru_maxrss would report the parent's if that was larger (fork).
peak_kib = int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM:")).split()[1])
print(json.dumps({{"rows": rows, "seconds": seconds, "peak_kib": peak_kib}}))
"""


def peak_rss(lake: RawLake, out: Path) -> dict[str, float]:
    """Compaction of the whole lake in a fresh interpreter, as one Lambda invocation would do it."""
    harness = PEAK_HARNESS.format(bench=str(Path(__file__).parent), lake=str(lake.root), out=str(out))
    done = subprocess.run([sys.executable, "-c", harness], capture_output=True, text=True, check=True)
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    if figures["rows"] != lake.events:
        raise SystemExit(f"peak-RSS compaction wrote {figures['rows']} rows of {lake.events}")
    return {"peak_mb": figures["peak_kib"] / 1024, "events_per_sec": lake.events / figures["seconds"]}


def referenced_columns(sql: str) -> set[str]:
    tree = sqlglot.parse_one(sql, read="trino")
    return {column.name for column in tree.find_all(exp.Column)} & set(AUDIT_COLUMN_NAMES)


def athena_scan_bytes(archive: Path, sql: str, since: datetime, until: datetime) -> int:
    """What Athena reads for the query: partitions pruned by dt and hour (as the named queries' window
    predicates do: the hours from since's to until's, both included); in each remaining file the
    footer, and the referenced columns of the row groups whose request_received_at statistics
    overlap [since, until). Dictionary and page-index pruning, which would read less, are not counted."""
    columns = referenced_columns(sql)
    low, high = since.replace(tzinfo=None), until.replace(tzinfo=None)
    first, last = low.replace(minute=0, second=0, microsecond=0), high.replace(minute=0, second=0, microsecond=0)
    total = 0
    for path in sorted((archive / "audit").glob("dt=*/hour=*/*.parquet")):
        partition = datetime.strptime(f"{path.parts[-3]}/{path.parts[-2]}", "dt=%Y-%m-%d/hour=%H")
        if not first <= partition <= last:
            continue
        metadata = pq.ParquetFile(path).metadata
        total += metadata.serialized_size + 8  # footer, its length and the magic
        time_index = metadata.schema.names.index("request_received_at")
        for g in range(metadata.num_row_groups):
            group = metadata.row_group(g)
            stats = group.column(time_index).statistics
            if stats is not None and stats.has_min_max and (stats.max < low or stats.min >= high):
                continue
            for c in range(group.num_columns):
                chunk = group.column(c)
                if chunk.path_in_schema.split(".")[0] in columns:
                    total += chunk.total_compressed_size
    return total


def scan_fraction(lake: RawLake, archive: Path, start: datetime, days: int) -> dict[str, float]:
    """secret_changes over the 24 hours before the lake's last day began at noon, against 30 days."""
    compact_local(lake.root, archive, lake.keys())
    until = start + timedelta(days=days - 1, hours=12)
    since = until - timedelta(hours=24)
    named = query.load("secret_changes")
    scanned = athena_scan_bytes(archive, named.sql, since, until)
    # The query must answer, or the figure measures nothing: the planted deletion is in the window.
    namespace, name = INCIDENT_SECRET
    values = named.bind({"since": since.isoformat(), "until": until.isoformat(), "namespace": namespace, "name": name})
    rows = query.LocalEngine(archive).run(named.sql, values).rows
    if not any(row[2] == "delete" for row in rows):
        raise SystemExit("secret_changes found no planted deletion in the bench window")
    return {"scanned": scanned, "fraction": scanned / lake.raw_json_bytes, "answer_rows": len(rows)}
