"""403-burst alerts, the built-in forbidden correlations (detect/builtin/forbidden.yml): the matches of
403s counted per (cluster, identity) by audit ID over any 60 seconds of event time, one page per burst,
counters that expire a day after they last counted (the ingest clock)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auditlake.detect.correlate import Bucket, find_bursts
from auditlake.trust.alerts import (
    KEEP_SECONDS,
    MINUTE,
    RULE_SECRETS,
    AlertError,
    Correlations,
    LocalCounter,
    bucket_of,
    forbidden_thresholds,
    subject,
)
from tests.helpers import BURST_START, ManualClock, Pager, forbidden_rules
from tests.helpers import forbidden_matches as denials

NOW = datetime.now(UTC)  # the ingest clocks start at the real now (the fixtures are far from it)


def forbidden(counter: LocalCounter, pager: Pager, threshold: int = 10, secrets_threshold: int = 0) -> Correlations:
    """The built-in forbidden correlations with the stack's thresholds, as the functions build them."""
    thresholds = forbidden_thresholds(threshold, secrets_threshold)
    return Correlations(counter, pager, forbidden_rules().correlations, thresholds=thresholds)


def bursts(tmp_path: Path, pager: Pager, clock: ManualClock | None = None, **kwargs: int) -> Correlations:
    return forbidden(
        LocalCounter(tmp_path / "alerts.json", clock=clock or ManualClock(NOW.timestamp())), pager, **kwargs
    )


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_ten_denials_in_a_minute_page_once_nine_do_not(tmp_path: Path) -> None:
    pager = Pager()
    alerts = bursts(tmp_path, pager)
    assert alerts.observe(denials(9)) == [] and pager.sent == []
    alerts.observe(denials(1, first=9, start=BURST_START + timedelta(seconds=9)))  # the tenth, in a later batch
    alerts.observe(denials(5, first=10, start=BURST_START + timedelta(seconds=10)))  # more in that minute: no page
    [alert] = pager.sent
    assert (alert["cluster"], alert["identity"], alert["count"], alert["rule"]) == (
        "prod",
        "mallory@example.com",
        10,
        "forbidden",
    )
    assert alert["window_start"] == "2026-11-21T10:05:00Z" and alert["window_end"] == "2026-11-21T10:06:00Z"
    assert (alert["first_denied"], alert["last_denied"]) == (
        "2026-11-21T10:05:00.000000Z",
        "2026-11-21T10:05:09.000000Z",
    )
    assert alert["source_ips"] == ["203.0.113.0", "203.0.113.1", "203.0.113.2"]
    assert alert["resources"] == ["secrets prod/db-pass"] and alert["verbs"] == ["get"]
    assert (
        subject(alert)
        == "auditlake: mallory@example.com denied 10x: get secrets prod/db-pass in prod at 2026-11-21T10:05:00Z"
    )


def test_a_burst_straddling_a_clock_minute_pages(tmp_path: Path) -> None:
    """The demo's shape: 9 denials in one clock minute and 6 in the next, all within 60 seconds."""
    pager = Pager()
    alerts = bursts(tmp_path, pager)
    alerts.observe(denials(9, start=at("2026-11-21T10:05:51"), every=1))
    alerts.observe(denials(6, start=at("2026-11-21T10:06:00"), every=5, first=9))
    [alert] = pager.sent
    assert (alert["count"], alert["window_start"], alert["last_denied"]) == (
        15, "2026-11-21T10:05:51Z", "2026-11-21T10:06:25.000000Z")  # fmt: skip


def test_eighteen_denials_across_a_minute_boundary_in_one_batch_page_once(tmp_path: Path) -> None:
    pager = Pager()
    bursts(tmp_path, pager).observe(denials(18, start=at("2026-11-21T10:05:45"), every=2))  # 10:05:45 .. 10:06:19
    assert [a["count"] for a in pager.sent] == [18]


def test_exactly_sixty_seconds_is_within_the_minute_as_the_query_counts_it(tmp_path: Path) -> None:
    pager = Pager()
    alerts = bursts(tmp_path, pager, threshold=3)
    alerts.observe(denials(3, start=at("2026-11-21T10:05:00"), every=30))  # 10:05:00, 10:05:30, 10:06:00
    assert [a["count"] for a in pager.sent] == [3]
    other = bursts(tmp_path / "x", Pager(), threshold=3)
    assert other.observe(denials(3, start=at("2026-11-21T10:05:00"), every=30.5)) == []  # 61 s apart


def test_a_sustained_attack_pages_once_a_minute_not_once_a_batch(tmp_path: Path) -> None:
    pager = Pager()
    alerts = bursts(tmp_path, pager)
    for second in range(0, 300, 5):  # one denial a second for five minutes, five per batch
        alerts.observe(denials(5, start=BURST_START + timedelta(seconds=second), first=second))
    starts = [a["window_start"] for a in pager.sent]
    assert len(starts) == 5, starts
    gaps = [(at(b[:-1]) - at(a[:-1])).total_seconds() for a, b in itertools.pairwise(starts)]
    assert all(60 < gap <= 70 for gap in gaps), gaps  # the next 10-second boundary after each paged minute


