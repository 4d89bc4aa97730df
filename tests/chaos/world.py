"""One deployed stack, in-process on moto server, under one movable clock: what the chaos model drives.

Contract:
- ``World(endpoint, ca)`` makes the resources template.yaml makes (raw bucket, audit/events/findings
  archives, versioned, the state table, a KMS RSA_3072 signing key, an SNS alert topic read through a subscribed
  SQS queue), registers one webhook cluster (``HOOK``, its token stored hashed), reads one EKS log
  group cluster (``EKS``) and polls one Kubernetes cluster (``KUBE``: a FakeKube over HTTPS, its token
  in Secrets Manager), and loads the five functions from functions/<name>/app.py with their template
  environment (``tests.helpers.load_function``). Everything is named per world: worlds on one moto
  server never meet.
- One clock for everything (moto server's threads included): ``time_machine.travel(now, tick=True)``;
  ``advance(seconds)`` moves it. ``faults`` (tests.chaos.aws_faults.AwsFaults) is installed on boto3's
  default session, the one the functions' clients come from, with its retry sleeps sent to ``advance``.
- ``invoke(name, event, ...)`` calls a function's handler; when the function dies (``Killed``) the
  next invocation cold-starts it (the module is loaded afresh). The checker's reads go through
  ``self.session``, a separate boto3 Session on which no fault is ever installed.
- ``close()`` undoes everything (clock, faults, environment, fake server); call it once.
"""

from __future__ import annotations

import io
import json
import os
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import boto3
import pyarrow.parquet as pq
import pytest
import time_machine

from auditlake.clusters.registry import DynamoRegistry, PollConfig, new_token, token_hash
from auditlake.landing import decode_lines, parse_raw_key
from auditlake.stores.s3 import S3Store
from auditlake.trust.digest import DynamoChainHead, KmsSigner, VerifyReport
from auditlake.trust.digest import verify as verify_chain
from auditlake.trust.ledger import DynamoLedger
from tests.chaos.aws_faults import AwsFaults, Killed
from tests.fakes.kube import FakeKube
from tests.helpers import LambdaContext, load_function

HOOK = "hook"  # the webhook's cluster
EKS = "eks1"  # the CloudWatch forwarder's cluster (log group /aws/eks/eks1/cluster)
KUBE = "kube1"  # the Events poller's cluster
FUNCTIONS = ("webhook", "cloudwatch", "events_poller", "compactor", "digest")
# The compactor waits this long (real time) for a partition lock held elsewhere before reporting the
# object back for a retry. Deployed it waits longer; the model moves its clock instead of waiting.
LOCK_WAIT_SECONDS = 0.2


