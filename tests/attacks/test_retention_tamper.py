"""Tampering with retention, so that removals pass as S3's expiry (the red team's findings on issue
12 item 9): verify must not be fooled, and must not cry wolf when the retention honestly changes.

The lakes are tests/integration/test_lifecycle.py's: the template's buckets on moto (Object Lock,
lifecycle rules), digests written by a digest function that records the template's retention
(``audit/`` and ``digests/`` 365 days, ``events/`` 90), dated on a calendar relative to today;
verify runs at ``NOW`` (a year and a day after the first digest) unless a test moves its clock.

- F1: whoever may change a bucket's lifecycle rules adds a short rule (a day, a past Date, a
  ``digests/`` rule) and removes young files, or lets S3 remove them: still missing, and the rule
  is a RETENTION finding.
- F2: no option claims a shorter retention.
- F3: retention raised, or expiry suspended (a legal hold), after S3 expired honestly: no alarm.
- F4: a recorded head (``--expect-head``) whose digest expired is checked through the next digest's
  signed link, or said to be unchecked.
- F5: a digest is accepted as expired only from its real write time's due date, not a day early.
- F6: a sealed file overwritten with as many bytes straight into Deep Archive is altered.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from auditlake.cli import main
from tests import lifecycle
from tests.helpers import AwsStack
from tests.integration import test_lifecycle
from tests.integration.test_lifecycle import DAY, MIDNIGHT, NOW, Lake, _key, a_year_later, kinds

lake = test_lifecycle.lake  # the year-old lake (a fixture), shared with the lifecycle tests


def add_rule(lake: Lake, store: str, rule: dict[str, object]) -> None:
    bucket = lake.buckets[store]
    lifecycle.put(lake.s3, bucket, [*lifecycle.rules(lake.s3, bucket), rule])


@pytest.fixture
def aged(aws: AwsStack, tmp_path: Path) -> Lake:
    """As `lake`, with files of several ages (M: yesterday's midnight; NOW = M + 12 h): e100, an
    events file 100 days old (digest 1); mid, 30 days (digest 2); day, 1 day (digest 3); new,
    sealed half an hour before NOW (digest 4)."""
    built = Lake.empty(aws, tmp_path)
    for name, store, days_ago in (("e100", "events", 100), ("mid", "audit", 30), ("day", "audit", 1)):
        at = MIDNIGHT - timedelta(days=days_ago) + timedelta(hours=10, minutes=1)
        built.write(name, _key(store, at, name), at)
        built.seal(at.replace(minute=0) + timedelta(hours=1), start=at.replace(minute=0))
    at = MIDNIGHT + timedelta(hours=11, minutes=1)
    built.write("new", _key("audit", at, "new"), at)
    built.seal(MIDNIGHT + timedelta(hours=11, minutes=30))
    return built


def retention_findings(report: object) -> set[str]:
    return {key for kind, key in kinds(report) if kind == "retention"}  # type: ignore[arg-type]


# ---------------------------------------------------------------- F1: a rule added to the bucket


def test_a_one_day_rule_does_not_excuse_removing_a_young_file(lake: Lake) -> None:
    a_year_later(lake)
    add_rule(lake, "audit", {"ID": "abort-incomplete-uploads-v2", "Status": "Enabled",
                             "Filter": {"Prefix": "audit/"}, "Expiration": {"Days": 1}})  # fmt: skip
    lake.remove("audit", lake.files["b1"])  # a day short of a year
    report = lake.verify()
    assert ("missing", lake.files["b1"]) in kinds(report)
    assert retention_findings(report) == {f"{lake.buckets['audit']} rule abort-incomplete-uploads-v2"}
    assert lake.files["b1"] not in report.expired_files


def test_a_past_date_rule_does_not_excuse_removing_a_file_sealed_hours_ago(lake: Lake) -> None:
    a_year_later(lake)
    add_rule(lake, "audit", {"ID": "x", "Status": "Enabled", "Filter": {"Prefix": "audit/"},
                             "Expiration": {"Date": datetime(2020, 1, 1, tzinfo=UTC)}})  # fmt: skip
    lake.remove("audit", lake.files["b1"])
    lake.remove("audit", lake.files["c1"])  # sealed by the newest digest, 11 h ago
    report = lake.verify()
    assert {("missing", lake.files["b1"]), ("missing", lake.files["c1"])} <= kinds(report)
    assert retention_findings(report)


def test_a_digests_rule_does_not_cut_the_chain_short(lake: Lake) -> None:
    """Every digest but the newest removed (a digests/ Date rule): the files they sealed would be
    in an expired gap, unprovable; the newest digest's signed link dates its predecessor a day
    short of a year, so the gap is not accepted."""
    a_year_later(lake)
    add_rule(lake, "audit", {"ID": "x", "Status": "Enabled", "Filter": {"Prefix": "digests/"},
                             "Expiration": {"Date": datetime(2020, 1, 1, tzinfo=UTC)}})  # fmt: skip
    for key in lake.digests[:3]:
        lake.remove("audit", key)
    lake.remove("audit", lake.files["b1"])
    report = lake.verify()
    assert ("chain", lake.digests[3]) in kinds(report) and report.expired_digests == []
    assert retention_findings(report)


def test_s3_removing_young_files_under_an_added_rule_is_caught(aged: Lake) -> None:
    """Only s3:PutLifecycleConfiguration: a one-day rule on each bucket, and S3 (simulated) hides
    mid, day, e100 and digests 1-3 behind delete markers. No DeleteObject needed, none excused."""
    a_year_later(aged)
    for store in ("audit", "events"):
        add_rule(aged, store, {"ID": "tidy", "Status": "Enabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 1}})
    applied = {n: lifecycle.Lifecycle(aged.s3, b).apply(NOW) for n, b in aged.buckets.items()}
    assert aged.files["mid"] in applied["audit"].expired and aged.digests[1] in applied["audit"].expired
    report = aged.verify()
    assert not report.ok and report.expired_digests == [] and report.expired_files == []
    assert ("chain", aged.digests[3]) in kinds(report)
    assert retention_findings(report) == {f"{aged.buckets['audit']} rule tidy", f"{aged.buckets['events']} rule tidy"}


def test_verify_stack_reports_the_rule_and_the_removal(lake: Lake, aws: AwsStack) -> None:
    a_year_later(lake)
    add_rule(lake, "audit", {"ID": "x", "Status": "Enabled", "Filter": {"Prefix": "audit/"}, "Expiration": {"Days": 1}})
    lake.remove("audit", lake.files["c1"])  # sealed a day before this run's real clock
    name = lake.stack(aws)
    result = CliRunner(mix_stderr=False).invoke(main, ["verify", "--stack", name, "--max-age", "3d"])
    assert result.exit_code == 1
    assert f"MISSING        {lake.files['c1']}" in result.stdout
    assert f"RETENTION      {lake.buckets['audit']} rule x  expires audit/ keys" in result.stdout
    # F2: no option claims a retention; verify takes only what the digests recorded.
    claimed = CliRunner(mix_stderr=False).invoke(
        main, ["verify", "--stack", name, "--max-age", "3d", "--retention-days", "1"]
    )
    assert claimed.exit_code == 2 and "No such option: --retention-days" in claimed.stderr


# ---------------------------------------------------------------- F3: honest changes, no false alarm


def test_retention_raised_after_s3_expired_files_is_no_alarm(lake: Lake) -> None:
    a_year_later(lake)  # S3 expired a1, a2, digest 1 and e1 at 365/90 days
    lifecycle.put(lake.s3, lake.buckets["audit"],
                  lifecycle.template_lifecycle("AuditArchiveBucket", {"AuditRetentionDays": 730}))  # fmt: skip
    lifecycle.put(lake.s3, lake.buckets["events"],
                  lifecycle.template_lifecycle("EventsArchiveBucket", {"EventsRetentionDays": 180}))  # fmt: skip
    report = lake.verify()
    assert report.ok, report.findings
    assert report.expired_digests == [1] and lake.files["e1"] in report.expired_files


def test_expiry_suspended_for_a_legal_hold_is_no_alarm(lake: Lake) -> None:
    a_year_later(lake)
    rules = lifecycle.rules(lake.s3, lake.buckets["audit"])
    for rule in rules:
        if rule["ID"] in ("audit-expiry", "digest-expiry"):
            rule["Status"] = "Disabled"
    lifecycle.put(lake.s3, lake.buckets["audit"], rules)
    report = lake.verify()
    assert report.ok, report.findings


def test_the_honest_aged_lake_verifies_a_year_later(aged: Lake) -> None:
    applied = a_year_later(aged)
    assert applied["events"].expired == [aged.files["e100"]]
    report = aged.verify()
    assert report.ok and report.expired_files == [aged.files["e100"]], report.findings


# ---------------------------------------------------------------- F4: the recorded head expired


def test_a_recorded_head_that_expired_is_checked_through_the_next_digest(lake: Lake) -> None:
    first = (1, hashlib.sha256(lake.archives["audit"].get(lake.digests[0])).hexdigest())  # what an auditor recorded
    young = lake.verify(now=DAY + timedelta(days=1, hours=12), expected=first)
    assert young.ok and young.expected_head == "recorded head 1 held", young.findings
    a_year_later(lake)  # digest 1 expired
    held = lake.verify(expected=first)
    assert held.ok and held.expected_checked, held.findings
    assert held.expected_head == "recorded head 1 held (expired; digest 2 names its SHA-256)"
    forged = lake.verify(expected=(1, "0" * 64))
    assert ("head", lake.digests[1]) in kinds(forged) and not forged.expected_checked


def test_a_recorded_head_with_no_digest_left_to_name_it_is_said_unchecked(lake: Lake) -> None:
    """Two days later S3 has also removed digests 2 and 3: no remaining digest names digest 1."""
    later = NOW + timedelta(days=2)
    for bucket in lake.buckets.values():
        lifecycle.Lifecycle(lake.s3, bucket).apply(later)
    report = lake.verify(now=later, expected=(1, "0" * 64))
    assert report.expired_digests == [1, 2, 3] and not report.expected_checked
    assert report.expected_head == "recorded head expired: not checked"


# ---------------------------------------------------------------- F5: no day early


def test_a_digest_is_accepted_as_expired_only_from_its_real_write_times_due_date(lake: Lake) -> None:
    """Digest 2 (window to D+1 00:00) was written D+1 00:05: S3 may remove it from M + 1 day."""
    a_year_later(lake)
    lake.remove("audit", lake.digests[1])
    early = lake.verify()
    assert ("chain", lake.digests[2]) in kinds(early) and early.expired_digests == []
    on_time = lake.verify(now=MIDNIGHT + timedelta(days=1, hours=1))
    assert on_time.expired_digests == [1, 2] and ("chain", lake.digests[2]) not in kinds(on_time)


# ---------------------------------------------------------------- F6: overwritten into Deep Archive


def test_a_same_size_overwrite_stored_into_deep_archive_is_altered(aged: Lake) -> None:
    a_year_later(aged)
    key = aged.files["new"]
    size = len(aged.archives["audit"].get(key))
    aged.s3.put_object(Bucket=aged.buckets["audit"], Key=key, Body=b"X" * size, StorageClass="DEEP_ARCHIVE")
    report = aged.verify()
    assert ("altered", key) in kinds(report) and key not in report.archived


def test_verify_stack_says_whether_the_recorded_head_was_checked(lake: Lake, aws: AwsStack) -> None:
    """The auditor's command, on the real clock (a day after NOW: S3 has removed digests 1-3 too)."""
    heads = {n: hashlib.sha256(lake.archives["audit"].get(key)).hexdigest() for n, key in enumerate(lake.digests, 1)}
    for bucket in lake.buckets.values():
        lifecycle.Lifecycle(lake.s3, bucket).apply(datetime.now(UTC))
    name = lake.stack(aws)

    def run(head: str) -> tuple[int, str]:
        result = CliRunner(mix_stderr=False).invoke(main, ["verify", "--stack", name, "--max-age", "3d",
                                                           "--expect-head", head])  # fmt: skip
        return result.exit_code, " ".join(result.stderr.split())

    code, said = run(f"3:{heads[3]}")
    assert code == 0 and "recorded head 3 held (expired; digest 4 names its SHA-256)" in said, said
    assert "expired by retention: 0 files, digests 1..3 (audit/ 365 days" in said  # with the files they sealed
    code, said = run(f"1:{heads[1]}")
    assert code == 0 and "no file is unaccounted for; expired by retention" in said
    assert said.endswith("; recorded head expired: not checked"), said
    code, _ = run(f"3:{'0' * 64}")
    assert code == 1
