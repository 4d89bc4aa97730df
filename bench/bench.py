"""`make bench`: ingest throughput against a same-run ceiling, and the webhook's import time.

The last line of output is one JSON object; later issues add keys to it. ``--ingest-only`` measures
only the in-process ingest figures (a minute instead of four); ``--fleet-only`` only the fleet
simulation's (bench/fleet.py: the fleet_* keys, described there); ``--load-only`` only the webhook
under load (bench/load.py, below).

* ingest_events_per_sec - the webhook core path in-process (parse the EventList, evaluate the
  pipeline policy, redact, normalise, serialise, compress; storage excluded) on synthetic traffic
  with ~10% RequestResponse events. The policy is the recommended one with every rule kept at
  Metadata or above and no omitted stage, so every event is matched, normalised and written.
* ingest_ratio_to_ceiling - that rate / the rate of orjson loads + dumps + the same zstd
  compression of the same bodies, measured interleaved in the same run (target >= 0.5). Only the
  EventList bodies are alive while timing, as in a webhook invocation.
* ingest_ratio_to_ceiling_with_rules - the same webhook core path with the built-in detection rules
  evaluated on every event (before the policy, as deployed) and the batch's findings serialised
  and compressed beside its records, / the same ceiling (target >= 0.8); rules_loaded is the
  number of built-in rules (and correlations) in force, ingest_findings_per_batch what they found.
* cloudwatch_events_per_sec - the EKS forwarder's core path on the same events as CloudWatch Logs
  subscription payloads (base64, gzip, the decoded JSON, then one audit Event per message through the
  pipeline, records compressed; storage excluded), interleaved with the rest.
* cloudwatch_ratio_to_webhook - that rate / ingest_events_per_sec of the same run: what reading
  one message at a time (CloudWatch's shape) costs against the webhook's one EventList per batch.
* webhook_import_ms - importing functions/webhook/app.py in a fresh interpreter (median of 7),
  including building its boto3 clients, as a cold start does (init time is when AWS advises building
  them: the CPU is boosted, SnapStart can snapshot them). Measured in an environment shaped like the
  function's: boto3 precompiled as in the runtime, the layer's pinned packages, no dev tools. The
  layer carries byte code only if the build machine has a Python 3.13 (layers/core/Makefile), so
  both figures are measured and webhook_import_ms is the one this machine's build ships.
  webhook_import_boto3_baseline_ms is boto3 plus the same two clients alone, in that environment.
  cloudwatch_import_ms is the same for functions/cloudwatch/app.py (one client, S3).
  webhook_import_overhead_ms = webhook_import_ms - webhook_import_boto3_baseline_ms (target <= 25).

The Events poller (bench/polling.py): poll_events_per_sec, poll_ratio_to_ceiling and the state
writes of one poll of 10 and of 10,000 Events (poll_state_writes_10_events, ..._10000_events).

403-burst counting (bench/alerting.py): alerts_ms_per_batch_distinct_identities,
alerts_ms_per_batch_one_identity and alerts_ratio_to_pipeline (what counting adds to a batch of
400 denials, against the pipeline's own time for it).

Compaction (bench/compaction.py), on a raw lake of 1,000,000 synthetic events landed by the same
pipeline (one raw object per API-server batch):

* compact_events_per_sec - raw NDJSON.zst -> deduplicated, sorted zstd Parquet in the local lake's
  dt=/hour= partitions (locks, anti-join against the archive and create-only writes included).
* compact_ratio_vs_duckdb_same_job - that rate / DuckDB doing the same job on the same objects
  (compaction.duckdb_same_job_sql: the explicit column types, the first ingested row per key, the
  archive order, millisecond timestamps, zstd Parquet partitioned by dt/hour), best of interleaved
  rounds (target >= 1.5); duckdb_same_job_parquet_bytes_ratio is our archive's bytes / its files'.
* compact_ratio_vs_duckdb_copy - that rate / DuckDB's COPY (SELECT * FROM read_json(...)) TO parquet
  (zstd) of the same objects, in the same rounds (DuckDB neither deduplicates nor sorts).
  compact_ratio_vs_duckdb is the same figure under its first name.
* parquet_bytes_ratio_vs_duckdb - the archive's bytes / DuckDB's file's bytes.
* compact_peak_rss_mb - peak RSS of a fresh interpreter compacting all 1,000,000 events at once.
* scan_fraction_secret_query - the Parquet bytes Athena reads for secret_changes over 24 hours
  in a 30-day archive (footers, plus the query's columns in row groups that overlap the window,
  of the two dt partitions the query's predicate keeps) / the raw NDJSON bytes of the 30 days.

The webhook under load (bench/load.py): `auditlake serve` (a real process, HTTP, keep-alive) and the
webhook Lambda handler (in-process, on moto server; one module shared by the threads: the handler's
core under concurrent callers, not that many warm containers), each under 50 concurrent senders for
60 s that send EventLists of 1-100 re-keyed synthetic events and retry a non-2xx batch with the same
body as kube-apiserver does (5 attempts); then both lakes compacted and every event checked:

* serve_events_per_sec, serve_p50_ms, serve_p99_ms (per attempt), serve_batches (answered 2xx);
  serve_ratio_to_ingest_core - that rate / the webhook core (``AuditWebhook.handle`` as `serve`
  builds it, landing included) on the senders' first batches in one thread without HTTP, same run.
* lambda_events_per_sec, lambda_p50_ms, lambda_p99_ms, lambda_batches - the same for the handler
  (moto's time included: it answers every S3 and DynamoDB call).
* load_lost (events answered 2xx and not archived), load_duplicates (archived rows beyond one per
  key), load_unexpected (archived, never sent), load_retries (attempts after a batch's first), sums
  over both; lambda_handler_errors (invocations that raised, answered 500 as API Gateway would:
  Powertools' per-process metric set flushed by one thread while another adds to it, a fault of
  sharing one module that a container cannot have); load_senders, load_seconds. The bench fails
  unless the first three are 0.

Cost (bench/cost.py), from this run's figures at the list prices of its one table (us-east-1):

* cost_per_million_events_usd - Lambda (webhook at ingest_events_per_sec_with_rules, compactor at
  compact_events_per_sec, hourly digest), API Gateway, S3 requests, SQS, DynamoDB, and a year of
  storage (raw zstd NDJSON for RawRetentionDays, the Parquet archive through the template's
  lifecycle defaults), per million events (target <= 0.10); cost_lines_per_million_events_usd
  the lines; raw_zstd_bytes_per_event and parquet_bytes_per_event the measured sizes.
* cost_ratio_vs_cloudwatch_logs - that / CloudWatch Logs ingesting the same audit JSON and keeping
  it as long (target <= 0.10).
"""

