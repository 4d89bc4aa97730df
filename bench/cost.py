"""What a million audit events cost on a deployed stack, against CloudWatch Logs keeping the same JSON.

The contract: ``cost_per_million(inputs, prices)`` turns the figures one ``make bench`` run measured
(``Measured``) and the deployment's settings (``Deployment``, read from template.yaml's defaults by
``deployment_from_template``) into dollars per million events, line by line, at the list prices of
``PRICES`` (the one table of prices; README "Cost" shows it). ``cloudwatch_per_million`` is the
baseline: the same source JSON ingested into and kept for a year in CloudWatch Logs. No timing
happens here: the arithmetic is a pure function of its inputs (tests/unit/test_cost_model.py).

Every event's whole life is charged to it (steady state): landing, compaction, and the months each
of its bytes is stored in each tier until it expires. Costs that do not grow with events (the
hourly compactor and digest runs, LISTs, heartbeats) are spread over the events of an hour at
``Deployment.events_per_second``. What is not measured is an assumption, named where it is used.
Not counted: the findings and Events archives (small beside audit), Athena queries (per question,
not per event), KMS (SSE-S3 is free), CloudWatch Logs of the functions themselves, free tiers.
"""

from __future__ import annotations

import gzip
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml

# ----------------------------------------------------------------------------------------- prices
PRICES_REGION = "us-east-1"
PRICES_DATE = "2026-11-30"  # the list prices as published on that day (pages below); no free tier


@dataclass(frozen=True)
class Price:
    usd: float
    unit: str
    source: str


PRICES: dict[str, Price] = {
    # https://aws.amazon.com/lambda/pricing/ (Arm, first tier; every function is arm64)
    "lambda_gb_second": Price(0.0000133334, "GB-second", "aws.amazon.com/lambda/pricing"),
    "lambda_request": Price(0.20 / 1e6, "request", "aws.amazon.com/lambda/pricing"),
    # https://aws.amazon.com/api-gateway/pricing/ (HTTP API, first 300 million; metered per 512 KB)
    "apigw_http_request": Price(1.00 / 1e6, "request (each 512 KB)", "aws.amazon.com/api-gateway/pricing"),
    # https://aws.amazon.com/s3/pricing/
    "s3_put": Price(0.005 / 1000, "PUT, COPY, POST or LIST request", "aws.amazon.com/s3/pricing"),
    "s3_get": Price(0.0004 / 1000, "GET request", "aws.amazon.com/s3/pricing"),
    "s3_standard_gb_month": Price(0.023, "GB-month, S3 Standard", "aws.amazon.com/s3/pricing"),
    "s3_ia_gb_month": Price(0.0125, "GB-month, S3 Standard-IA", "aws.amazon.com/s3/pricing"),
    "s3_glacier_ir_gb_month": Price(0.004, "GB-month, Glacier Instant Retrieval", "aws.amazon.com/s3/pricing"),
    "s3_deep_archive_gb_month": Price(0.00099, "GB-month, Glacier Deep Archive", "aws.amazon.com/s3/pricing"),
    "s3_transition_ia": Price(0.01 / 1000, "lifecycle transition to Standard-IA", "aws.amazon.com/s3/pricing"),
    "s3_transition_glacier_ir": Price(0.02 / 1000, "lifecycle transition to Glacier IR", "aws.amazon.com/s3/pricing"),
    "s3_transition_deep_archive": Price(
        0.05 / 1000, "lifecycle transition to Deep Archive", "aws.amazon.com/s3/pricing"
    ),
    # https://aws.amazon.com/sqs/pricing/ (standard queue)
    "sqs_request": Price(0.40 / 1e6, "request", "aws.amazon.com/sqs/pricing"),
    # https://aws.amazon.com/dynamodb/pricing/on-demand/ (since the November 2024 reduction)
    "dynamodb_write": Price(0.625 / 1e6, "write request unit", "aws.amazon.com/dynamodb/pricing/on-demand"),
    "dynamodb_read": Price(0.125 / 1e6, "read request unit", "aws.amazon.com/dynamodb/pricing/on-demand"),
    # https://aws.amazon.com/cloudwatch/pricing/ (Logs, Standard class)
    "cloudwatch_ingest_gb": Price(0.50, "GB ingested (uncompressed)", "aws.amazon.com/cloudwatch/pricing"),
    "cloudwatch_storage_gb_month": Price(0.03, "GB-month stored (compressed)", "aws.amazon.com/cloudwatch/pricing"),
}

