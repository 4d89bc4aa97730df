"""bench/cost.py: the cost model's arithmetic on fixed inputs (no timing, no prices looked up)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from bench import cost

FIXTURE = Path(__file__).parents[1] / "fixtures" / "cost" / "template.yaml"
GIB = 2**30
MONTH = 365 / 12

MEASURED = cost.Measured(
    webhook_events_per_sec=10_000,
    compact_events_per_sec=100_000,
    request_bytes_per_batch=600 * 1024,  # two 512 KB units of API Gateway metering
    findings_objects_per_batch=0.0,
    raw_zstd_bytes_per_event=50,
    parquet_bytes_per_event=100,
    source_json_bytes_per_event=1000,
    source_gzip_bytes_per_event=100,
)
DEPLOYMENT = cost.Deployment(
    webhook_memory_mb=1024, compactor_memory_mb=4096, digest_memory_mb=512, raw_retention_days=7,
    ia_days=30, glacier_ir_days=90, deep_archive_days=0, retention_days=365, events_per_second=1_000_000 / 3600,
)  # fmt: skip  # a million events an hour: one hour's fixed costs per million


def test_the_template_defaults_and_memory_sizes_are_read_through_its_tags() -> None:
    deployment = cost.deployment_from_template(FIXTURE, events_per_second=20.0)
    assert deployment == cost.Deployment(
        webhook_memory_mb=1024, compactor_memory_mb=4096, digest_memory_mb=512, raw_retention_days=7,
        ia_days=30, glacier_ir_days=90, deep_archive_days=180, retention_days=365, events_per_second=20.0,
    )  # fmt: skip


def test_tier_days_follow_the_lifecycle_and_bill_each_tier_its_minimum() -> None:
    assert cost.tier_days(DEPLOYMENT) == {"standard": 30, "ia": 60, "glacier_ir": 275, "deep_archive": 0}
    deep = replace(DEPLOYMENT, deep_archive_days=180)
    assert cost.tier_days(deep) == {"standard": 30, "ia": 60, "glacier_ir": 90, "deep_archive": 185}
    # Expiring 30 days into Glacier IR still pays its 90; into Deep Archive 10 days still pays 180.
    assert cost.tier_days(replace(DEPLOYMENT, retention_days=120))["glacier_ir"] == 90
    assert cost.tier_days(replace(deep, retention_days=190))["deep_archive"] == 180
    # Expiring in Standard: no other tier is ever reached.
    assert cost.tier_days(replace(DEPLOYMENT, retention_days=20)) == {
        "standard": 20, "ia": 0, "glacier_ir": 0, "deep_archive": 0,
    }  # fmt: skip


def test_lines_per_million_events() -> None:
    lines = cost.cost_per_million(MEASURED, DEPLOYMENT)
    gb_s = cost.PRICES["lambda_gb_second"].usd
    # 100 s of CPU + 2,500 batches x 40 ms waiting, at 1 GB; the compactor 10 s at 4 GB; one digest run.
    assert lines["lambda_webhook_compute"] == pytest.approx((100 + 2500 * 0.040) * gb_s)
    assert lines["lambda_compactor_compute"] == pytest.approx(10 * 4 * gb_s)
    assert lines["lambda_digest_compute"] == pytest.approx(0.5 * cost.DIGEST_SECONDS_PER_RUN * gb_s)
    assert lines["lambda_requests"] == pytest.approx((2500 + 2) * 0.20 / 1e6)
    assert lines["apigw_requests"] == pytest.approx(2500 * 2 * 1.00 / 1e6)
    # 2,500 raw objects, one archive file, LISTs: the hour and the partition (2) + one page of keys (3).
    assert lines["s3_puts"] == pytest.approx((2500 + 1 + 2 + 3) * 0.005 / 1000)
    assert lines["s3_gets"] == pytest.approx(2500 * 0.0004 / 1000)
    assert lines["sqs_requests"] == pytest.approx(2500 * 1.2 * 0.40 / 1e6)
    assert lines["dynamodb_writes"] == pytest.approx((3 + 60) * 0.625 / 1e6)
    assert lines["dynamodb_reads"] == pytest.approx(60 * 0.125 / 1e6)
    raw_gb, parquet_gb = 50e6 / GIB, 100e6 / GIB
    assert lines["s3_raw_storage"] == pytest.approx(raw_gb * 7 / MONTH * 0.023)
    assert lines["s3_archive_standard"] == pytest.approx(parquet_gb * 30 / MONTH * 0.023)
    assert lines["s3_archive_ia"] == pytest.approx(parquet_gb * 60 / MONTH * 0.0125)
    assert lines["s3_archive_glacier_ir"] == pytest.approx(parquet_gb * 275 / MONTH * 0.004)
    assert lines["s3_archive_deep_archive"] == 0
    assert lines["s3_transitions"] == pytest.approx((0.01 + 0.02) / 1000)


def test_findings_objects_add_puts_gets_and_an_archive_file() -> None:
    with_findings = cost.cost_per_million(replace(MEASURED, findings_objects_per_batch=0.5), DEPLOYMENT)
    assert with_findings["s3_gets"] == pytest.approx(3750 * 0.0004 / 1000)
    # 3,750 raw objects, two archive files (audit, findings), LISTs 2 x 2 + four pages.
    assert with_findings["s3_puts"] == pytest.approx((3750 + 2 + 4 + 4) * 0.005 / 1000)


def test_cloudwatch_bills_ingestion_uncompressed_and_storage_compressed() -> None:
    lines = cost.cloudwatch_per_million(MEASURED, keep_days=365)
    assert lines["cloudwatch_ingestion"] == pytest.approx(1e9 / GIB * 0.50)
    assert lines["cloudwatch_storage"] == pytest.approx(1e8 / GIB * 12 * 0.03)


def test_figures_total_and_ratio() -> None:
    found = cost.figures(MEASURED, DEPLOYMENT)
    total = sum(cost.cost_per_million(MEASURED, DEPLOYMENT).values())
    baseline = sum(cost.cloudwatch_per_million(MEASURED, keep_days=365).values())
    assert found["cost_per_million_events_usd"] == pytest.approx(total, abs=1e-4)
    assert found["cost_ratio_vs_cloudwatch_logs"] == pytest.approx(total / baseline, abs=1e-4)
    assert found["cloudwatch_logs_per_million_events_usd"] == pytest.approx(baseline, abs=1e-4)


def test_source_bytes_counts_each_event_once() -> None:
    body = b'{"kind":"EventList","items":[{"a":1},{"b":22}]}'
    json_bytes, gzip_bytes = cost.source_bytes([body, body])
    assert json_bytes == len(b'{"a":1}\n{"b":22}\n') / 2
    assert gzip_bytes > 0
