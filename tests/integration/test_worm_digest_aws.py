"""Object Lock end to end on moto: the compactor and the hourly digest write into a WORM audit
archive; nothing can delete what they wrote; `auditlake verify --stack` proves it complete with
the KMS-signed chain, and catches what a privileged user changes by bypassing governance."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError
from click.testing import CliRunner

from auditlake.cli import main
from auditlake.state_table import digest_head_key
from auditlake.stores import StoreError
from auditlake.stores.s3 import S3Store
from auditlake.trust.digest import DigestError
from tests import lifecycle
from tests.helpers import AwsStack, LambdaContext, load_function
from tests.integration.test_compactor_lambda import EVENTS, land, sqs_event


@pytest.fixture
def worm(aws: AwsStack) -> dict[str, str]:
    """The archive buckets as template.yaml makes them: audit with Object Lock (GOVERNANCE, a day)."""
    names = {"audit": f"{aws.bucket}-audit", "events": f"{aws.bucket}-events", "findings": f"{aws.bucket}-findings"}
    aws.s3.create_bucket(Bucket=names["audit"], ObjectLockEnabledForBucket=True)
    aws.s3.put_object_lock_configuration(Bucket=names["audit"], ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})  # fmt: skip
    aws.s3.create_bucket(Bucket=names["events"])
    aws.s3.create_bucket(Bucket=names["findings"])
    key = boto3.client("kms").create_key(KeySpec="RSA_3072", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
    return {**names, "key": key}


def functions(monkeypatch: pytest.MonkeyPatch, aws: AwsStack, worm: dict[str, str]) -> tuple[ModuleType, ModuleType]:
    env = {"AUDITLAKE_RAW_BUCKET": aws.bucket, "AUDITLAKE_AUDIT_BUCKET": worm["audit"],
           "AUDITLAKE_EVENTS_BUCKET": worm["events"], "AUDITLAKE_STATE_TABLE": aws.table,
           "AUDITLAKE_DIGEST_KEY": worm["key"], "AUDITLAKE_AUDIT_RETENTION_DAYS": "365",
           "AUDITLAKE_EVENTS_RETENTION_DAYS": "90", "AUDITLAKE_FINDINGS_BUCKET": worm["findings"]}  # fmt: skip
    return load_function(monkeypatch, "compactor", env), load_function(monkeypatch, "digest", env)


def stack(aws: AwsStack, worm: dict[str, str]) -> str:
    name = f"auditlake-{uuid.uuid4().hex[:8]}"
    outputs = {"AuditArchiveBucketName": worm["audit"], "EventsArchiveBucketName": worm["events"],
               "FindingsArchiveBucketName": worm["findings"],
               "DigestKeyArn": worm["key"], "StateTableName": aws.table}  # fmt: skip
    template = {"Resources": {"Placeholder": {"Type": "AWS::SNS::Topic"}},
                "Outputs": {k: {"Value": v} for k, v in outputs.items()}}  # fmt: skip
    boto3.client("cloudformation").create_stack(StackName=name, TemplateBody=json.dumps(template))
    return name


def verify(name: str, *args: str) -> Any:
    return CliRunner(mix_stderr=False).invoke(main, ["verify", "--stack", name, *args], catch_exceptions=False)


def test_worm_archive_compaction_digests_and_verify(monkeypatch: pytest.MonkeyPatch, aws: AwsStack,
                                                    worm: dict[str, str]) -> None:  # fmt: skip
    compactor, digest = functions(monkeypatch, aws, worm)
    keys = [land(aws, EVENTS[:3000], "a"), land(aws, EVENTS[3000:], "b")]
    assert compactor.lambda_handler(sqs_event(aws.bucket, keys), LambdaContext()) == {"batchItemFailures": []}
    files = list(S3Store(aws.s3, worm["audit"]).list("audit/"))
    assert len(files) == 2
    # The next hour's schedule seals them (the function seals hours that ended 5 minutes ago).
    monkeypatch.setattr(digest, "datetime", _At(datetime.now(UTC).replace(minute=6) + timedelta(hours=1)))
    sealed = digest.lambda_handler({}, LambdaContext())
    assert sealed["files"] == 2 and sealed["dropped"] == [] and sealed["digests"][-1].startswith("digests/")
    name = stack(aws, worm)
    result = verify(name)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "files checked 2" in result.stderr and "problems 0" in result.stderr

    # WORM: neither a file nor a digest can be deleted or overwritten while locked.
    s3 = aws.s3
    for key in (files[0], sealed["digests"][0]):
        version = s3.head_object(Bucket=worm["audit"], Key=key)["VersionId"]
        assert s3.head_object(Bucket=worm["audit"], Key=key)["ObjectLockMode"] == "GOVERNANCE"
        with pytest.raises(ClientError) as refused:
            s3.delete_object(Bucket=worm["audit"], Key=key, VersionId=version)
        assert refused.value.response["Error"]["Code"] == "AccessDenied"
    # An overwrite only adds a version: verify reads the current one and says it was altered.
    s3.put_object(Bucket=worm["audit"], Key=files[0], Body=b"forged")
    altered = verify(name)
    assert altered.exit_code == 1 and "ALTERED" in altered.stdout and files[0] in altered.stdout


class _At:
    """A stand-in for the datetime class whose now() is fixed."""

    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def now(self, tz: Any = None) -> datetime:
        return self.moment


def compacted_and_sealed(
    monkeypatch: pytest.MonkeyPatch, aws: AwsStack, worm: dict[str, str]
) -> tuple[ModuleType, datetime, dict[str, Any]]:
    """500 events compacted, then the next hour's digest run: the digest function, its clock, its answer."""
    compactor, digest = functions(monkeypatch, aws, worm)
    assert compactor.lambda_handler(sqs_event(aws.bucket, [land(aws, EVENTS[:500], "a")]), LambdaContext()) == {
        "batchItemFailures": []
    }
    at = datetime.now(UTC).replace(minute=6) + timedelta(hours=1)
    monkeypatch.setattr(digest, "datetime", _At(at))
    return digest, at, digest.lambda_handler({}, LambdaContext())