from __future__ import annotations

import base64
import gc
import gzip
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import venv
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import orjson
import yaml
import zstandard

ROOT = Path(__file__).resolve().parents[1]
# The repository root too: the test doubles the benchmark shares with the suite are in tests/fakes.
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "layers" / "core"))
sys.path.insert(0, str(ROOT / "bench"))

from auditlake.audit.pipeline import AuditPipeline, PipelineConfig  # noqa: E402
from auditlake.audit.policy import load_policy, policy_from_dict  # noqa: E402
from auditlake.clusters.webhook_kubeconfig import asset  # noqa: E402
from auditlake.demo.replay import batches, eventlist  # noqa: E402
from auditlake.demo.synth import Synth  # noqa: E402
from auditlake.detect.engine import RuleEngine  # noqa: E402
from auditlake.detect.matches import Detector  # noqa: E402
from auditlake.detect.rulesets import builtin_rules  # noqa: E402
from auditlake.ingest.cloudwatch import EksAuditForwarder  # noqa: E402
from auditlake.ingest.intake import finding_lines  # noqa: E402
from auditlake.landing import Landing  # noqa: E402
from tests.fakes.stores import Discard  # noqa: E402

T = TypeVar("T")
ROUNDS = 5
IMPORT_RUNS = 7
COMPACT_ROUNDS = 3
COMPACT_MINUTES, COMPACT_RATE = 340, 50  # ~1,000,000 events
ARCHIVE_DAYS, ARCHIVE_RATE = 30, 0.2  # ~17,000 events a day


