"""Fixtures shared by every tier (moto in server mode, a stack on it, the fake Kubernetes API). Plain
helpers live in tests/helpers.py: pytest advises against importing conftest."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers import AwsStack, moto_server

# CI runs without a terminal, where rich assumes 80 columns: test as narrow as that, or narrower.
os.environ["COLUMNS"] = "60"

# ---------------------------------------------------------------- moto in server mode


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto in server mode on a free port: the S3/DynamoDB/SSM adapters talk real HTTP to it."""
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def aws(moto_endpoint: str) -> AwsStack:
    import boto3

    suffix = uuid.uuid4().hex[:10]
    s3 = boto3.client("s3")
    dynamodb = boto3.client("dynamodb")
    bucket, table = f"raw-{suffix}", f"state-{suffix}"
    s3.create_bucket(Bucket=bucket)
    dynamodb.create_table(
        TableName=table,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
    )
    return AwsStack(s3, dynamodb, boto3.client("ssm"), bucket, table)


# ---------------------------------------------------------------- Kubernetes API (the Events poller)


@pytest.fixture(scope="session")
def kube_ca() -> Any:
    import trustme

    return trustme.CA()


@pytest.fixture
def fake_kube(kube_ca: Any) -> Iterator[Any]:
    from tests.fakes.kube import FakeKube

    fake = FakeKube(kube_ca)
    fake.start()
    yield fake
    fake.stop()