def test_two_bursts_two_pages_and_other_identities_apart(tmp_path: Path) -> None:
    pager = Pager()
    alerts = bursts(tmp_path, pager)
    later = BURST_START + timedelta(seconds=90)
    alerts.observe(denials(10) + denials(10, start=later, first=100))
    alerts.observe(denials(9, user="eve", first=200))
    assert [(a["identity"], a["window_start"][11:19]) for a in pager.sent] == [
        ("mallory@example.com", "10:05:00"), ("mallory@example.com", "10:06:30")]  # fmt: skip


def test_bursts_delivered_out_of_order_each_page_once(tmp_path: Path) -> None:
    pager = Pager()
    alerts = bursts(tmp_path, pager)
    alerts.observe(denials(10, start=BURST_START + timedelta(minutes=5), first=100))
    alerts.observe(denials(10))  # five minutes earlier, delivered late
    alerts.observe(denials(10) + denials(10, start=BURST_START + timedelta(minutes=5), first=100))
    assert sorted(a["window_start"] for a in pager.sent) == ["2026-11-21T10:05:00Z", "2026-11-21T10:10:00Z"]


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
    assert subject(pager.sent[0]).startswith(
        "auditlake: mallory@example.com denied 3x: get secrets prod/db-pass in prod"
    )


def test_an_old_log_pages_once_and_a_reingest_within_a_day_pages_nothing(tmp_path: Path) -> None:
    """The forensic case: last week's log, ingested now, reports its burst; counters live a day from
    when they last counted, not from their event time."""
    clock, pager = ManualClock(NOW.timestamp()), Pager()
    alerts = bursts(tmp_path, pager, clock)
    week_ago = datetime.fromtimestamp(clock.now, UTC) - timedelta(days=7)
    for batch in range(0, 34, 4):  # 34 denials within a minute, in batches of four
        alerts.observe(denials(min(4, 34 - batch), start=week_ago + timedelta(seconds=batch), first=batch))
    [alert] = pager.sent  # paged by the batch that reached ten
    assert alert["count"] == 12 and alert["window_start"] == f"{week_ago:%Y-%m-%dT%H:%M:%SZ}"
    clock.now += KEEP_SECONDS - 60  # re-ingested the next day, within the counters' life
    assert alerts.observe(denials(34, start=week_ago)) == []
    clock.now += KEEP_SECONDS + 1  # a day after they last counted, the counters are gone
    assert len(alerts.observe(denials(34, start=week_ago))) == 1


def test_counters_expire_by_the_ingest_clock_even_a_year_from_the_fixtures(tmp_path: Path) -> None:
    clock = ManualClock(NOW.timestamp())
    clock.now = (BURST_START + timedelta(days=400)).timestamp()
    counter_file = tmp_path / "alerts.json"
    alerts = forbidden(LocalCounter(counter_file, clock=clock), Pager())
    alerts.observe(denials(5))
    assert "2026-11-21T10:05:00" in counter_file.read_text()  # kept although its event time is 400 days old
    clock.now += KEEP_SECONDS + 1
    alerts.observe(denials(1, user="eve", first=99))  # any later write purges what expired
    assert "mallory" not in counter_file.read_text()


def test_an_older_releases_counter_file_is_not_an_error(tmp_path: Path) -> None:
    old = '{"forbidden#prod#2026-11-21T10:05#eve": {"expires_at": 4102444800, "alerted": false, "ids": ["a"]}}'
    (tmp_path / "alerts.json").write_text(old)
    pager = Pager()
    bursts(tmp_path, pager).observe(denials(10))
    assert len(pager.sent) == 1 and "eve" not in (tmp_path / "alerts.json").read_text()


def test_the_local_counter_reads_and_writes_its_state_once_a_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alerts = bursts(tmp_path, Pager())
    writes: list[int] = []
    original = Path.write_bytes
    monkeypatch.setattr(Path, "write_bytes", lambda self, data: writes.append(1) or original(self, data))
    many = [r for n in range(50) for r in denials(2, user=f"user-{n}", first=2 * n)]
    alerts.observe(many)
    assert len(writes) == 1