GB = 2**30  # AWS bills storage and ingestion per GB, which it counts in binary units (2^30 bytes)
DAYS_PER_MONTH = 365 / 12
MEBIBYTE = 1 << 20

# ------------------------------------------------------------------------------- what is assumed
EVENTS_PER_BATCH = 400  # kube-apiserver's webhook batch (--audit-webhook-batch-max-size default)
WEBHOOK_WAIT_SECONDS = 0.040  # per batch: the S3 PUT (and, once a minute, DynamoDB) the handler waits on
DIGEST_SECONDS_PER_RUN = 2.0  # one hourly digest run: read the hour's ledger entries, write the digest
SQS_REQUESTS_PER_OBJECT = 1.2  # S3's notification (1) + receive and delete, 10 messages per call (0.2)
HEARTBEATS_PER_MINUTE = 1.0  # liveness write and token read per cluster and warm instance (trust/liveness)


@dataclass(frozen=True)
class Measured:
    """Figures of one bench run, per event or per second of one process."""

    webhook_events_per_sec: float  # ingest core path with the built-in rules (one Lambda instance's CPU)
    compact_events_per_sec: float  # the compactor, raw objects to archive files
    request_bytes_per_batch: float  # the EventList body API Gateway meters
    findings_objects_per_batch: float  # raw findings objects written per batch (0..1)
    raw_zstd_bytes_per_event: float  # raw landing, zstd NDJSON
    parquet_bytes_per_event: float  # the archive
    source_json_bytes_per_event: float  # the audit event as kube-apiserver sends it (what CloudWatch ingests)
    source_gzip_bytes_per_event: float  # that JSON compressed (what CloudWatch bills as stored)


@dataclass(frozen=True)
class Deployment:
    """The stack's settings that cost depends on (template.yaml defaults) and the traffic assumed."""

    webhook_memory_mb: int
    compactor_memory_mb: int
    digest_memory_mb: int
    raw_retention_days: int
    ia_days: int
    glacier_ir_days: int
    deep_archive_days: int  # 0: never
    retention_days: int
    events_per_second: float = 50.0  # one busy cluster (the bench's compaction lake is landed at this rate)
    clusters: int = 1


def deployment_from_template(template: Path, **traffic: Any) -> Deployment:
    """The defaults of template.yaml (its CloudFormation tags read as plain values)."""

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    doc = yaml.load(template.read_text(), Loader=Loader)  # a SafeLoader: no Python objects built
    defaults = {name: spec.get("Default") for name, spec in doc["Parameters"].items()}
    resources = doc["Resources"]
    global_memory = doc["Globals"]["Function"]["MemorySize"]

    def memory(name: str) -> int:
        return int(resources[name]["Properties"].get("MemorySize", global_memory))

    return Deployment(
        webhook_memory_mb=memory("WebhookFunction"),
        compactor_memory_mb=memory("CompactorFunction"),
        digest_memory_mb=memory("DigestFunction"),
        raw_retention_days=int(defaults["RawRetentionDays"]),
        ia_days=int(defaults["AuditIADays"]),
        glacier_ir_days=int(defaults["AuditGlacierIRDays"]),
        deep_archive_days=int(defaults["AuditDeepArchiveDays"]),
        retention_days=int(defaults["AuditRetentionDays"]),
        **traffic,
    )