def test_deployed_verify_holds_the_chain_to_its_head_and_judges_by_last_modified(
    monkeypatch: pytest.MonkeyPatch, aws: AwsStack, worm: dict[str, str]
) -> None:
    """verify --stack compares the chain with DIGEST#HEAD (and a head an auditor recorded), fails on a
    stale chain (3 h by default: digests are hourly), and judges an unlisted file by its S3
    LastModified, not the write time in its name."""
    _, at, sealed = compacted_and_sealed(monkeypatch, aws, worm)
    assert sealed["files"] == 1
    name = stack(aws, worm)
    honest = verify(name)
    assert honest.exit_code == 0, honest.stdout + honest.stderr
    recorded = honest.stderr.split("chain head ", 1)[1].split()[0]
    assert recorded.startswith(f"{len(sealed['digests'])}:")
    s3, bucket = aws.s3, worm["audit"]

    # A forged file whose name says 2099: by its LastModified it was written before the last
    # digest's end (this digest ran at the next hour) and no digest lists it.
    partition = next(S3Store(s3, bucket).list("audit/")).rsplit("/", 1)[0]
    forged = f"{partition}/prod-20991231T235959Z-0badc0ffee00.parquet"
    s3.put_object(Bucket=bucket, Key=forged, Body=b"PAR1 forged", ChecksumAlgorithm="CRC32")
    result = verify(name)
    assert result.exit_code == 1 and f"EXTRA          {forged}" in result.stdout, result.stdout
    s3.delete_object(Bucket=bucket, Key=forged, VersionId=s3.head_object(Bucket=bucket, Key=forged)["VersionId"],
                     BypassGovernanceRetention=True)  # fmt: skip
    assert verify(name).exit_code == 0

    # Stale: an auditor running verify four hours after the last digest (the schedule stopped).
    later = CliRunner(mix_stderr=False)
    monkeypatch.setattr("auditlake.cli.archive.datetime", _At(at + timedelta(hours=4)))
    stale = later.invoke(main, ["verify", "--stack", name], catch_exceptions=False)
    assert stale.exit_code == 1 and "STALE" in stale.stdout, stale.stdout
    monkeypatch.setattr("auditlake.cli.archive.datetime", datetime)

    # The newest digest removed by a privileged user (governance bypassed): shorter than its head.
    newest = sealed["digests"][-1]
    version = s3.head_object(Bucket=bucket, Key=newest)["VersionId"]
    s3.delete_object(Bucket=bucket, Key=newest, VersionId=version, BypassGovernanceRetention=True)
    short = verify(name)
    assert short.exit_code == 1 and "HEAD" in short.stdout and "digests removed" in short.stdout, short.stdout
    # ... and with the head moved back too, only the head the auditor recorded tells.
    previous = json.loads(s3.get_object(Bucket=bucket, Key=sealed["digests"][-2])["Body"].read())
    aws.dynamodb.delete_item(TableName=aws.table, Key=digest_head_key())
    data = s3.get_object(Bucket=bucket, Key=sealed["digests"][-2])["Body"].read()
    head = {"sequence": previous["sequence"], "key": sealed["digests"][-2],
            "sha256": hashlib.sha256(data).hexdigest(), "to": previous["to"]}  # fmt: skip
    aws.dynamodb.put_item(TableName=aws.table, Item={**digest_head_key(), "head": {"S": json.dumps(head)},
                          "sequence": {"N": str(head["sequence"])}})  # fmt: skip
    rolled = verify(name, "--max-age", "1000d")
    assert rolled.exit_code == 0, rolled.stdout  # the stack alone agrees with itself
    audited = verify(name, "--expect-head", recorded)
    assert audited.exit_code == 1 and "the recorded head is digest" in audited.stdout, audited.stdout