def test_thresholds_are_checked_and_zero_turns_a_correlation_off(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        forbidden(LocalCounter("x"), Pager(), threshold=-1)
    pager = Pager()
    assert bursts(tmp_path, pager, threshold=0).observe(denials(30)) == [] and pager.sent == []


def test_buckets_are_ten_seconds_and_sort_in_time() -> None:
    assert bucket_of(at("2026-11-21T10:05:59.999999")) == "2026-11-21T10:05:50"
    assert (
        bucket_of(at("0001-01-01T00:00:00"))
        < bucket_of(at("1969-12-31T23:59:59"))
        < bucket_of(at("9999-12-31T23:59:59"))
    )


def test_the_range_read_back_is_a_minute_either_side_held_at_the_calendars_edges() -> None:
    around = MINUTE.around
    assert around(["2026-11-21T10:05:50", "2026-11-21T10:05:00"]) == ("2026-11-21T10:04:00", "2026-11-21T10:06:50")
    assert around(["0001-01-01T00:00:10", "9999-12-31T23:59:50"]) == ("0001-01-01T00:00:00", "9999-12-31T23:59:50")


def test_bursts_at_the_calendars_edges_do_not_overflow() -> None:
    edge = {"9999-12-31T23:59:50": Bucket({f"9999-12-31T23:59:5{n}.000000Z|id{n}" for n in range(10)})}
    [burst] = find_bursts(edge, MINUTE, 10)
    assert burst.buckets == ["9999-12-31T23:59:50"]


def test_a_page_in_year_one_names_its_window_with_four_digit_years(tmp_path: Path) -> None:
    pager = Pager()
    bursts(tmp_path, pager).observe(denials(10, start=at("0001-01-01T00:00:00")))
    [alert] = pager.sent
    assert (alert["window_start"], alert["window_end"]) == ("0001-01-01T00:00:00Z", "0001-01-01T00:01:00Z")


def test_a_burst_whose_minute_ends_in_a_paged_bucket_is_part_of_that_page(tmp_path: Path) -> None:
    """Found by the property below: two denials at 10:10:50 form a burst whose minute ends at
    10:11:50.000, inside the first bucket of a burst from 10:11:51 that was delivered (and paged)
    first. One identity, one page for both: the next may start only after the paged buckets."""
    pager = Pager()
    alerts = bursts(tmp_path, pager, threshold=2)
    alerts.observe(denials(2, first=0, start=at("2026-11-21T10:11:51"), every=0))
    alerts.observe(denials(2, first=2, start=at("2026-11-21T10:10:50"), every=0))
    assert [a["window_start"] for a in pager.sent] == ["2026-11-21T10:11:51Z"]
    alerts.observe(denials(2, first=4, start=at("2026-11-21T10:09:49"), every=0))  # a minute ending in 10:10:40
    assert [a["window_start"] for a in pager.sent] == ["2026-11-21T10:11:51Z", "2026-11-21T10:09:49Z"]


def minute_buckets(start: datetime) -> set[str]:
    """The buckets a burst from ``start`` claims: every one its minute touches, both ends included."""
    return {bucket_of(start + timedelta(seconds=s)) for s in (*range(0, 60, 10), 60)}


# ---------------------------------------------------------------- properties

SECONDS = st.lists(st.integers(min_value=0, max_value=600), min_size=1, max_size=60)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(offsets=SECONDS, threshold=st.integers(min_value=2, max_value=8), cut=st.integers(1, 7), data=st.data())
def test_every_burst_pages_once_whatever_the_batching_and_redelivery(
    tmp_path_factory: pytest.TempPathFactory, offsets: list[int], threshold: int, cut: int, data: st.DataObject
) -> None:
    """Denials delivered in any order, cut into any batches, some delivered twice: every page is a
    real burst (threshold denials within 60 s), pages never share a bucket, and every span that
    holds a burst shares a 10-second bucket of its minute with a paged minute (none missed; bursts
    whose minutes share a bucket are one page, as documented)."""
    records = [
        r
        for n, offset in enumerate(offsets)
        for r in denials(1, first=n, start=BURST_START + timedelta(seconds=offset))
    ]
    order = data.draw(st.permutations(records))
    again = data.draw(st.lists(st.sampled_from(records), max_size=5))
    pager = Pager()
    alerts = bursts(tmp_path_factory.mktemp("p"), pager, threshold=threshold)
    stream = [*order, *again]
    for start in range(0, len(stream), cut):
        alerts.observe(stream[start : start + cut])

    times = sorted(BURST_START + timedelta(seconds=o) for o in offsets)
    claimed: list[set[str]] = []
    for alert in pager.sent:
        first = at(alert["first_denied"][:-1])
        inside = [t for t in times if first <= t <= first + timedelta(seconds=60)]
        assert threshold <= alert["count"] <= len(inside)  # counted when it paged; more may come
        buckets = minute_buckets(first)
        assert all(not (buckets & other) for other in claimed), "two pages for one burst"
        claimed.append(buckets)
    paged = set().union(*claimed) if claimed else set()
    for t in times:
        span = [u for u in times if t <= u <= t + timedelta(seconds=60)]
        if len(span) >= threshold:
            assert minute_buckets(t) & paged, f"a burst of {len(span)} from {t} never paged"
