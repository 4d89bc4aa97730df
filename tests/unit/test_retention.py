"""When verify accepts that S3 expired an object: S3's arithmetic (days added to the write time,
rounded up to the next midnight UTC) under the retention the signed digests recorded, by digests
written at or after the object; and which bucket rules would expire keys sooner than recorded."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from auditlake.trust.retention import Recorded, Retention, describe, due, recorded_retention, sooner_rules

RECORDED = {"audit/": 365, "digests/": 365, "events/": 90}
RULES = [
    {"ID": "audit-expiry", "Status": "Enabled", "Filter": {"Prefix": "audit/"}, "Expiration": {"Days": 365}},
    {"ID": "digest-expiry", "Status": "Enabled", "Filter": {"Prefix": "digests/"}, "Expiration": {"Days": 400}},
    {"ID": "markers", "Status": "Enabled", "Filter": {}, "Expiration": {"ExpiredObjectDeleteMarker": True}},
    {"ID": "off", "Status": "Disabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 1}},
    {"ID": "tagged", "Status": "Enabled", "Filter": {"Tag": {"Key": "k", "Value": "v"}}, "Expiration": {"Days": 1}},
    {"ID": "big", "Status": "Enabled", "Filter": {"And": {"Prefix": "audit/", "ObjectSizeGreaterThan": 1000}},
     "Expiration": {"Days": 30}},
]  # fmt: skip


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_expiry_is_the_days_rounded_up_to_the_next_midnight() -> None:
    # S3's own example: written 2014-01-15 10:30, 3 days -> 2014-01-19 00:00.
    assert due(at("2014-01-15T10:30"), 3) == at("2014-01-19T00:00")
    # A write at 00:00 (a digest's window end) is due at that midnight + N days: no day added.
    assert due(at("2026-01-06T00:00"), 365) == at("2027-01-06T00:00")


def test_an_object_expires_only_by_a_digest_written_at_or_after_it() -> None:
    recorded = Recorded([(1, at("2026-01-01T01:05"), {"audit/": 30}), (2, at("2026-02-01T01:05"), RECORDED)])
    # Written after digest 1: its 30 days never applied; digest 2's 365 do.
    assert recorded.expiry("audit/x", at("2026-01-05T10:00"), at("2026-03-01T00:00")) is None
    assert recorded.expiry("audit/x", at("2026-01-05T10:00"), at("2027-01-06T00:00")) == 2
    assert recorded.expiry("audit/x", at("2026-01-05T10:00"), at("2027-01-05T23:59:59")) is None
    # Written before digest 1: its 30 days applied (a later raise to 365 does not bring it back).
    assert recorded.expiry("audit/x", at("2025-12-31T10:00"), at("2026-01-31T00:00")) == 1
    assert recorded.expiry("audit/x", at("2025-12-31T10:00"), at("2026-01-30T23:59")) is None
    # Written after every digest: nothing recorded since, nothing expires.
    assert recorded.expiry("audit/x", at("2026-03-01T00:00"), at("2099-01-01T00:00")) is None
    # A prefix no digest recorded never expires; nor does anything under digests that record nothing.
    assert recorded.expiry("raw/x", at("2025-01-01T00:00"), at("2099-01-01T00:00")) is None
    assert (
        Recorded([(1, at("2026-01-01T00:00"), None)]).expiry("audit/x", at("2020-01-01T00:00"), at("2099-01-01T00:00"))
        is None
    )


def test_the_newest_digest_recording_the_shortest_retention_is_named() -> None:
    recorded = Recorded([(seq, at(f"2026-01-0{seq}T01:05"), RECORDED) for seq in (1, 2, 3)])
    assert recorded.expiry("events/x", at("2025-01-01T00:00"), at("2026-06-01T00:00")) == 3
    assert describe(RECORDED) == "audit/ 365 days, events/ 90 days, digests/ 365 days"


@pytest.mark.parametrize(
    "value",
    [None, "365", {"audit/": "365"}, {"audit/": 0}, {"audit/": True}, {"raw/": 1}, {"audit/": 1.5}],
)
def test_a_malformed_recorded_retention_expires_nothing(value: object) -> None:
    assert recorded_retention(value) is None


@pytest.mark.parametrize(
    ("rule", "finding"),
    [
        ({"Filter": {"Prefix": "audit/"}, "Expiration": {"Days": 1}},
         "expires audit/ keys (prefix 'audit/') after 1 days"),
        ({"Filter": {"Prefix": ""}, "Expiration": {"Days": 30}}, "expires audit/ keys (every key) after 30 days"),
        ({"Prefix": "dig", "Expiration": {"Days": 364}}, "expires digests/ keys (prefix 'dig') after 364 days"),
        ({"Filter": {"And": {"Prefix": "audit/dt=2026", "ObjectSizeGreaterThan": 1}}, "Expiration": {"Days": 2}},
         "expires audit/ keys (prefix 'audit/dt=2026') after 2 days"),
        ({"Filter": {"Prefix": "audit/"}, "Expiration": {"Date": datetime(2099, 1, 1, tzinfo=UTC)}},
         "expires audit/ keys (prefix 'audit/') on 2099-01-01"),
    ],
)  # fmt: skip
def test_a_rule_sooner_than_recorded_is_found(rule: dict[str, object], finding: str) -> None:
    found = sooner_rules(RECORDED, "audit", [{"ID": "x", "Status": "Enabled", **rule}])
    assert [(why, kept) for _, why, kept in found][:1] == [(finding, 365)]


@pytest.mark.parametrize(
    "rule",
    [
        {"Status": "Enabled", "Filter": {"Prefix": "audit/"}, "Expiration": {"Days": 365}},  # as recorded
        {"Status": "Enabled", "Filter": {"Prefix": "audit/"}, "Expiration": {"Days": 730}},  # longer
        {"Status": "Disabled", "Filter": {"Prefix": "audit/"}, "Expiration": {"Days": 1}},
        {"Status": "Enabled", "Filter": {"Prefix": "raw/"}, "Expiration": {"Days": 1}},  # not ours
        {"Status": "Enabled", "Filter": {}, "Expiration": {"ExpiredObjectDeleteMarker": True}},
        {"Status": "Enabled", "Filter": {"Prefix": "audit/"}, "NoncurrentVersionExpiration": {"NoncurrentDays": 1}},
    ],
)
def test_rules_no_sooner_than_recorded_are_not_found(rule: dict[str, object]) -> None:
    assert sooner_rules(RECORDED, "audit", [{"ID": "x", **rule}]) == []
    # The events bucket's rules are held to events/'s 90 days only.
    assert sooner_rules(RECORDED, "events", [{"ID": "e", "Status": "Enabled", "Filter": {"Prefix": ""},
                                              "Expiration": {"Days": 90}}]) == []  # fmt: skip


@pytest.mark.parametrize(
    ("key", "size", "when"),
    [
        ("digests/0000000001.json", None, "2027-02-10T00:00"),  # its own rule: 400 days
        ("audit/x", 10, "2027-01-06T00:00"),
        ("audit/x", 5000, "2026-02-05T00:00"),  # the size-filtered rule is sooner
        ("audit/x", None, "2027-01-06T00:00"),  # size unknown: a size-filtered rule is not assumed
        ("events/x", 10, None),  # disabled and tag-filtered rules never apply
    ],
)
def test_doctor_reads_rules_as_s3_matches_them(key: str, size: int | None, when: str | None) -> None:
    retention = Retention.from_lifecycle(RULES)
    assert retention.eligible(key, at("2026-01-05T10:01"), size) == (at(when) if when else None)
    assert retention.describe("digests/0000000001.json") == "400 days" and Retention().describe("x") == "never"
