"""doctor's lifecycle check: no rule on an archive bucket may expire its keys sooner than the
stack's retention parameters (what the digests record, and all verify accepts as expired)."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from auditlake.cli.doctor import Doctor
from tests import lifecycle

STACK = SimpleNamespace(parameters={"AuditRetentionDays": "365", "EventsRetentionDays": "90"})


def check(rules: list[dict[str, Any]], store: str = "audit") -> tuple[bool, str, str]:
    return Doctor._sooner_expiry(STACK, {"Rules": rules}, store)  # type: ignore[arg-type]


def test_the_templates_rules_pass() -> None:
    assert check(lifecycle.template_lifecycle("AuditArchiveBucket")) == (True, "", "")
    assert check(lifecycle.template_lifecycle("EventsArchiveBucket"), "events") == (True, "", "")


def test_an_added_shorter_rule_fails_naming_it() -> None:
    rules = lifecycle.template_lifecycle("AuditArchiveBucket")
    ok, what, fix = check([*rules, {"ID": "abort-incomplete-uploads-v2", "Status": "Enabled",
                                    "Filter": {"Prefix": "audit/"}, "Expiration": {"Days": 1}}])  # fmt: skip
    assert not ok
    assert what == (
        "rule abort-incomplete-uploads-v2 expires audit/ keys (prefix 'audit/') after 1 days, "
        "the stack's AuditRetentionDays is 365"
    )
    assert "abort-incomplete-uploads-v2" in fix
    ok, what, _ = check([*rules, {"ID": "d", "Status": "Enabled", "Filter": {"Prefix": ""},
                                  "Expiration": {"Date": datetime(2020, 1, 1, tzinfo=UTC)}}])  # fmt: skip
    assert not ok and "rule d expires audit/ keys (every key) on 2020-01-01" in what and "digests/" in what


def test_the_events_bucket_is_held_to_events_retention() -> None:
    ok, what, _ = check([{"ID": "e", "Status": "Enabled", "Filter": {"Prefix": "events/"},
                          "Expiration": {"Days": 30}}], "events")  # fmt: skip
    assert not ok and "EventsRetentionDays is 90" in what
