"""The IAM check catches a missing permission: real function runs against moto are recorded, then
judged against a copy of the transformed template with one statement removed from the role."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from auditlake.clusters.registry import DynamoRegistry, new_token, token_hash
from auditlake.timestamps import format_utc
from auditlake.trust.ledger import DynamoLedger, Entry
from tests.helpers import AwsStack, LambdaContext, eventlist_body, fixture, load_function
from tests.iam.check import Checker
from tests.iam.recorder import RECORDER
from tests.iam.roles import RoleBook
from tests.iam.template import shipped


def without(role: str, sid: str) -> Checker:
    """A checker whose template lacks statement ``sid`` of ``role`` (a copy: the shipped one is intact)."""
    expanded, transformed = shipped()
    broken = copy.deepcopy(transformed)
    for policy in broken["Resources"][role]["Properties"]["Policies"]:
        statements = policy["PolicyDocument"]["Statement"]
        kept = [s for s in statements if not (isinstance(s, dict) and s.get("Sid") == sid)]
        assert len(kept) == len(statements) - 1, f"{role} has no statement {sid}"
        policy["PolicyDocument"]["Statement"] = kept
    return Checker(lambda: RoleBook(expanded, broken))


def intact() -> Checker:
    return Checker(lambda: RoleBook(*shipped()))


def denials_of(checker: Checker, call: str) -> list[str]:
    return [line for line in checker.judge(RECORDER.peek()) if f": {call} needs " in line]


def test_the_webhook_landing_write_is_denied_without_its_statement(
    monkeypatch: pytest.MonkeyPatch, aws: AwsStack
) -> None:
    token = new_token()
    DynamoRegistry(aws.dynamodb, aws.table).add_cluster(
        "prod", token_hash(token), created_at=format_utc(datetime.now(UTC))
    )
    app = load_function(
        monkeypatch, "webhook", {"AUDITLAKE_RAW_BUCKET": aws.bucket, "AUDITLAKE_STATE_TABLE": aws.table}
    )
    event = fixture("http_api_post.json")
    event["headers"]["authorization"] = f"Bearer {token}"
    event["body"] = eventlist_body([fixture("pod_create_host_pid_ipc.json")]).decode()
    assert app.lambda_handler(event, LambdaContext())["statusCode"] == 200

    assert denials_of(intact(), "s3.PutObject") == []
    (line,) = denials_of(without("WebhookRole", "WriteAuditLanding"), "s3.PutObject")
    assert line.startswith(
        f"webhook [WebhookRole]: s3.PutObject needs s3:PutObject on arn:aws:s3:::{aws.bucket}/raw/audit/"
    )
    # The token lookup is a GetItem under TOKEN#: without ReadTokenHashes, it is the call denied.
    (lookup,) = denials_of(without("WebhookRole", "ReadTokenHashes"), "dynamodb.GetItem")
    assert "dynamodb:LeadingKeys=('TOKEN#" in lookup and "implicitly denied" in lookup


def test_a_missing_custom_rules_document_reads_as_no_such_key(monkeypatch: pytest.MonkeyPatch, aws: AwsStack) -> None:
    """No `auditlake rules push` yet: the webhook's cold start reads rules/custom.json and S3 must answer
    404 NoSuchKey (no custom rules), which it does only with ListCustomRules; without it, 403 AccessDenied
    would look like a permission problem."""
    load_function(monkeypatch, "webhook", {"AUDITLAKE_RAW_BUCKET": aws.bucket, "AUDITLAKE_STATE_TABLE": aws.table})
    reads = [call for _run, call in RECORDER.peek() if call.name == "s3.GetObject"
             and call.params.get("Key") == "rules/custom.json"]  # fmt: skip
    assert reads and {(call.status, call.error_code) for call in reads} == {(404, "NoSuchKey")}

    def listing(checker: Checker) -> list[str]:
        return [x for x in denials_of(checker, "s3.GetObject") if "s3:ListBucket" in x]

    assert listing(intact()) == []
    (line,) = listing(without("WebhookRole", "ListCustomRules"))
    assert f"needs s3:ListBucket on arn:aws:s3:::{aws.bucket}" in line
    assert "a missing key answers 404 only with s3:ListBucket (403 without)" in line


@pytest.fixture
def digest_env(aws: AwsStack) -> dict[str, str]:
    archive = {"audit": f"{aws.bucket}-audit", "events": f"{aws.bucket}-events", "findings": f"{aws.bucket}-findings"}
    for bucket in archive.values():
        aws.s3.create_bucket(Bucket=bucket)
    key = boto3.client("kms").create_key(KeySpec="RSA_3072", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
    return {"AUDITLAKE_AUDIT_BUCKET": archive["audit"], "AUDITLAKE_EVENTS_BUCKET": archive["events"],
            "AUDITLAKE_FINDINGS_BUCKET": archive["findings"],
            "AUDITLAKE_STATE_TABLE": aws.table, "AUDITLAKE_DIGEST_KEY": key}  # fmt: skip


def test_a_digest_checking_a_never_written_file_needs_list_bucket(
    monkeypatch: pytest.MonkeyPatch, aws: AwsStack, digest_env: dict[str, str]
) -> None:
    """The compactor records a ledger entry before it writes the file: a write that then failed
    leaves an entry whose HeadObject answers 404, but only if the role may list the bucket."""
    written = datetime.now(UTC) - timedelta(hours=2)  # an hour that has certainly ended
    key = f"audit/dt={written:%Y-%m-%d}/hour={written:%H}/prod-never-written.parquet"
    stamp = format_utc(written)
    DynamoLedger(aws.dynamodb, aws.table).record(Entry(key, "0" * 64, 1, 1, stamp, stamp, stamp))
    digest = load_function(monkeypatch, "digest", digest_env)
    assert key in digest.lambda_handler({}, LambdaContext())["abandoned"]  # never marked stored

    def heads(checker: Checker) -> list[str]:
        return [x for x in denials_of(checker, "s3.HeadObject") if "s3:ListBucket" in x]

    assert heads(intact()) == []
    (line,) = heads(without("DigestRole", "TellMissingFiles"))
    assert f"needs s3:ListBucket on arn:aws:s3:::{digest_env['AUDITLAKE_AUDIT_BUCKET']}" in line
    assert "a missing key answers 404 only with s3:ListBucket (403 without)" in line


def test_calls_the_test_makes_itself_are_not_the_function_s(monkeypatch: pytest.MonkeyPatch, aws: AwsStack) -> None:
    load_function(monkeypatch, "webhook", {"AUDITLAKE_RAW_BUCKET": aws.bucket, "AUDITLAKE_STATE_TABLE": aws.table})
    before = len(RECORDER.peek())
    aws.s3.put_object(Bucket=aws.bucket, Key="anything/the-test-writes", Body=b"x")  # no role would allow it
    assert len(RECORDER.peek()) == before


def test_a_call_that_got_no_answer_is_still_judged() -> None:
    """A call the function sent but that failed in transit (no HTTP answer) still needed the permission."""
    from botocore.config import Config
    from botocore.exceptions import EndpointConnectionError

    from tests.iam.recorder import cold_start

    before = len(RECORDER.peek())
    with cold_start("webhook"):
        s3 = boto3.client("s3", endpoint_url="http://127.0.0.1:9", config=Config(retries={"max_attempts": 1}))
        with pytest.raises(EndpointConnectionError):
            s3.put_object(Bucket="raw-unreachable", Key="raw/audit/x", Body=b"x")
    ((run, call),) = RECORDER.peek()[before:]
    assert (run.function, call.name, call.status, call.params) == (
        "webhook", "s3.PutObject", None, {"Bucket": "raw-unreachable", "Key": "raw/audit/x"})  # fmt: skip
    RECORDER.take()  # the run's environment is this test process's, not a function's: nothing to judge
