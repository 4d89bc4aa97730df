"""The AWS fault injector against moto server: failures that did not happen leave nothing behind, the
sent-then-lost ones (timeout-after, reset-after, an applied kill) leave the write done while the caller
was told it failed, and botocore's own retries then meet their own write (the ambiguity the chaos model
must survive). Retry sleeps go to the injected sleep: nothing here waits in real time."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.chaos.aws_faults import AwsFaults, FailsOnce, Fault, Killed
from tests.helpers import AwsStack


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def faults(moto_endpoint: str, sleeps: list[float]) -> Iterator[AwsFaults]:
    injector = AwsFaults(sleep=sleeps.append)
    yield injector
    injector.uninstall()


@pytest.fixture
def faulty(faults: AwsFaults) -> boto3.session.Session:
    """A session whose clients fault inside steps; the ``aws`` stack's clients (the checker's) never do."""
    session = boto3.session.Session(region_name="us-east-1")
    faults.install(session)
    return session


def exists(aws: AwsStack, key: str) -> bool:
    try:
        aws.s3.head_object(Bucket=aws.bucket, Key=key)
    except ClientError as error:
        assert error.response["Error"]["Code"] == "404"
        return False
    return True


def test_slowdown_on_every_attempt_fails_the_put_after_botocores_retries_and_writes_nothing(
    aws: AwsStack, faults: AwsFaults, faulty: boto3.session.Session, sleeps: list[float]
) -> None:
    s3 = faulty.client("s3")
    with faults.step(random.Random(1), rate=1.0, kinds=("503",)) as injected, pytest.raises(ClientError) as caught:
        s3.put_object(Bucket=aws.bucket, Key="slow", Body=b"x")
    assert caught.value.response["Error"]["Code"] == "SlowDown"
    assert caught.value.response["ResponseMetadata"]["RetryAttempts"] == 4  # legacy: 5 attempts for S3
    assert injected == [Fault("s3", "PutObject", "503", False)] * 5
    assert len(sleeps) == 4
    assert not exists(aws, "slow")


def test_a_timeout_after_the_write_leaves_it_written_and_the_retry_succeeds(
    aws: AwsStack, faults: AwsFaults, faulty: boto3.session.Session
) -> None:
    aws.s3.put_bucket_versioning(Bucket=aws.bucket, VersioningConfiguration={"Status": "Enabled"})  # count writes
    s3 = faulty.client("s3")
    with faults.step(FailsOnce(), rate=0.5, kinds=("timeout-after",)) as injected:
        answer = s3.put_object(Bucket=aws.bucket, Key="twice", Body=b"same bytes")
    assert answer["ResponseMetadata"]["RetryAttempts"] == 1  # the caller saw a timeout, then a success
    assert injected == [Fault("s3", "PutObject", "timeout-after", True)]
    assert faults.ambiguous("s3", "PutObject") == 1
    versions = aws.s3.list_object_versions(Bucket=aws.bucket, Prefix="twice")["Versions"]
    assert len(versions) == 2  # the lost attempt wrote, and so did the retry
    assert aws.s3.get_object(Bucket=aws.bucket, Key="twice")["Body"].read() == b"same bytes"


def test_a_streamed_get_whose_answer_was_lost_is_read_again(
    aws: AwsStack, faults: AwsFaults, faulty: boto3.session.Session
) -> None:
    aws.s3.put_object(Bucket=aws.bucket, Key="read", Body=b"r" * 100_000)
    s3 = faulty.client("s3")
    with faults.step(FailsOnce(), rate=0.5, kinds=("reset-after",)):
        answer = s3.get_object(Bucket=aws.bucket, Key="read")
    assert answer["Body"].read() == b"r" * 100_000
    assert faults.counts() == {"reset-after": 1}


def test_a_conditional_put_whose_answer_was_lost_fails_its_own_condition_on_the_retry(
    aws: AwsStack, faults: AwsFaults, faulty: boto3.session.Session
) -> None:
    """The first attempt wrote the item; botocore retries the timed-out call, and the retry finds the item
    its own first attempt wrote: the caller is told the write lost a race it actually won."""
    dynamodb = faulty.client("dynamodb")
    item = {"pk": {"S": "lease"}, "sk": {"S": uuid.uuid4().hex}, "owner": {"S": "me"}}
    with faults.step(FailsOnce(), rate=0.5, kinds=("timeout-after",)), pytest.raises(ClientError) as caught:
        dynamodb.put_item(TableName=aws.table, Item=item, ConditionExpression="attribute_not_exists(pk)")
    assert caught.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    assert faults.ambiguous("dynamodb", "PutItem") == 1
    stored = aws.dynamodb.get_item(TableName=aws.table, Key={"pk": item["pk"], "sk": item["sk"]})
    assert stored["Item"]["owner"] == {"S": "me"}


def test_a_transaction_whose_answer_was_lost_succeeds_on_the_retry_as_on_aws(
    aws: AwsStack, faults: AwsFaults, faulty: boto3.session.Session
) -> None:
    """DynamoDB deduplicates TransactWriteItems by the ClientRequestToken botocore fills once per call, so
    its retry succeeds and applies nothing; moto ignores the token, and the injector answers for AWS.
    A new call (a new token) still meets the condition."""
    dynamodb = faulty.client("dynamodb")
    key = {"pk": {"S": "burst"}, "sk": {"S": uuid.uuid4().hex}}
    claim = {
        "Update": {
            "TableName": aws.table,
            "Key": key,
            "UpdateExpression": "SET claimed = :c ADD times :one",
            "ConditionExpression": "attribute_not_exists(claimed)",
            "ExpressionAttributeValues": {":c": {"S": "mine"}, ":one": {"N": "1"}},
        }
    }
    with faults.step(FailsOnce(), rate=0.5, kinds=("timeout-after",)) as injected:
        answer = dynamodb.transact_write_items(TransactItems=[claim])
    assert answer["ResponseMetadata"]["RetryAttempts"] == 1
    assert injected == [Fault("dynamodb", "TransactWriteItems", "timeout-after", True)]
    stored = aws.dynamodb.get_item(TableName=aws.table, Key=key)["Item"]
    assert stored["times"] == {"N": "1"}  # applied once
    with pytest.raises(ClientError, match="TransactionCanceledException"):
        dynamodb.transact_write_items(TransactItems=[claim])


@pytest.mark.parametrize("applied", [True, False])
def test_a_kill_at_the_second_call_applies_it_or_not_and_the_third_is_never_sent(
    aws: AwsStack, faults: AwsFaults, faulty: boto3.session.Session, applied: bool
) -> None:
    s3 = faulty.client("s3")
    reached = []
    with faults.step(random.Random(2), rate=0.0, kill_at=2, kill_applied=applied) as injected:
        try:
            for key in ("first", "second", "third"):
                reached.append(key)
                s3.put_object(Bucket=aws.bucket, Key=key, Body=key.encode())
        except Killed:
            pass
        with pytest.raises(Killed):  # a dead process stays dead until the step ends
            s3.put_object(Bucket=aws.bucket, Key="third", Body=b"third")
    assert reached == ["first", "second"]
    assert injected == [Fault("s3", "PutObject", "kill", applied)]
    assert [exists(aws, key) for key in ("first", "second", "third")] == [True, applied, False]
    assert faults.ambiguous("s3", "PutObject") == int(applied)


def test_a_reset_after_a_publish_pages_twice(aws: AwsStack, faults: AwsFaults, faulty: boto3.session.Session) -> None:
    """What ``ambiguous`` is for: a publish whose answer was lost is retried by botocore and delivered twice."""
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    topic = sns.create_topic(Name=f"alerts-{uuid.uuid4().hex[:8]}")["TopicArn"]
    queue = sqs.create_queue(QueueName=f"pager-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    with faults.step(FailsOnce(), rate=0.5, kinds=("reset-after",)):
        faulty.client("sns").publish(TopicArn=topic, Message="burst")
    pages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
    assert len(pages) == 2 == 1 + faults.ambiguous("sns", "Publish")


def test_retry_sleeps_go_to_the_injected_sleep_and_nothing_waits(
    aws: AwsStack, faults: AwsFaults, faulty: boto3.session.Session, sleeps: list[float]
) -> None:
    dynamodb = faulty.client("dynamodb")
    item: dict[str, Any] = {"pk": {"S": "throttled"}, "sk": {"S": uuid.uuid4().hex}}
    started = time.monotonic()
    with faults.step(random.Random(3), rate=1.0, kinds=("throttle",)), pytest.raises(ClientError) as caught:
        dynamodb.put_item(TableName=aws.table, Item=item)
    elapsed = time.monotonic() - started
    assert caught.value.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
    # botocore's legacy DynamoDB policy: 10 attempts, 50 ms doubling: 25.55 s of sleeping, none of it real.
    assert sleeps == [0.05 * 2**n for n in range(9)]
    assert elapsed < 5
    assert "Item" not in aws.dynamodb.get_item(TableName=aws.table, Key=item)