def test_a_digest_run_that_stopped_before_moving_the_head_is_adopted(
    monkeypatch: pytest.MonkeyPatch, aws: AwsStack, worm: dict[str, str]
) -> None:
    """The digest function wrote digests/N.json (create-only, If-None-Match) and stopped before
    moving DIGEST#HEAD: the next run used to fail on "exists" for good. It adopts the file (signed
    by the KMS key, linked to the head) and moves the head; a file it did not sign is an error."""
    digest, at, sealed = compacted_and_sealed(monkeypatch, aws, worm)
    s3, bucket, key = aws.s3, worm["audit"], digest_head_key()
    newest = json.loads(s3.get_object(Bucket=bucket, Key=sealed["digests"][-1])["Body"].read())
    data = s3.get_object(Bucket=bucket, Key=sealed["digests"][-2])["Body"].read()
    previous = json.loads(data)
    head = {"sequence": previous["sequence"], "key": sealed["digests"][-2],
            "sha256": hashlib.sha256(data).hexdigest(), "to": previous["to"]}  # fmt: skip
    aws.dynamodb.put_item(TableName=aws.table, Item={**key, "head": {"S": json.dumps(head)},
                          "sequence": {"N": str(head["sequence"])}})  # fmt: skip
    name = stack(aws, worm)
    assert "HEAD" in verify(name).stdout
    again = digest.lambda_handler({}, LambdaContext())
    assert again["adopted"] == [sealed["digests"][-1]] and again["files"] == len(newest["objects"])
    result = verify(name)
    assert result.exit_code == 0, result.stdout + result.stderr
    # A file at the next digest's name that the key did not sign stops the chain with its name.
    following = f"digests/{newest['sequence'] + 1:010d}.json"
    s3.put_object(Bucket=bucket, Key=following, Body=json.dumps({**newest, "sequence": newest["sequence"] + 1}))
    monkeypatch.setattr(digest, "datetime", _At(at + timedelta(hours=1)))
    with pytest.raises(DigestError, match=f"{following} exists but is not the next"):
        digest.lambda_handler({}, LambdaContext())