class World:
    def __init__(self, ca: Any, *, start: datetime | None = None) -> None:
        self.mp = pytest.MonkeyPatch()
        self.traveller = time_machine.travel(start or datetime.now(UTC), tick=True)
        self.coordinates = self.traveller.start()
        self.session = boto3.session.Session(region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
        self.s3 = self.session.client("s3")
        self.dynamodb = self.session.client("dynamodb")
        self.sqs = self.session.client("sqs")
        self.kms = self.session.client("kms")
        suffix = uuid.uuid4().hex[:10]
        self.raw, self.table = f"raw-{suffix}", f"state-{suffix}"
        self.archives = {kind: f"{kind}-{suffix}" for kind in ("audit", "events", "findings")}
        for bucket in (self.raw, *self.archives.values()):
            self.s3.create_bucket(Bucket=bucket)
        for bucket in self.archives.values():  # versioned, as template.yaml makes them
            self.s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        self.dynamodb.create_table(
            TableName=self.table,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        )
        self.key = self.kms.create_key(KeySpec="RSA_3072", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
        sns = self.session.client("sns")
        self.topic = sns.create_topic(Name=f"alerts-{suffix}")["TopicArn"]
        self.pager = self.sqs.create_queue(QueueName=f"pager-{suffix}")["QueueUrl"]
        queue_arn = self.sqs.get_queue_attributes(QueueUrl=self.pager, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        sns.subscribe(TopicArn=self.topic, Protocol="sqs", Endpoint=queue_arn)
        now = datetime.now(UTC).isoformat()
        registry = DynamoRegistry(self.dynamodb, self.table)
        self.token = new_token()
        registry.add_cluster(HOOK, token_hash(self.token), created_at=now)
        self.kube = FakeKube(ca)
        self.kube.start()
        secret = self.session.client("secretsmanager").create_secret(
            Name=f"auditlake/{KUBE}-{suffix}", SecretString="reader-token"
        )
        config = PollConfig(
            "static", server=self.kube.url, ca_pem=ca.cert_pem.bytes().decode(), token_secret=secret["ARN"]
        )
        registry.set_polling(KUBE, config, created_at=now)
        self.env = {
            "AUDITLAKE_RAW_BUCKET": self.raw,
            "AUDITLAKE_STATE_TABLE": self.table,
            "AUDITLAKE_AUDIT_BUCKET": self.archives["audit"],
            "AUDITLAKE_EVENTS_BUCKET": self.archives["events"],
            "AUDITLAKE_FINDINGS_BUCKET": self.archives["findings"],
            "AUDITLAKE_ALERT_TOPIC": self.topic,
            "AUDITLAKE_ALERT_THRESHOLD": "10",
            "AUDITLAKE_DIGEST_KEY": self.key,
            "AUDITLAKE_AUDIT_RETENTION_DAYS": "365",
            "AUDITLAKE_EVENTS_RETENTION_DAYS": "90",
            "AUDITLAKE_FINDINGS_RETENTION_DAYS": "365",
            # Thousands of invocations: their logs and EMF metrics would bury the run's one JSON line.
            "POWERTOOLS_LOG_LEVEL": "CRITICAL",
            "POWERTOOLS_METRICS_DISABLED": "true",
        }
        boto3.setup_default_session(region_name=self.session.region_name)
        self.faults = AwsFaults(sleep=self.advance)
        self.faults.install(boto3.DEFAULT_SESSION)  # type: ignore[arg-type]
        self.apps: dict[str, ModuleType | None] = dict.fromkeys(FUNCTIONS)
        self.cold_starts = 0

    # ---------------------------------------------------------------- the clock

    def advance(self, seconds: float) -> None:
        if seconds > 0:
            self.coordinates.shift(timedelta(seconds=seconds))

    @staticmethod
    def now() -> datetime:
        return datetime.now(UTC)

    # ---------------------------------------------------------------- the functions

    def app(self, name: str) -> ModuleType:
        module = self.apps[name]
        if module is None:
            module = self.apps[name] = load_function(self.mp, name, self.env)
            self.cold_starts += 1
            if name == "compactor":
                module.compactor.lock_wait_seconds = LOCK_WAIT_SECONDS
        return module

    def invoke(self, name: str, event: dict[str, Any], *, remaining_ms: int = 60_000) -> Any:
        """Call the handler; a ``Killed`` process is cold-started on its next invocation."""
        module = self.app(name)  # a cold start makes calls too: outside any fault step by design
        try:
            return module.lambda_handler(event, LambdaContext(remaining_ms=remaining_ms))
        except Killed:
            self.apps[name] = None
            raise

    def cold_start(self, name: str) -> None:
        """Load ``name`` now (outside fault steps: an init that fails is retried by Lambda, not modelled)."""
        self.app(name)

    # ---------------------------------------------------------------- the checker's reads (no faults)

    def keys(self, bucket: str, prefix: str) -> dict[str, str]:
        """key -> ETag of every object under ``prefix``."""
        out: dict[str, str] = {}
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                out[item["Key"]] = item["ETag"]
        return out

    def get(self, bucket: str, key: str) -> bytes:
        body: bytes = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        return body

    def raw_rows(self, key: str) -> list[dict[str, Any]]:
        return [json.loads(line) for line in decode_lines(self.get(self.raw, key))]

    def parquet_rows(self, kind: str, key: str, columns: list[str]) -> list[dict[str, Any]]:
        table = pq.read_table(io.BytesIO(self.get(self.archives[kind], key)), columns=columns)
        rows: list[dict[str, Any]] = table.to_pylist()
        return rows

    def pages(self) -> list[dict[str, Any]]:
        """Every alert published to the topic since the last call."""
        out = []
        while messages := self.sqs.receive_message(QueueUrl=self.pager, MaxNumberOfMessages=10).get("Messages"):
            for message in messages:
                envelope = json.loads(message["Body"])
                out.append({"subject": envelope.get("Subject"), **json.loads(envelope["Message"])})
                self.sqs.delete_message(QueueUrl=self.pager, ReceiptHandle=message["ReceiptHandle"])
        return out

    def verify(self) -> VerifyReport:
        """The deployed verify's core, as ``auditlake verify --stack`` builds it (no lifecycle rules
        and no age limit: the model's clock jumps)."""
        archives = {kind: S3Store(self.s3, bucket) for kind, bucket in self.archives.items()}
        return verify_chain(
            archives,
            KmsSigner(self.kms, self.key),
            head=DynamoChainHead(self.dynamodb, self.table),
            ledger=DynamoLedger(self.dynamodb, self.table),
            now=self.now(),
        )

    @staticmethod
    def raw_kind(key: str) -> str | None:
        raw = parse_raw_key(key)
        return raw.kind if raw else None

    # ---------------------------------------------------------------- the end

    def close(self, *, also: Callable[[], None] | None = None) -> None:
        try:
            if also:
                also()
        finally:
            self.faults.uninstall()
            self.kube.faults = None
            self.kube.stop()
            self.mp.undo()
            self.traveller.stop()
