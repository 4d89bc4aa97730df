"""The load bench (bench/load.py) at a tiny scale, with its real parts: `auditlake serve` over HTTP and
the webhook function's handler on moto server, 5 senders for 2 s each, then both compactions and the
exactly-once check. Asserts the figures' shape and that nothing acknowledged was lost or doubled;
no rate is asserted."""

from __future__ import annotations

from bench.load import load_figures

KEYS = {
    "serve_events_per_sec", "serve_p50_ms", "serve_p99_ms", "serve_batches", "serve_ratio_to_ingest_core",
    "lambda_events_per_sec", "lambda_p50_ms", "lambda_p99_ms", "lambda_batches",
    "load_lost", "load_duplicates", "load_unexpected", "load_retries", "lambda_handler_errors", "load_senders",
    "load_seconds",
}  # fmt: skip


def test_a_short_load_run_loses_and_doubles_nothing() -> None:
    figures = load_figures(duration=2.0, senders=5)
    assert set(figures) == KEYS
    assert figures["load_lost"] == 0 and figures["load_duplicates"] == 0 and figures["load_unexpected"] == 0
    assert figures["serve_batches"] > 0 and figures["lambda_batches"] > 0
    assert figures["serve_events_per_sec"] > 0 and figures["lambda_events_per_sec"] > 0
    assert 0 < figures["serve_p50_ms"] <= figures["serve_p99_ms"]
    assert 0 < figures["lambda_p50_ms"] <= figures["lambda_p99_ms"]
    assert figures["serve_ratio_to_ingest_core"] > 0 and figures["load_retries"] >= 0
    assert (figures["load_senders"], figures["load_seconds"]) == (5, 2.0)