def keep_all_policy() -> PipelineConfig:
    doc = yaml.safe_load(asset("audit-policy.yaml"))
    doc.pop("omitStages", None)
    for rule in doc["rules"]:
        if rule["level"] == "None":
            rule["level"] = "Metadata"
    return PipelineConfig(policy_from_dict(doc))


def ours(config: PipelineConfig, detector: Detector | None = None) -> Callable[[list[bytes]], int]:
    """The webhook core path; with ``detector``, rules evaluated and findings written as intake does."""
    pipeline = AuditPipeline(config, detector)

    def run(bodies: list[bytes]) -> int:
        written = 0
        for body in bodies:
            result = pipeline.eventlist(
                body, cluster="bench", source="webhook", ingested_at="2026-11-21T00:00:00.000000Z"
            )
            written += len(zstandard.ZstdCompressor(level=3).compress(b"\n".join(result.lines) + b"\n"))
            findings = finding_lines(result.matches)
            if findings:
                written += len(zstandard.ZstdCompressor(level=3).compress(b"\n".join(findings) + b"\n"))
        return written

    return run


def findings_per_batch(detector: Detector, bodies: list[bytes]) -> float:
    pipeline = AuditPipeline(keep_all_policy(), detector)
    found = sum(
        len(finding_lines(pipeline.eventlist(body, cluster="bench", source="webhook", ingested_at="x").matches))
        for body in bodies
    )
    return found / len(bodies)


def subscription_payloads(events: list[dict[str, Any]]) -> list[str]:
    """The events as EKS's subscription delivers them: one message per event, base64(gzip(JSON))."""
    payloads = []
    for number, batch in enumerate(batches(events)):
        document = {
            "messageType": "DATA_MESSAGE", "owner": "123456789012", "logGroup": "/aws/eks/bench/cluster",
            "logStream": "kube-apiserver-audit-0", "subscriptionFilters": ["bench"],
            "logEvents": [{"id": f"{number}-{i}", "timestamp": 0, "message": item.decode()}
                          for i, item in enumerate(batch)],
        }  # fmt: skip
        payloads.append(base64.b64encode(gzip.compress(orjson.dumps(document), 6)).decode())
    return payloads


def forwarder(config: PipelineConfig) -> Callable[[list[str]], int]:
    forward = EksAuditForwarder(AuditPipeline(config), Landing(Discard()))

    def run(payloads: list[str]) -> int:
        return sum(forward.payload(payload).accepted for payload in payloads)

    return run


def ceiling(bodies: list[bytes]) -> int:
    written = 0
    for body in bodies:
        items = orjson.loads(body)["items"]
        data = b"\n".join(orjson.dumps(item) for item in items) + b"\n"
        written += len(zstandard.ZstdCompressor(level=3).compress(data))
    return written


def timed(run: Callable[[T], int], inputs: T) -> float:
    started = time.perf_counter()
    run(inputs)
    return time.perf_counter() - started


IMPORT_HARNESS = """
import time
started = time.perf_counter()
{statement}
print((time.perf_counter() - started) * 1000)
"""
LAMBDA_ENV = ROOT / ".bench" / "lambda"


