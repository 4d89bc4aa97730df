"""A year and a day later: the template's lifecycle rules, simulated on moto (tests/lifecycle.py),
against verify, the compactor's anti-join and the queries.

The lake is built on a simulated calendar relative to today (day D is 366 days before yesterday's
midnight M): files and digests are dated when the deployed functions would have written them.
With the template's defaults (files and digests kept 365 days, events 90), at M + 12 h S3 has
expired day D's files and its digest, and day D+1's events file, and nothing else.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from auditlake.archive.compactor import Compactor
from auditlake.archive.locks import DynamoLocks
from auditlake.cli import main
from auditlake.query.named import LocalEngine
from auditlake.stores.local import LocalStore
from auditlake.stores.s3 import S3Store
from auditlake.timestamps import format_utc
from auditlake.trust.digest import Digester, DynamoChainHead, KmsSigner, VerifyReport, verify
from auditlake.trust.ledger import Entry, LocalLedger
from auditlake.trust.retention import stack_retention
from tests import lifecycle
from tests.helpers import AwsStack
from tests.integration.test_compactor_lambda import EVENTS, land

MIDNIGHT = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)  # M
DAY = MIDNIGHT - timedelta(days=366)  # D: what it wrote S3 expires from M on (365 days, rounded up)
NOW = MIDNIGHT + timedelta(hours=12)  # a year and a day after D (and before the real now: Object Lock)
# What the deployed digest function records in each digest (template.yaml's defaults).
RECORDED = stack_retention(365, 90)


@dataclass
class Lake:
    s3: Any
    buckets: dict[str, str]
    archives: dict[str, S3Store]
    ledger: LocalLedger
    head: DynamoChainHead
    signer: KmsSigner
    key: str
    digester: Digester
    files: dict[str, str]  # name -> key
    digests: list[str]

    @classmethod
    def empty(cls, aws: AwsStack, tmp_path: Path) -> Lake:
        """The archive buckets as template.yaml makes them (Object Lock and lifecycle rules from its
        defaults), a KMS signing key, and a digester recording the defaults' retention."""
        s3 = aws.s3
        buckets = {
            "audit": f"{aws.bucket}-audit",
            "events": f"{aws.bucket}-events",
            "findings": f"{aws.bucket}-findings",
        }
        s3.create_bucket(Bucket=buckets["audit"], ObjectLockEnabledForBucket=True)
        lock = {"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 365}}}
        s3.put_object_lock_configuration(Bucket=buckets["audit"], ObjectLockConfiguration=lock)
        s3.create_bucket(Bucket=buckets["events"])
        s3.put_bucket_versioning(Bucket=buckets["events"], VersioningConfiguration={"Status": "Enabled"})
        s3.create_bucket(Bucket=buckets["findings"])
        s3.put_bucket_versioning(Bucket=buckets["findings"], VersioningConfiguration={"Status": "Enabled"})
        lifecycle.put(s3, buckets["findings"], lifecycle.template_lifecycle("FindingsArchiveBucket"))
        lifecycle.put(s3, buckets["audit"], lifecycle.template_lifecycle("AuditArchiveBucket"))
        lifecycle.put(s3, buckets["events"], lifecycle.template_lifecycle("EventsArchiveBucket"))
        archives = {name: S3Store(s3, bucket) for name, bucket in buckets.items()}
        # A ledger file per hour: the year-long window of digest 4 reads 8,800 ledger hours, which on
        # DynamoDB (moto over HTTP) would be as many requests; deployed, digests are hourly.
        ledger, head = LocalLedger(tmp_path / "ledger"), DynamoChainHead(aws.dynamodb, aws.table)
        key = boto3.client("kms").create_key(KeySpec="RSA_3072", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
        signer = KmsSigner(boto3.client("kms"), key)
        digester = Digester(ledger, archives, head, signer, retention=RECORDED)
        return cls(s3, buckets, archives, ledger, head, signer, key, digester, {}, [])

    def stack(self, aws: AwsStack) -> str:
        """A stand-in stack on moto with the outputs `verify --stack` reads; returns its name."""
        outputs = {"AuditArchiveBucketName": self.buckets["audit"], "EventsArchiveBucketName": self.buckets["events"],
                   "FindingsArchiveBucketName": self.buckets["findings"],
                   "DigestKeyArn": self.key, "StateTableName": aws.table}  # fmt: skip
        name = f"auditlake-{uuid.uuid4().hex[:8]}"
        template = {"Resources": {"Placeholder": {"Type": "AWS::SNS::Topic"}},
                    "Outputs": {k: {"Value": v} for k, v in outputs.items()}}  # fmt: skip
        boto3.client("cloudformation").create_stack(StackName=name, TemplateBody=json.dumps(template))
        return name

    def write(self, name: str, key: str, at: datetime) -> None:
        """A file as the compactor writes it: recorded in the ledger, then written, dated ``at``."""
        data = f"{name} {key}".encode() * 40
        store = key.split("/", 1)[0]
        self.ledger.record(Entry(key, hashlib.sha256(data).hexdigest(), len(data), 1, format_utc(at),
                                 format_utc(at), format_utc(at)))  # fmt: skip
        self.archives[store].put(key, data, "application/vnd.apache.parquet", create_only=True)
        lifecycle.age(self.buckets[store], key, at)
        self.files[name] = key

    def seal(self, until: datetime, start: datetime | None = None) -> None:
        """The digest run after ``until``: one digest, dated when it was written (5 minutes later)."""
        report = self.digester.seal(until, start=start or until, hourly=False, now=until + timedelta(minutes=5))
        assert len(report.digests) == 1 and not report.dropped, report
        lifecycle.age(self.buckets["audit"], report.digests[0], until + timedelta(minutes=5))
        self.digests += report.digests

    def verify(self, now: datetime = NOW, expected: tuple[int, str] | None = None) -> VerifyReport:
        """As ``verify --stack`` does: the buckets' current rules are compared, never trusted."""
        rules = {name: lifecycle.rules(self.s3, bucket) for name, bucket in self.buckets.items()}
        return verify(self.archives, self.signer, head=self.head, ledger=self.ledger, now=now, expected=expected,
                      max_age=timedelta(hours=3), lifecycle=rules)  # fmt: skip

    def remove(self, store: str, key: str) -> None:
        """What anyone with s3:DeleteObject can do under Object Lock: hide the object behind a delete marker."""
        self.s3.delete_object(Bucket=self.buckets[store], Key=key)


def _key(store: str, at: datetime, name: str) -> str:
    return f"{store}/dt={at:%Y-%m-%d}/hour={at:%H}/prod-{name}.parquet"


@pytest.fixture
def lake(aws: AwsStack, tmp_path: Path) -> Lake:
    """The archive buckets as template.yaml makes them (Object Lock and lifecycle rules from its
    defaults), and four digests: D 10:01 a1 (digest 1), D 23:50 a2 (digest 2, written after
    midnight), D+1 10:01 b1 and the events file e1 (digest 3), M 11:01 c1 (digest 4)."""
    built = Lake.empty(aws, tmp_path)
    at = DAY + timedelta(hours=10, minutes=1)
    built.write("a1", _key("audit", at, "a1"), at)
    built.seal(DAY + timedelta(hours=11), start=DAY + timedelta(hours=10))
    at = DAY + timedelta(hours=23, minutes=50)
    built.write("a2", _key("audit", at, "a2"), at)
    built.seal(DAY + timedelta(days=1))
    at = DAY + timedelta(days=1, hours=10, minutes=1)
    built.write("b1", _key("audit", at, "b1"), at)
    built.write("e1", _key("events", at, "e1"), at + timedelta(minutes=1))
    built.seal(DAY + timedelta(days=1, hours=11))
    at = MIDNIGHT + timedelta(hours=11, minutes=1)
    built.write("c1", _key("audit", at, "c1"), at)
    built.seal(MIDNIGHT + timedelta(hours=11, minutes=30))
    return built


def a_year_later(lake: Lake) -> dict[str, lifecycle.Applied]:
    return {name: lifecycle.Lifecycle(lake.s3, bucket).apply(NOW) for name, bucket in lake.buckets.items()}


def kinds(report: VerifyReport) -> set[tuple[str, str]]:
    return {(finding.kind, finding.key) for finding in report.findings}


def test_the_template_expires_files_and_digests_by_their_own_rules() -> None:
    rules = {rule["ID"]: rule for rule in lifecycle.template_lifecycle("AuditArchiveBucket")}
    assert rules["audit-expiry"]["Filter"] == {"Prefix": "audit/"} and rules["audit-expiry"]["Expiration"] == {
        "Days": 365
    }
    assert rules["digest-expiry"]["Filter"] == {"Prefix": "digests/"} and rules["digest-expiry"]["Expiration"] == {
        "Days": 365
    }
    longer = {
        rule["ID"]: rule for rule in lifecycle.template_lifecycle("AuditArchiveBucket", {"AuditRetentionDays": 2555})
    }
    assert longer["digest-expiry"]["Expiration"] == {"Days": 2555}


def test_verify_passes_a_year_and_a_day_later(lake: Lake) -> None:
    young = lake.verify(now=MIDNIGHT + timedelta(hours=12) - timedelta(minutes=1))
    assert young.ok and young.expired_digests == [] and young.expired_files == [], young.findings

    applied = a_year_later(lake)
    digest_1, digest_2 = lake.digests[:2]
    assert sorted(applied["audit"].expired) == sorted([lake.files["a1"], lake.files["a2"], digest_1])
    assert applied["events"].expired == [lake.files["e1"]]
    report = lake.verify()
    assert report.ok, report.findings
    # Digest 1 went with a1; a2 (written before midnight) went before digest 2 (written after it),
    # e1 with the events bucket's 90 days: expired, not missing.
    assert report.expired_digests == [1]
    assert sorted(report.expired_files) == sorted([lake.files["a2"], lake.files["e1"]])
    # What was assumed, as the newest digest recorded it (signed), not as the buckets say now.
    assert report.retention == "audit/ 365 days, events/ 90 days, digests/ 365 days, as recorded by digest 4"
    assert report.objects == 4  # digests 2-4: a2, b1, e1, c1
    assert report.head is not None and report.head.startswith("4:") and digest_2 == "digests/0000000002.json"


def test_verify_stack_says_what_expired_by_retention(lake: Lake, aws: AwsStack) -> None:
    """The command an auditor runs (today, a day after NOW: its clock is the real one): what
    expired is judged by the retention the digests recorded, and said so."""
    a_year_later(lake)
    name = lake.stack(aws)
    result = CliRunner(mix_stderr=False).invoke(main, ["verify", "--stack", name, "--max-age", "3d"])
    assert result.exit_code == 0, result.stdout + result.stderr
    assumed = "expired by retention: 2 files, digest 1 (audit/ 365 days, events/ 90 days, digests/ 365 days, "
    assert assumed + "as recorded by digest 4)" in result.stderr
    assert "verified: every sealed file is present and unaltered; no file is unaccounted for; " + assumed in " ".join(
        result.stderr.split()
    )
    lake.remove("audit", lake.files["c1"])
    removed = CliRunner(mix_stderr=False).invoke(main, ["verify", "--stack", name, "--max-age", "3d"])
    assert removed.exit_code == 1 and f"MISSING        {lake.files['c1']}" in removed.stdout


def test_verify_fails_when_a_digest_younger_than_retention_is_removed(lake: Lake) -> None:
    a_year_later(lake)
    lake.remove("audit", lake.digests[2])  # digest 3: b1 and e1, a day short of a year old
    report = lake.verify()
    assert not report.ok
    assert ("chain", lake.digests[3]) in kinds(report)
    assert ("extra", lake.files["b1"]) in kinds(report)  # the file it sealed, now in no digest


def test_verify_fails_when_the_oldest_digest_is_removed_within_retention(lake: Lake) -> None:
    report = lake.verify(now=DAY + timedelta(days=2))  # a day after: nothing may have expired
    assert report.ok, report.findings
    lake.remove("audit", lake.digests[0])
    report = lake.verify(now=DAY + timedelta(days=2))
    assert ("chain", lake.digests[1]) in kinds(report) and ("extra", lake.files["a1"]) in kinds(report)
    assert report.expired_digests == []


def test_verify_fails_when_only_files_younger_than_retention_are_removed(lake: Lake) -> None:
    a_year_later(lake)
    lake.remove("audit", lake.files["b1"])
    report = lake.verify()
    assert kinds(report) == {("missing", lake.files["b1"])}


def test_verify_fails_when_the_newest_digest_is_removed(lake: Lake) -> None:
    a_year_later(lake)
    lake.remove("audit", lake.digests[3])
    found = {kind for kind, _ in kinds(lake.verify())}
    assert {"head", "stale"} <= found


def test_a_digest_s3_expired_before_its_file_leaves_the_file_unprovable_not_missing(lake: Lake) -> None:
    """S3 removes expired objects in no order: digest 1 may go before a1 (both past retention).
    Then a1 is in no digest and cannot be proven any more; verify says so and does not fail."""
    lake.remove("audit", lake.digests[0])
    report = lake.verify()
    assert report.ok and report.expired_digests == [1] and report.unprovable == [lake.files["a1"]], report.findings


def test_expired_delete_markers_and_versions_are_cleaned_up(lake: Lake) -> None:
    a_year_later(lake)
    later = lifecycle.Lifecycle(lake.s3, lake.buckets["audit"]).apply(NOW + timedelta(days=2))
    # The hidden versions of a1, a2 and digest 1 go once their lock has ended, then their markers:
    # nothing piles up under the prefixes the compactor lists.
    assert sorted(later.removed_versions) == sorted([lake.files["a1"], lake.files["a2"], lake.digests[0]])
    again = lifecycle.Lifecycle(lake.s3, lake.buckets["audit"]).apply(NOW + timedelta(days=2))
    assert sorted(later.removed_markers + again.removed_markers) == sorted(later.removed_versions)
    versions = lake.s3.list_object_versions(Bucket=lake.buckets["audit"], Prefix="audit/")
    assert lake.files["a1"] not in {v["Key"] for v in versions.get("Versions", []) + versions.get("DeleteMarkers", [])}


# ---------------------------------------------------------------- late data into Deep Archive


@pytest.fixture
def deep(aws: AwsStack) -> Iterator[dict[str, str]]:
    buckets = {"audit": f"{aws.bucket}-audit", "events": f"{aws.bucket}-events"}
    for bucket in buckets.values():
        aws.s3.create_bucket(Bucket=bucket)
        aws.s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    rules = lifecycle.template_lifecycle("AuditArchiveBucket", {"AuditDeepArchiveDays": 180})
    lifecycle.put(aws.s3, buckets["audit"], rules)
    yield buckets


def test_late_data_lands_in_a_partition_whose_files_are_in_deep_archive(aws: AwsStack, deep: dict[str, str],
                                                                        tmp_path: Path) -> None:  # fmt: skip
    archives = {name: S3Store(aws.s3, bucket) for name, bucket in deep.items()}
    compactor = Compactor(S3Store(aws.s3, aws.bucket), archives, DynamoLocks(aws.dynamodb, aws.table),
                          lock_wait_seconds=1)  # fmt: skip
    first = compactor.compact([land(aws, EVENTS[:6000], "a")])
    assert not first.failed and first.files
    for key in first.files:
        assert aws.s3.head_object(Bucket=deep["audit"], Key=key)["ContentLength"] > 131072, "too small to move"
        lifecycle.age(deep["audit"], key, NOW - timedelta(days=200))
    moved = lifecycle.Lifecycle(aws.s3, deep["audit"]).apply(NOW)
    assert set(moved.transitioned.values()) == {"DEEP_ARCHIVE"} and set(moved.transitioned) == set(first.files)

    # A backfill brings the same hour's events again, and some it never had: the batch succeeds
    # (before, GetObject's InvalidObjectState sent it to the dead-letter queue).
    late = compactor.compact([land(aws, EVENTS[5000:7000], "late")])
    assert not late.failed and late.files
    written = {key: pq.read_table(archives["audit"].open(key)).num_rows for key in late.files}
    # The cost: rows the archived files hold are not known to the anti-join, so they are archived again.
    assert sum(written.values()) == 2000

    # Queries read what Athena reads: it ignores objects in Deep Archive; the late files are there.
    local = tmp_path / "visible"
    visible = LocalStore(local)
    for key in archives["audit"].list("audit/"):
        if lifecycle.storage_class(deep["audit"], key) not in ("GLACIER", "DEEP_ARCHIVE"):
            visible.put(key, archives["audit"].get(key))
    engine = LocalEngine(local)
    rows = engine.run(
        "SELECT (SELECT count(*) FROM audit), count(*) FROM (SELECT DISTINCT cluster, audit_id, stage FROM audit)", []
    ).rows
    assert rows == [(2000, 2000)]  # the copies sit in Deep Archive, which Athena does not read


def test_windowed_verify_a_year_later(lake: Lake) -> None:
    """--from/--to a year later: the windows' files are checked, the expired start of the chain
    accepted as for a whole run; a young file removed inside the window is still missing."""
    a_year_later(lake)
    for begin, end in ((DAY, DAY + timedelta(days=2)), (DAY + timedelta(days=1, hours=10), None), (MIDNIGHT, None)):
        report = verify(lake.archives, lake.signer, head=lake.head, ledger=lake.ledger, now=NOW, start=begin, end=end,
                        max_age=timedelta(hours=3))  # fmt: skip
        assert report.ok and report.expired_digests == [1], (begin, end, report.findings)
    lake.remove("audit", lake.files["b1"])
    report = verify(lake.archives, lake.signer, head=lake.head, ledger=lake.ledger, now=NOW,
                    start=DAY + timedelta(days=1), end=DAY + timedelta(days=2), max_age=timedelta(hours=3))  # fmt: skip
    assert kinds(report) == {("missing", lake.files["b1"])}