class _Raw:
    """The raw body botocore reads an answer from."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Any:
        yield self.body


def _answer(status: int, body: bytes = b"") -> Callable[..., AWSResponse]:
    """A before-send hook: S3 answers ``status`` (with ``body``) instead of the server."""

    def send(request: Any, **_: Any) -> AWSResponse:
        return AWSResponse(request.url, status, {"Content-Type": "application/xml"}, _Raw(body))

    return send


DENIED = b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"


def test_the_digest_function_fails_loudly_when_head_object_answers_403(
    monkeypatch: pytest.MonkeyPatch, aws: AwsStack, worm: dict[str, str]
) -> None:
    """Without s3:ListBucket S3 answers 403 for a key not written yet: the function raises (its
    errors alarm) with the fix in the message, and seals nothing: no entry is taken as written."""
    compactor, digest = functions(monkeypatch, aws, worm)
    assert compactor.lambda_handler(sqs_event(aws.bucket, [land(aws, EVENTS[:500], "a")]), LambdaContext()) == {
        "batchItemFailures": []
    }
    digest.digester.archives["audit"].client.meta.events.register("before-send.s3.HeadObject", _answer(403))
    monkeypatch.setattr(digest, "datetime", _At(datetime.now(UTC).replace(minute=6) + timedelta(hours=1)))
    logged: list[str] = []
    monkeypatch.setattr(digest.logger, "exception", lambda message, **_: logged.append(message))
    with pytest.raises(StoreError, match=r"HeadObject on .* answered 403: the role needs s3:ListBucket"):
        digest.lambda_handler({}, LambdaContext())
    assert logged == ["digest run failed: nothing after the last digest was sealed"]
    # The empty hours before the compaction are sealed; the hour of its file stops the run.
    archive = S3Store(aws.s3, worm["audit"])
    written = [json.loads(archive.get(key)) for key in archive.list("digests/")]
    assert all(doc["objects"] == [] and doc["unwritten"] == [] for doc in written)


def test_deployed_verify_compares_the_buckets_rules_and_never_takes_a_retention_on_trust(
    monkeypatch: pytest.MonkeyPatch, aws: AwsStack, worm: dict[str, str]
) -> None:
    """verify --stack reads both buckets' lifecycle rules only to compare them with the retention
    the digests record; an auditor without s3:GetLifecycleConfiguration is told they were not
    checked (not a failure), and no option lets anyone claim a shorter retention."""
    lifecycle.put(aws.s3, worm["audit"], lifecycle.template_lifecycle("AuditArchiveBucket"))
    lifecycle.put(aws.s3, worm["events"], lifecycle.template_lifecycle("EventsArchiveBucket"))
    _, _, sealed = compacted_and_sealed(monkeypatch, aws, worm)
    # The digest function records the stack's retention in each digest, signed, and from the second
    # digest on its predecessor's real write time.
    docs = [json.loads(S3Store(aws.s3, worm["audit"]).get(key)) for key in sealed["digests"]]
    assert {json.dumps(doc["retention"], sort_keys=True) for doc in docs} == {
        json.dumps({"audit/": 365, "digests/": 365, "events/": 90}, sort_keys=True)
    }
    assert all("written_at" in doc["previous"] for doc in docs[1:]) and len(docs) > 1
    name = stack(aws, worm)
    honest = verify(name)
    assert honest.exit_code == 0, honest.stdout + honest.stderr
    assert "not checked" not in honest.stderr

    # A rule that would expire audit files sooner than the digests record: said now, before S3 acts.
    rules = lifecycle.rules(aws.s3, worm["audit"])
    lifecycle.put(aws.s3, worm["audit"], [*rules, {"ID": "tidy", "Status": "Enabled", "Filter": {"Prefix": "audit/"},
                                                   "Expiration": {"Days": 1}}])  # fmt: skip
    shorter = verify(name)
    assert shorter.exit_code == 1
    assert f"RETENTION      {worm['audit']} rule tidy  expires audit/ keys (prefix 'audit/') after 1 days" in (
        shorter.stdout
    )
    lifecycle.put(aws.s3, worm["audit"], rules)

    made = boto3.session.Session.client

    def denied(self: Any, service: str, *args: Any, **kwargs: Any) -> Any:
        client = made(self, service, *args, **kwargs)
        if service == "s3":
            client.meta.events.register("before-send.s3.GetBucketLifecycleConfiguration", _answer(403, DENIED))
        return client

    monkeypatch.setattr(boto3.session.Session, "client", denied)
    refused = verify(name)
    assert refused.exit_code == 0, refused.stdout + refused.stderr
    said = " ".join(refused.stderr.split())
    assert f"lifecycle rules of {worm['audit']} not checked (s3:GetLifecycleConfiguration denied)" in said
    assert verify(name, "--retention-days", "1").exit_code == 2  # the option is gone: nothing to claim