def lambda_shaped_env() -> tuple[Path, list[Path]]:
    """Interpreter and sys.path of a function-like environment, built once per requirements change."""
    requirements = ROOT / "layers" / "core" / "requirements.txt"
    key = hashlib.sha256(requirements.read_bytes()).hexdigest()
    stamp, python, layer = LAMBDA_ENV / "stamp", LAMBDA_ENV / "venv" / "bin" / "python", LAMBDA_ENV / "layer"
    if not stamp.exists() or stamp.read_text() != key:
        print("building the Lambda-shaped environment for the import measurement (once)")
        shutil.rmtree(LAMBDA_ENV, ignore_errors=True)
        venv.create(LAMBDA_ENV / "venv", with_pip=True)
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, "boto3"], check=True)
        subprocess.run([*pip, "--no-compile", "--target", str(layer), "-r", str(requirements)], check=True)
        stamp.write_text(key)
    # The core as the layer's build ships it (layers/core/Makefile): the sources, plus the built-in
    # rules compiled to builtin.json, which the functions load at init (without it they would need pySigma).
    core = LAMBDA_ENV / "core"
    shutil.rmtree(core, ignore_errors=True)
    shutil.copytree(
        ROOT / "layers" / "core" / "auditlake", core / "auditlake", ignore=shutil.ignore_patterns("__pycache__")
    )
    builtin = core / "auditlake" / "detect" / "builtin.json"
    compile_rules = [sys.executable, "-m", "auditlake.detect.rulesets", str(builtin)]
    subprocess.run(compile_rules, check=True, capture_output=True, cwd=ROOT / "layers" / "core")
    return python, [ROOT / "functions" / "webhook", layer, core]


def import_ms(python: Path, statement: str, path: list[Path], *, bytecode: bool = False) -> float:
    """Median import time; without ``bytecode`` the layer is compiled at import, as shipped today."""
    env = {
        **os.environ,
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": os.pathsep.join(str(p) for p in path),
        "AUDITLAKE_RAW_BUCKET": "bench-raw",
        "AUDITLAKE_STATE_TABLE": "bench-state",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_SERVICE_NAME": "webhook",
        "POWERTOOLS_METRICS_NAMESPACE": "bench",
    }
    if bytecode:  # what a layer built on a machine with python3.13 would ship (see layers/core/Makefile)
        compiled = LAMBDA_ENV / "compiled"
        shutil.rmtree(compiled, ignore_errors=True)
        path = [Path(shutil.copytree(p, compiled / str(i))) for i, p in enumerate(path)]
        subprocess.run([str(python), "-m", "compileall", "-q", str(compiled)], check=True, capture_output=True)
        env["PYTHONPATH"] = os.pathsep.join(str(p) for p in path)
    harness = IMPORT_HARNESS.format(statement=statement)
    runs = []
    for _ in range(IMPORT_RUNS + 1):  # the first run warms the file cache; discarded
        out = subprocess.run([str(python), "-c", harness], env=env, capture_output=True, text=True, check=True)
        runs.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(runs[1:])


