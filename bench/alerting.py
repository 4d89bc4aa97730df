"""403-burst counting figures for `make bench` (the local counter: one JSON state file, no sockets).

* alerts_ms_per_batch_distinct_identities - counting one batch of 400 denials from 400 distinct
  identities (a scan from many stolen tokens), median of the last 5 of 15 successive batches (the
  state holds the earlier ones): it must not grow with the state.
* alerts_ms_per_batch_one_identity - the same for 400 denials of one identity a batch (a burst that
  pages, then keeps going).
* alerts_ratio_to_pipeline - the distinct-identity figure / the time the ingest pipeline itself
  spends on the same batch (parse, policy, redact, normalise), interleaved in the same run: what
  alerting adds to a batch of denials.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from auditlake.audit.pipeline import AuditPipeline, PipelineConfig
from auditlake.trust.alerts import ForbiddenBursts, LocalCounter

BATCHES = 15
BATCH = 400
# The suite's own fixture: one 403 answer to a get of a secret.
TEMPLATE: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[1] / "tests" / "events" / "forbidden_secret_get.json").read_text()
)


def denied(batch: int, start: datetime, *, distinct: bool) -> list[dict[str, Any]]:
    events = []
    for n in range(BATCH):
        at = start + timedelta(seconds=batch * 40 + n * 0.1)
        stamp = at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        user = f"token-{batch}-{n}" if distinct else "mallory@example.com"
        events.append({**TEMPLATE, "auditID": f"{batch:08d}-0000-0000-0000-{n:012d}", "user": {"username": user},
                       "requestReceivedTimestamp": stamp, "stageTimestamp": stamp})  # fmt: skip
    return events


def run(work: Path, *, distinct: bool) -> tuple[float, float]:
    """Median milliseconds of the last five batches: counting, and the pipeline on the same batch."""
    pipeline = AuditPipeline(PipelineConfig())
    alerts = ForbiddenBursts(LocalCounter(work / f"alerts-{distinct}.json"), lambda _alert: None)
    start = datetime.now(UTC).replace(microsecond=0)
    counting, processing = [], []
    for batch in range(BATCHES):
        events = denied(batch, start, distinct=distinct)
        began = time.perf_counter()
        result = pipeline.process(events, cluster="bench", source="bench", ingested_at="2026-01-01T00:00:00.000000Z")
        processing.append(time.perf_counter() - began)
        began = time.perf_counter()
        alerts.observe(result.denials)
        counting.append(time.perf_counter() - began)
    return statistics.median(counting[-5:]) * 1000, statistics.median(processing[-5:]) * 1000


def alerting_figures() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="auditlake-alerts-") as tmp:
        many, pipeline_ms = run(Path(tmp), distinct=True)
        one, _ = run(Path(tmp), distinct=False)
    print(
        f"403 counting: {many:.1f} ms a batch of {BATCH} identities, {one:.1f} ms of one; pipeline {pipeline_ms:.1f} ms"
    )
    return {
        "alerts_ms_per_batch_distinct_identities": round(many, 1),
        "alerts_ms_per_batch_one_identity": round(one, 1),
        "alerts_ratio_to_pipeline": round(many / pipeline_ms, 3),
    }


if __name__ == "__main__":
    print(alerting_figures())