def tier_days(d: Deployment) -> dict[str, float]:
    """Days an archive file spends in each storage class before it expires (lifecycle order)."""
    ends = {"standard": d.ia_days, "ia": d.glacier_ir_days, "glacier_ir": d.deep_archive_days or d.retention_days,
            "deep_archive": d.retention_days if d.deep_archive_days else 0}  # fmt: skip
    days, start = {}, 0.0
    for tier, until in ends.items():
        end = min(until, d.retention_days)
        days[tier] = max(0.0, end - start)
        start = max(start, end)
    # Glacier IR bills at least 90 days, Deep Archive 180, from the transition (template's description).
    if days["glacier_ir"]:
        days["glacier_ir"] = max(days["glacier_ir"], 90.0)
    if days["deep_archive"]:
        days["deep_archive"] = max(days["deep_archive"], 180.0)
    return days


def cost_per_million(m: Measured, d: Deployment, prices: dict[str, Price] = PRICES) -> dict[str, float]:
    """Dollars per million events, by line. Keys name the service and what is billed."""
    p = {name: price.usd for name, price in prices.items()}
    n = 1e6
    batches = n / EVENTS_PER_BATCH
    hours = n / (d.events_per_second * 3600)  # hours of traffic a million events take
    kinds = 2 if m.findings_objects_per_batch else 1  # audit, and findings when there are any
    archive_files = hours * kinds  # one file per partition (kind, hour) per hourly run
    raw_objects = batches * (1 + m.findings_objects_per_batch)
    gb_s_webhook = d.webhook_memory_mb / 1024 * (n / m.webhook_events_per_sec + batches * WEBHOOK_WAIT_SECONDS)
    gb_s_compactor = d.compactor_memory_mb / 1024 * n / m.compact_events_per_sec
    gb_s_digest = d.digest_memory_mb / 1024 * DIGEST_SECONDS_PER_RUN * hours
    # The compactor lists each landing hour (1,000 keys a page) and each partition it writes; the
    # webhook notes a heartbeat and reads the token once a minute per cluster.
    lists = hours * kinds * 2 + math.ceil(raw_objects / 1000)
    minutes = hours * 60 * d.clusters
    months = DAYS_PER_MONTH
    days = tier_days(d)
    parquet_gb = m.parquet_bytes_per_event * n / GB
    lines = {
        "lambda_webhook_compute": gb_s_webhook * p["lambda_gb_second"],
        "lambda_compactor_compute": gb_s_compactor * p["lambda_gb_second"],
        "lambda_digest_compute": gb_s_digest * p["lambda_gb_second"],
        "lambda_requests": (batches + 2 * hours) * p["lambda_request"],
        "apigw_requests": batches * math.ceil(m.request_bytes_per_batch / (512 * 1024)) * p["apigw_http_request"],
        "s3_puts": (raw_objects + archive_files + lists) * p["s3_put"],
        "s3_gets": raw_objects * p["s3_get"],
        "sqs_requests": raw_objects * SQS_REQUESTS_PER_OBJECT * p["sqs_request"],
        # Locks: acquire and release per partition; the hour marked done per kind; heartbeats.
        "dynamodb_writes": (archive_files * 3 + minutes * HEARTBEATS_PER_MINUTE) * p["dynamodb_write"],
        "dynamodb_reads": minutes * HEARTBEATS_PER_MINUTE * p["dynamodb_read"],
        "s3_raw_storage": m.raw_zstd_bytes_per_event
        * n
        / GB
        * d.raw_retention_days
        / months
        * p["s3_standard_gb_month"],
        "s3_archive_standard": parquet_gb * days["standard"] / months * p["s3_standard_gb_month"],
        "s3_archive_ia": parquet_gb * days["ia"] / months * p["s3_ia_gb_month"],
        "s3_archive_glacier_ir": parquet_gb * days["glacier_ir"] / months * p["s3_glacier_ir_gb_month"],
        "s3_archive_deep_archive": parquet_gb * days["deep_archive"] / months * p["s3_deep_archive_gb_month"],
        "s3_transitions": archive_files
        * (
            (p["s3_transition_ia"] if days["ia"] else 0.0)
            + (p["s3_transition_glacier_ir"] if days["glacier_ir"] else 0.0)
            + (p["s3_transition_deep_archive"] if days["deep_archive"] else 0.0)
        ),
    }
    return lines


