"""403-burst counting figures for `make bench` (the local counter: one JSON state file, no sockets).

What is counted is what the deployed functions count: the built-in rules (detect.rulesets.builtin_rules,
as the Lambda loads them) evaluated by the engine on each batch of 403s give the matches, and
trust.alerts.Correlations counts the built-in correlations' (forbidden, forbidden-secrets,
secret-enumeration) with the stack's default AlertThreshold / SecretsAlertThreshold (settings).

* alerts_ms_per_batch_distinct_identities - counting one batch of 400 denials from 400 distinct
  identities (a scan from many stolen tokens), median of the last 5 of 15 successive batches (the
  state holds the earlier ones): it must not grow with the state.
* alerts_ms_per_batch_one_identity - the same for 400 denials of one identity a batch (a burst that
  pages, then keeps going).
* alerts_ratio_to_pipeline - the distinct-identity figure / the time the ingest pipeline itself
  spends on the same batch (parse, policy, redact, normalise; no rules), interleaved in the same run:
  what alerting adds to a batch of denials. Evaluating the rules is not in either figure (bench.py's
  ingest_ratio_to_ceiling_with_rules measures it).
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
from auditlake.detect.engine import RuleEngine
from auditlake.detect.rulesets import builtin_rules
from auditlake.settings import Settings
from auditlake.trust.alerts import Correlations, LocalCounter, forbidden_thresholds

BATCHES = 15
BATCH = 400
INGESTED = "2026-01-01T00:00:00.000000Z"
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
    rules = builtin_rules()
    # The same batch through the engine, untimed: its matches are what Watch.stored hands the counting.
    detecting = AuditPipeline(PipelineConfig(), RuleEngine(rules))
    defaults = Settings.from_env({})
    thresholds = forbidden_thresholds(defaults.alert_threshold, defaults.secrets_alert_threshold)
    counter = LocalCounter(work / f"alerts-{distinct}.json")
    alerts = Correlations(counter, lambda _alert: None, rules.correlations, thresholds=thresholds)
    start = datetime.now(UTC).replace(microsecond=0)
    counting, processing = [], []
    for batch in range(BATCHES):
        events = denied(batch, start, distinct=distinct)
        began = time.perf_counter()
        pipeline.process(events, cluster="bench", source="bench", ingested_at=INGESTED)
        processing.append(time.perf_counter() - began)
        matches = detecting.process(events, cluster="bench", source="bench", ingested_at=INGESTED).matches
        if len(matches) < BATCH:  # each 403 matches the forbidden rule at least: else nothing is measured
            raise RuntimeError(f"{len(matches)} rule matches for {BATCH} denials: the forbidden rules did not match")
        began = time.perf_counter()
        alerts.observe(matches)
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
