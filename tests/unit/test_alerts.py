"""403-burst alerts: counted per (cluster, identity, minute) by audit ID, published once per window."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from auditlake.alerts import RULE_SECRETS, AlertError, ForbiddenBursts, LocalCounter, subject
from auditlake.pipeline import AuditPipeline, PipelineConfig
from tests.conftest import forbidden_events


def denials(count: int, *, cluster: str = "prod", **kwargs: Any) -> list[Any]:
    """``count`` 403 records as the pipeline stores them (see forbidden_events for the options)."""
    pipeline = AuditPipeline(PipelineConfig())
    events = forbidden_events(count, **kwargs)
    result = pipeline.process(events, cluster=cluster, source="webhook", ingested_at="2026-11-21T10:06:00.000000Z")
    assert result.forbidden == count
    return result.denials


class Pager:
    def __init__(self, fail: int = 0) -> None:
        self.sent: list[dict[str, Any]] = []
        self.fail = fail

    def __call__(self, alert: dict[str, Any]) -> None:
        if self.fail:
            self.fail -= 1
            raise ConnectionError("SNS unreachable")
        self.sent.append(alert)


def bursts(tmp_path: Path, pager: Pager, **kwargs: int) -> ForbiddenBursts:
    return ForbiddenBursts(LocalCounter(tmp_path / "alerts.json"), pager, **kwargs)


def test_ten_denials_in_a_minute_page_once_nine_do_not(tmp_path: Path) -> None:
    pager = Pager()
    alerts = bursts(tmp_path, pager)
    assert alerts.observe(denials(9)) == [] and pager.sent == []
    alerts.observe(denials(1, first=9))  # the tenth, in a later batch
    alerts.observe(denials(5, first=10))  # more in the same minute: no second page
    [alert] = pager.sent
    assert (alert["cluster"], alert["identity"], alert["count"], alert["rule"]) == (
        "prod",
        "mallory@example.com",
        10,
        "forbidden",
    )
    assert alert["window_start"] == "2026-11-21T10:05:00Z" and alert["window_end"] == "2026-11-21T10:06:00Z"
    assert alert["source_ips"] == ["203.0.113.0", "203.0.113.1", "203.0.113.2"]
    assert alert["resources"] == ["secrets prod/db-pass"] and alert["verbs"] == ["get"]
    assert subject(alert).startswith("auditlake: mallory@example.com denied 10x on in prod")


def test_two_windows_two_pages_and_other_identities_apart(tmp_path: Path) -> None:
    pager = Pager()
    alerts = bursts(tmp_path, pager)
    alerts.observe(denials(10, minute="10:05") + denials(10, minute="10:06", first=100))
    alerts.observe(denials(9, user="eve", first=200))
    assert [(a["identity"], a["window_start"][11:16]) for a in pager.sent] == [
        ("mallory@example.com", "10:05"), ("mallory@example.com", "10:06")]  # fmt: skip


def test_a_redelivered_batch_is_not_counted_twice(tmp_path: Path) -> None:
    pager = Pager()
    alerts = bursts(tmp_path, pager)
    batch = denials(6)
    alerts.observe(batch)
    alerts.observe(batch)  # the API server retried it
    assert pager.sent == []


def test_a_failed_page_is_sent_by_the_retry(tmp_path: Path) -> None:
    pager = Pager(fail=1)
    alerts = bursts(tmp_path, pager)
    with pytest.raises(AlertError, match="SNS unreachable"):
        alerts.observe(denials(10))
    alerts.observe(denials(10))  # the same delivery again
    assert len(pager.sent) == 1


def test_the_secrets_rule_pages_sooner_for_secrets_only(tmp_path: Path) -> None:
    pager = Pager()
    alerts = bursts(tmp_path, pager, threshold=10, secrets_threshold=3)
    alerts.observe(denials(3, resource="pods", first=0))
    alerts.observe(denials(3, resource="secrets", first=10))
    assert [(a["rule"], a["count"]) for a in pager.sent] == [(RULE_SECRETS, 3)]
    assert subject(pager.sent[0]).startswith("auditlake: mallory@example.com denied 3x on secrets in prod")


def test_thresholds_are_checked() -> None:
    with pytest.raises(ValueError):
        ForbiddenBursts(LocalCounter("x"), Pager(), threshold=0)
