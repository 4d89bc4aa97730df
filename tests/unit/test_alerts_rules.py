"""Paging driven by rules: a value_count correlation (distinct values per group within a timespan),
wider buckets for longer timespans, and findings at or above the alert level paged once per
(rule, cluster, identity, object) per dedup window, with the local adapters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from auditlake.detect.correlate import Window, ingest_problem
from auditlake.detect.ir import Correlation
from auditlake.detect.matches import Match
from auditlake.model import FindingRecord
from auditlake.timestamps import format_utc
from auditlake.trust.alerts import (
    AlertError,
    Correlations,
    FindingPages,
    LocalCounter,
    LocalPageClaims,
    Watch,
    subject,
)
from tests.helpers import BURST_START, ManualClock, Pager

NOW = datetime.now(UTC)  # the ingest clocks start at the real now (the fixtures are far from it)


ENUMERATION = Correlation(
    id="c0ffee00-0000-4000-8000-000000000001",
    title="Many distinct secrets read by one identity",
    level="medium",
    type="value_count",
    rules=("secret-read",),
    group_by=("user.username",),
    timespan_seconds=600,
    condition=("gte", 5),
    field="objectRef.name",
    name="secret-enumeration",
)


def match(
    n: int,
    *,
    rule: str = "r-1",
    name: str | None = "secret-read",
    level: str = "informational",
    generate: bool = False,
    user: str = "mallory@example.com",
    secret: str = "db-pass",
    at: datetime = BURST_START,
    cluster: str = "prod",
    fields: dict[str, str | None] | None = None,
) -> Match:
    finding = msgspec.convert(
        {
            "rule_id": rule, "title": "Secret read", "level": level, "cluster": cluster,
            "audit_id": f"00000000-0000-0000-0000-{n:012d}", "at": format_utc(at), "identity": user,
            "verb": "get", "resource": "secrets", "namespace": "prod", "name": secret,
            "source_ips": ["203.0.113.9"], "details": '{"fields":{"verb":"get"}}',
            "ingested_at": format_utc(BURST_START),
        },
        FindingRecord,
    )  # fmt: skip
    values = {"user.username": user, "objectRef.name": secret} if fields is None else fields
    return Match(rule, name, level, generate, finding, values)


def reads(secrets: list[str], *, first: int = 0, every: float = 60.0, **kwargs: Any) -> list[Match]:
    start = kwargs.pop("at", BURST_START)
    return [
        match(first + i, secret=s, at=start + timedelta(seconds=every * i), **kwargs) for i, s in enumerate(secrets)
    ]


def enumeration(tmp_path: Path, pager: Pager, **kwargs: Any) -> Correlations:
    return Correlations(
        LocalCounter(tmp_path / "alerts.json", clock=ManualClock(NOW.timestamp())), pager, [ENUMERATION], **kwargs
    )


# ---------------------------------------------------------------- value_count


def test_five_distinct_secrets_in_ten_minutes_page_once_repeats_do_not_count(tmp_path: Path) -> None:
    pager = Pager()
    alerts = enumeration(tmp_path, pager)
    assert alerts.observe(reads(["a", "b", "a", "b", "c", "a", "d"])) == []  # four distinct, seven reads
    [alert] = alerts.observe(reads(["e"], first=7, at=BURST_START + timedelta(minutes=9)))
    assert (alert["rule"], alert["count"], alert["threshold"], alert["identity"]) == (
        "secret-enumeration", 5, 5, "mallory@example.com")  # fmt: skip
    assert alert["values"] == ["a", "b", "c", "d", "e"] and alert["field"] == "objectRef.name"
    assert alert["group"] == {"user.username": "mallory@example.com"} and alert["level"] == "medium"
    assert (alert["window_start"], alert["window_end"]) == ("2026-11-21T10:05:00Z", "2026-11-21T10:15:00Z")
    assert "first_denied" not in alert and alert["first_at"] == "2026-11-21T10:05:00.000000Z"
    alerts.observe(reads(["f", "g"], first=20, at=BURST_START + timedelta(minutes=9, seconds=30)))
    assert len(pager.sent) == 1  # the same burst: its buckets are claimed
    assert subject(alert) == (
        "auditlake medium: Many distinct secrets read by one identity: mallory@example.com 5x in prod"
    )


def test_distinct_values_outside_the_timespan_do_not_add_up(tmp_path: Path) -> None:
    pager = Pager()
    alerts = enumeration(tmp_path, pager)
    alerts.observe(reads(["a", "b", "c", "d", "e"], every=151))  # 5 distinct over 10 min 4 s
    assert pager.sent == []
    alerts.observe(reads(["a", "b", "c", "d", "e"], first=10, every=149, at=BURST_START + timedelta(hours=1)))
    assert [a["count"] for a in pager.sent] == [5]


def test_value_count_groups_apart_and_skips_matches_without_the_value(tmp_path: Path) -> None:
    pager = Pager()
    alerts = enumeration(tmp_path, pager)
    batch = reads(["a", "b", "c"]) + reads(["d", "e"], first=3, user="eve")
    batch += [match(9, fields={"user.username": "mallory@example.com", "objectRef.name": None})]
    batch += [match(10, name="other-rule", secret="z")]  # not a base rule of the correlation
    assert alerts.observe(batch) == []
    assert len(alerts.observe(reads(["d", "e"], first=20, every=1))) == 1  # mallory: a b c d e


def test_a_base_rule_is_found_by_id_as_well_as_by_name(tmp_path: Path) -> None:
    pager = Pager()
    by_id = Correlation(**{**vars(ENUMERATION), "rules": ("r-1",)})
    alerts = Correlations(LocalCounter(tmp_path / "a.json"), pager, [by_id])
    alerts.observe(reads(list("abcde"), name=None))
    assert len(pager.sent) == 1


def test_a_redelivered_value_count_batch_is_counted_once(tmp_path: Path) -> None:
    pager = Pager()
    alerts = enumeration(tmp_path, pager, thresholds={"secret-enumeration": 3})
    batch = reads(["a", "b"])
    alerts.observe(batch)
    alerts.observe(batch)
    assert pager.sent == []
    alerts.observe(reads(["c"], first=5))
    assert [a["count"] for a in pager.sent] == [3]


def test_buckets_widen_with_the_timespan_so_a_span_claims_at_most_seven() -> None:
    assert Window(60).width == 10 and Window(600).width == 100 and Window(1800).width == 300
    for span in (1, 60, 61, 599, 600, 3600, 86400, 7 * 86400):
        window = Window(span)
        start = datetime(2026, 11, 21, 10, 4, 59, 999999, tzinfo=UTC)
        slots = range(window.slot(start), window.slot(start + window.span) + 1)
        assert len(slots) <= 7, span
    assert Window(600).bucket_of(datetime(2026, 11, 21, 10, 5, 59, tzinfo=UTC)) == "2026-11-21T10:05:00"


def test_only_rising_conditions_are_counted_at_ingest() -> None:
    assert ingest_problem(ENUMERATION, 5) is None
    falling = Correlation(**{**vars(ENUMERATION), "condition": ("lt", 5)})
    assert "hunt" in (ingest_problem(falling, 5) or "")
    gt = Correlation(**{**vars(ENUMERATION), "condition": ("gt", 4)})
    assert ingest_problem(gt, 4) is None


def test_a_gt_condition_fires_one_above_and_a_falling_one_never_pages(tmp_path: Path) -> None:
    pager = Pager()
    gt = Correlation(**{**vars(ENUMERATION), "condition": ("gt", 4)})
    lt = Correlation(**{**vars(ENUMERATION), "name": "few", "condition": ("lt", 2)})
    alerts = Correlations(LocalCounter(tmp_path / "a.json"), pager, [gt, lt])
    alerts.observe(reads(list("abcd")))
    assert pager.sent == []
    alerts.observe(reads(["e"], first=9))
    assert [(a["rule"], a["count"], a["threshold"]) for a in pager.sent] == [("secret-enumeration", 5, 5)]


def test_the_rules_in_force_are_asked_every_batch(tmp_path: Path) -> None:
    pager = Pager()
    current: list[Correlation] = []
    alerts = Correlations(LocalCounter(tmp_path / "a.json"), pager, lambda: current)
    assert alerts.observe(reads(list("abcde"))) == []  # no correlation yet
    current = [ENUMERATION]  # a custom rule pushed since
    alerts.observe(reads(list("fghij"), first=10))
    assert len(pager.sent) == 1


def test_several_group_by_fields_make_one_stream_per_combination(tmp_path: Path) -> None:
    pager = Pager()
    per_namespace = Correlation(**{**vars(ENUMERATION), "group_by": ("user.username", "objectRef.namespace")})
    alerts = Correlations(LocalCounter(tmp_path / "a.json"), pager, [per_namespace], thresholds={
        "secret-enumeration": 2})  # fmt: skip
    one = [match(1, secret="a", fields={"user.username": "m|x", "objectRef.namespace": "p", "objectRef.name": "a"})]
    other = [match(2, secret="b", fields={"user.username": "m", "objectRef.namespace": "x|p", "objectRef.name": "b"})]
    assert alerts.observe(one + other) == []  # "m|x" + "p" and "m" + "x|p" are two streams
    again = [match(3, secret="c", fields={"user.username": "m|x", "objectRef.namespace": "p", "objectRef.name": "c"})]
    [alert] = alerts.observe(again)
    assert alert["group"] == {"user.username": "m|x", "objectRef.namespace": "p"} and alert["identity"] == "m%7Cx|p"


# ---------------------------------------------------------------- findings


def finding(n: int, *, secret: str = "db-pass", level: str = "high", **kwargs: Any) -> Match:
    return match(n, rule="f-1", name="secret-read-denied", level=level, generate=True, secret=secret, **kwargs)


def pages(tmp_path: Path, pager: Pager, clock: ManualClock | None = None, **kwargs: Any) -> FindingPages:
    return FindingPages(
        LocalPageClaims(tmp_path / "pages.json", clock=clock or ManualClock(NOW.timestamp())), pager, **kwargs
    )


def test_a_finding_is_paged_once_per_object_per_window(tmp_path: Path) -> None:
    clock, pager = ManualClock(NOW.timestamp()), Pager()
    findings = pages(tmp_path, pager, clock, dedup_minutes=60)
    assert len(findings.observe([finding(1), finding(2)])) == 1  # the same object twice: one page
    assert findings.observe([finding(3)]) == []  # and again within the window
    assert len(findings.observe([finding(4, secret="other")])) == 1  # another object
    assert len(findings.observe([finding(5, user="eve")])) == 1  # another identity
    clock.now += 59 * 60
    assert findings.observe([finding(6)]) == []
    clock.now += 61
    assert len(findings.observe([finding(7)])) == 1  # the window is over
    assert [a["audit_id"][-1] for a in pager.sent] == ["1", "4", "5", "7"]


def test_the_finding_alert_and_its_subject(tmp_path: Path) -> None:
    pager = Pager()
    pages(tmp_path, pager).observe([finding(1)])
    [alert] = pager.sent
    assert alert == {
        "rule": "f-1", "title": "Secret read", "level": "high", "cluster": "prod",
        "identity": "mallory@example.com", "verb": "get", "resource": "secrets", "namespace": "prod",
        "name": "db-pass", "at": "2026-11-21T10:05:00.000000Z", "audit_id": "00000000-0000-0000-0000-000000000001",
        "source_ips": ["203.0.113.9"], "details": {"fields": {"verb": "get"}},
    }  # fmt: skip
    assert subject(alert) == "auditlake high: Secret read by mallory@example.com in prod"
    long = {**alert, "title": "x" * 200}
    assert len(subject(long)) == 100


def test_only_generating_rules_at_or_above_the_level_page(tmp_path: Path) -> None:
    pager = Pager()
    findings = pages(tmp_path, pager, level="medium")
    batch = [finding(1, level="low"), finding(2, secret="b", level="medium"), finding(3, secret="c", level="critical")]
    batch += [match(4, level="critical", generate=False)]  # a base rule only correlations count
    findings.observe(batch)
    assert [a["level"] for a in pager.sent] == ["medium", "critical"]
    with pytest.raises(ValueError):
        pages(tmp_path, pager, level="severe")


def test_a_failed_finding_page_is_released_and_the_retry_pages_once(tmp_path: Path) -> None:
    pager = Pager(fail=1)
    findings = pages(tmp_path, pager)
    with pytest.raises(AlertError, match="SNS unreachable"):
        findings.observe([finding(1)])
    findings.observe([finding(1)])
    findings.observe([finding(1)])
    assert len(pager.sent) == 1


def test_the_watch_returns_bursts_and_findings_and_counts_them(tmp_path: Path) -> None:
    pager = Pager()
    metrics: list[tuple[str, float]] = []

    class Sink:
        def add_metric(self, name: str, unit: str, value: float) -> None:
            metrics.append((name, value))

    watch = Watch(enumeration(tmp_path, pager), None, pages(tmp_path, pager))
    published = watch.stored("prod", [*reads(list("abcde")), finding(9)], Sink())  # type: ignore[arg-type]
    assert [a["rule"] for a in published] == ["secret-enumeration", "f-1"] and pager.sent == published
    assert metrics == [("AlertsPublished", 2), ("FindingAlerts", 1)]
    assert Watch().stored("prod", [finding(10)]) == []
