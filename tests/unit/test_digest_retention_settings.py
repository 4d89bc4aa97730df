"""The digest function's retention settings: the stack's AuditRetentionDays / EventsRetentionDays
reach the Digester (recorded, signed, in every digest) or are refused at cold start."""

from __future__ import annotations

import pytest

from auditlake.assembly import digest_retention
from auditlake.settings import AUDIT_RETENTION_DAYS, EVENTS_RETENTION_DAYS, Settings, SettingsError


def test_the_stacks_retention_is_what_each_digest_records() -> None:
    settings = Settings.from_env({AUDIT_RETENTION_DAYS: "365", EVENTS_RETENTION_DAYS: "90"})
    assert digest_retention(settings) == {"audit/": 365, "digests/": 365, "events/": 90}


def test_without_them_nothing_is_recorded_and_nothing_will_be_accepted_as_expired() -> None:
    assert digest_retention(Settings.from_env({})) == {}
    assert digest_retention(Settings.from_env({EVENTS_RETENTION_DAYS: "90"})) == {"events/": 90}


@pytest.mark.parametrize("value", ["0", "-1", "365d", "1.5"])
def test_a_retention_that_is_not_whole_days_is_refused(value: str) -> None:
    with pytest.raises(SettingsError, match=f"{AUDIT_RETENTION_DAYS} must be a whole number of days"):
        Settings.from_env({AUDIT_RETENTION_DAYS: value})
