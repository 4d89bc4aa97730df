"""When verify accepts that S3 expired an object: S3's arithmetic (days added to the write time,
rounded up to the next midnight UTC) and its rule matching (prefix, size, status, tags)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from auditlake.retention import Retention

RULES = [
    {"ID": "audit-expiry", "Status": "Enabled", "Filter": {"Prefix": "audit/"}, "Expiration": {"Days": 365}},
    {"ID": "digest-expiry", "Status": "Enabled", "Filter": {"Prefix": "digests/"}, "Expiration": {"Days": 400}},
    {"ID": "markers", "Status": "Enabled", "Filter": {}, "Expiration": {"ExpiredObjectDeleteMarker": True}},
    {"ID": "off", "Status": "Disabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 1}},
    {"ID": "tagged", "Status": "Enabled", "Filter": {"Tag": {"Key": "k", "Value": "v"}}, "Expiration": {"Days": 1}},
    {"ID": "big", "Status": "Enabled", "Filter": {"And": {"Prefix": "audit/", "ObjectSizeGreaterThan": 1000}},
     "Expiration": {"Days": 30}},
]  # fmt: skip
RETENTION = Retention.from_lifecycle(RULES)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_expiry_is_the_days_rounded_up_to_the_next_midnight() -> None:
    # S3's own example: written 2014-01-15 10:30, 3 days -> 2014-01-19 00:00.
    assert Retention.days(3).eligible("audit/x", at("2014-01-15T10:30")) == at("2014-01-19T00:00")
    written = at("2026-01-05T10:01")
    assert RETENTION.eligible("audit/x", written) == at("2027-01-06T00:00")
    assert not RETENTION.expired("audit/x", written, at("2027-01-05T23:59:59"))
    assert RETENTION.expired("audit/x", written, at("2027-01-06T00:00"))


def test_a_window_ending_at_midnight_bounds_its_files_exactly() -> None:
    """A file written before 00:00 (its digest's window end) is due at that midnight + N days:
    the bound must not add a day, or a correctly expired file reads as missing for a day."""
    assert RETENTION.eligible("audit/x", at("2026-01-06T00:00")) == at("2027-01-06T00:00")


@pytest.mark.parametrize(
    ("key", "size", "due"),
    [
        ("digests/0000000001.json", None, "2027-02-10T00:00"),  # its own rule: 400 days
        ("audit/x", 10, "2027-01-06T00:00"),
        ("audit/x", 5000, "2026-02-05T00:00"),  # the size-filtered rule is sooner
        ("audit/x", None, "2027-01-06T00:00"),  # size unknown: a size-filtered rule is not assumed
        ("events/x", 10, None),  # disabled and tag-filtered rules never apply
    ],
)
def test_rules_match_as_s3_matches_them(key: str, size: int | None, due: str | None) -> None:
    assert RETENTION.eligible(key, at("2026-01-05T10:01"), size) == (at(due) if due else None)


def test_no_rules_expire_nothing() -> None:
    assert not Retention().expired("audit/x", at("1990-01-01T00:00"), at("2026-01-01T00:00"))
    assert Retention().describe("digests/1") == "never"
    assert RETENTION.describe("digests/0000000001.json") == "400 days"