def cloudwatch_per_million(m: Measured, prices: dict[str, Price] = PRICES, keep_days: int = 365) -> dict[str, float]:
    """CloudWatch Logs ingesting the source JSON and keeping it ``keep_days``: ingestion is billed on
    the uncompressed bytes, storage on the compressed bytes (gzip here)."""
    n = 1e6
    return {
        "cloudwatch_ingestion": m.source_json_bytes_per_event * n / GB * prices["cloudwatch_ingest_gb"].usd,
        "cloudwatch_storage": m.source_gzip_bytes_per_event
        * n
        / GB
        * keep_days
        / DAYS_PER_MONTH
        * prices["cloudwatch_storage_gb_month"].usd,
    }


def figures(m: Measured, d: Deployment) -> dict[str, Any]:
    """The bench keys: the total, the ratio to CloudWatch Logs over the same year, and the lines."""
    ours = cost_per_million(m, d)
    cloudwatch = cloudwatch_per_million(m, keep_days=d.retention_days)
    total, baseline = sum(ours.values()), sum(cloudwatch.values())
    return {
        "cost_per_million_events_usd": round(total, 4),
        "cost_ratio_vs_cloudwatch_logs": round(total / baseline, 4),
        "cloudwatch_logs_per_million_events_usd": round(baseline, 4),
        "cost_lines_per_million_events_usd": {k: round(v, 5) for k, v in ours.items()},
        "cost_assumed_events_per_second": d.events_per_second,
        "cost_prices": f"{PRICES_REGION} list prices of {PRICES_DATE}",
    }


def price_table() -> str:
    """The prices as a Markdown table (README "Cost")."""
    rows = ["| Price | USD | Unit | Source |", "|---|---:|---|---|"]
    for name, price in PRICES.items():
        per = 1000 if price.usd < 0.001 and ("request" in price.unit or "transition" in price.unit) else 1
        shown = f"{price.usd * per:.10g}" + (" per 1,000" if per == 1000 else "")
        rows.append(f"| {name} | {shown} | {price.unit} | {price.source} |")
    return "\n".join(rows)


def source_bytes(bodies: list[bytes]) -> tuple[float, float]:
    """Per event: the audit JSON as CloudWatch Logs would ingest it (one log event per audit event), and
    that NDJSON gzip-compressed (what it bills as stored)."""
    events = raw = packed = 0
    for body in bodies:
        items = orjson.loads(body)["items"]
        lines = b"\n".join(orjson.dumps(item) for item in items) + b"\n"
        events, raw, packed = events + len(items), raw + len(lines), packed + len(gzip.compress(lines, 6))
    return raw / events, packed / events


def measured_from(result: dict[str, Any], bodies: list[bytes]) -> Measured:
    """The inputs from one bench run's keys (bench.py main) and its EventList bodies."""
    json_bytes, gzip_bytes = source_bytes(bodies)
    return Measured(
        webhook_events_per_sec=result["ingest_events_per_sec_with_rules"],
        compact_events_per_sec=result["compact_events_per_sec"],
        request_bytes_per_batch=sum(map(len, bodies)) / len(bodies),
        # An upper bound: a batch writes at most one findings object, whatever it found.
        findings_objects_per_batch=min(1.0, result["ingest_findings_per_batch"]),
        raw_zstd_bytes_per_event=result["raw_zstd_bytes_per_event"],
        parquet_bytes_per_event=result["parquet_bytes_per_event"],
        source_json_bytes_per_event=json_bytes,
        source_gzip_bytes_per_event=gzip_bytes,
    )