def main() -> None:
    if "--fleet-only" in sys.argv:
        print(json.dumps(fleet_figures()))
        return
    if "--load-only" in sys.argv:
        print(json.dumps(load_figures()))
        return
    events = list(Synth(minutes=20, rate=50, seed=11, start=datetime(2026, 11, 1, tzinfo=UTC)).events())
    rr = sum(e["level"] == "RequestResponse" for e in events) / len(events)
    bodies = [eventlist(batch) for batch in batches(events)]
    payloads = subscription_payloads(events)
    count = len(events)
    megabytes = sum(map(len, bodies)) / 2**20
    print(f"{count} synthetic events ({rr:.1%} RequestResponse) in {len(bodies)} EventLists, {megabytes:.1f} MiB")
    # A webhook invocation holds one batch, not the whole data set: free the generated events, or
    # the garbage collector's passes over them would slow both sides (the ceiling most).
    del events
    gc.collect()

    rules = builtin_rules()
    engine = RuleEngine(rules)
    keep_all = ours(keep_all_policy())
    with_rules = ours(keep_all_policy(), engine)
    recommended = ours(PipelineConfig(load_policy(asset("audit-policy.yaml"))))
    cloudwatch = forwarder(keep_all_policy())
    timings: dict[str, list[float]] = {"ceiling": [], "ours": [], "with_rules": [], "recommended": [], "cloudwatch": []}
    for round_ in range(ROUNDS):  # interleaved, so machine noise hits all alike
        timings["ceiling"].append(timed(ceiling, bodies))
        timings["ours"].append(timed(keep_all, bodies))
        timings["with_rules"].append(timed(with_rules, bodies))
        timings["recommended"].append(timed(recommended, bodies))
        timings["cloudwatch"].append(timed(cloudwatch, payloads))
        print(f"round {round_ + 1}: " + ", ".join(f"{k} {v[-1]:.3f}s" for k, v in timings.items()))
    rate = {k: count / min(v) for k, v in timings.items()}
    loaded = len(rules.rules) + len(rules.correlations)
    print(f"ingest with the {loaded} built-in rules: {rate['with_rules']:,.0f} events/s")
    rules_result = {
        "ingest_ratio_to_ceiling_with_rules": round(rate["with_rules"] / rate["ceiling"], 3),
        "ingest_events_per_sec_with_rules": round(rate["with_rules"]),
        "rules_loaded": loaded,
        "ingest_findings_per_batch": round(findings_per_batch(engine, bodies), 2),
    }
    if "--ingest-only" in sys.argv:
        print(json.dumps({
            "ingest_events_per_sec": round(rate["ours"]),
            "ingest_ratio_to_ceiling": round(rate["ours"] / rate["ceiling"], 3),
            **rules_result,
            "ceiling_events_per_sec": round(rate["ceiling"]),
        }))  # fmt: skip
        return

    # The other parts' modules only now: --ingest-only runs without them.
    import alerting
    import polling

    python, path = lambda_shaped_env()
    source_only = import_ms(python, "import app", path)
    compiled = import_ms(python, "import app", path, bytecode=True)
    # The layer gets byte code when the build machine has a Python 3.13 (layers/core/Makefile).
    python313 = subprocess.run(
        ["make", "-s", "-C", str(ROOT / "layers" / "core"), "python313"], capture_output=True, text=True, check=True
    ).stdout.strip()
    webhook = compiled if python313 else source_only
    baseline = import_ms(python, "import boto3; boto3.client('s3'); boto3.client('dynamodb')", path)
    forwarder_path = [ROOT / "functions" / "cloudwatch", *path[1:]]
    forwarder_import = import_ms(python, "import app", forwarder_path, bytecode=bool(python313))
    print(f"ingest (keep-all policy): {rate['ours']:,.0f} events/s; ceiling {rate['ceiling']:,.0f} events/s")
    print(f"ingest (recommended policy, most events filtered): {rate['recommended']:,.0f} input events/s")
    print(f"EKS forwarder (CloudWatch payloads, keep-all policy): {rate['cloudwatch']:,.0f} events/s")
    print(
        f"webhook import: {compiled:.0f} ms with byte code, {source_only:.0f} ms without; this machine's build "
        f"ships {'with' if python313 else 'without'} it (boto3 + its two clients alone: {baseline:.0f} ms)"
    )
    result: dict[str, Any] = {
        "ingest_events_per_sec": round(rate["ours"]),
        "ingest_ratio_to_ceiling": round(rate["ours"] / rate["ceiling"], 3),
        **rules_result,
        "webhook_import_ms": round(webhook, 1),
        "cloudwatch_events_per_sec": round(rate["cloudwatch"]),
        "cloudwatch_ratio_to_webhook": round(rate["cloudwatch"] / rate["ours"], 3),
        "cloudwatch_import_ms": round(forwarder_import, 1),
        "ceiling_events_per_sec": round(rate["ceiling"]),
        "ingest_events_per_sec_recommended_policy": round(rate["recommended"]),
        "webhook_import_with_bytecode_ms": round(compiled, 1),
        "webhook_import_without_bytecode_ms": round(source_only, 1),
        "webhook_import_boto3_baseline_ms": round(baseline, 1),
        "webhook_import_overhead_ms": round(webhook - baseline, 1),  # target <= 25
        "bench_events": count,
        "bench_request_response_fraction": round(rr, 3),
    }
    result.update(polling.polling_figures(Discard()))
    result.update(alerting.alerting_figures())
    result.update(compaction_figures())
    result |= fleet_figures()
    result |= load_figures()
    import cost

    deployment = cost.deployment_from_template(ROOT / "template.yaml")
    result.update(cost.figures(cost.measured_from(result, bodies), deployment))
    print(json.dumps(result))


def fleet_figures() -> dict[str, Any]:
    """The fleet simulation (bench/fleet.py): 200 clusters, a simulated day, both layouts."""
    import fleet

    return fleet.fleet_figures(keep_all_policy())


def load_figures() -> dict[str, Any]:
    """The webhook under load (bench/load.py): serve and the Lambda handler, 50 senders, 60 s each."""
    import load

    return load.load_figures()


def compaction_figures() -> dict[str, Any]:
    import compaction

    start = datetime(2026, 10, 1, tzinfo=UTC)
    with tempfile.TemporaryDirectory(prefix="auditlake-bench-") as tmp:
        work = Path(tmp)
        print("landing ~1,000,000 synthetic events in a raw lake")
        lake = compaction.build_raw_lake(
            work / "lake", keep_all_policy(), start=start, minutes=COMPACT_MINUTES, rate=COMPACT_RATE
        )
        gc.collect()
        raw_zstd = sum(path.stat().st_size for path in (work / "lake").rglob("*.zst"))
        speed = compaction.throughput(lake, work, COMPACT_ROUNDS)
        peak = compaction.peak_rss(lake, work / "peak")
        shutil.rmtree(work / "lake")
        print(f"landing {ARCHIVE_DAYS} days of traffic for the scan estimate")
        month = compaction.build_raw_lake(
            work / "month", keep_all_policy(), start=start, minutes=ARCHIVE_DAYS * 1440, rate=ARCHIVE_RATE,
            slice_minutes=1440,
        )  # fmt: skip
        scan = compaction.scan_fraction(month, work / "month-archive", start, ARCHIVE_DAYS)
    ratio = speed["compact_events_per_sec"] / speed["duckdb_events_per_sec"]
    same_job = speed["compact_events_per_sec"] / speed["duckdb_same_job_events_per_sec"]
    print(
        f"compaction: {speed['compact_events_per_sec']:,.0f} events/s, DuckDB COPY "
        f"{speed['duckdb_events_per_sec']:,.0f} events/s, DuckDB doing the same job "
        f"{speed['duckdb_same_job_events_per_sec']:,.0f} events/s; "
        f"Parquet {speed['ours_bytes'] / 2**20:.1f} MiB vs DuckDB "
        f"{speed['duckdb_bytes'] / 2**20:.1f} MiB;"
        f" peak RSS {peak['peak_mb']:.0f} MB for {lake.events:,} events"
    )
    print(
        f"secret_changes over 24 h of {month.events:,} events in {ARCHIVE_DAYS} days: {scan['scanned'] / 2**10:.0f} KiB"
        f" of {month.raw_json_bytes / 2**20:.0f} MiB raw JSON ({scan['answer_rows']} rows answered)"
    )
    return {
        "compact_events_per_sec": round(speed["compact_events_per_sec"]),
        "compact_ratio_vs_duckdb_same_job": round(same_job, 3),
        "compact_ratio_vs_duckdb_copy": round(ratio, 3),
        "compact_ratio_vs_duckdb": round(ratio, 3),  # the same figure as ..._copy, under its first name
        "parquet_bytes_ratio_vs_duckdb": round(speed["ours_bytes"] / speed["duckdb_bytes"], 3),
        "compact_peak_rss_mb": round(peak["peak_mb"]),
        "scan_fraction_secret_query": round(scan["fraction"], 6),
        "duckdb_copy_events_per_sec": round(speed["duckdb_events_per_sec"]),
        "duckdb_same_job_events_per_sec": round(speed["duckdb_same_job_events_per_sec"]),
        "duckdb_same_job_parquet_bytes_ratio": round(speed["ours_bytes"] / speed["duckdb_same_job_bytes"], 3),
        "compact_events": lake.events,
        "raw_zstd_bytes_per_event": round(raw_zstd / lake.events, 1),
        "parquet_bytes_per_event": round(speed["ours_bytes"] / lake.events, 1),
        "scan_archive_events": month.events,
        "scan_bytes_secret_query": scan["scanned"],
        "scan_raw_json_bytes": month.raw_json_bytes,
    }


if __name__ == "__main__":
    main()
