"""Alerts on AWS (moto server): the webhook and the EKS forwarder count the forbidden correlations'
matches in the state table and publish to SNS once per burst (threshold 403s of one identity within
60 s); findings' page claims in the state table; the DynamoDB and local adapters page alike."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auditlake.jsonio import dumps
from tests.helpers import (
    BURST_START,
    AwsStack,
    LambdaContext,
    awslogs_event,
    eventlist_body,
    forbidden_events,
    forbidden_matches,
    forbidden_rules,
    load_function,
    subscription_document,
)
from tests.integration.test_webhook_lambda import invoker, load_app, register


@pytest.fixture
def topic(aws: AwsStack) -> tuple[str, Any]:
    """An SNS topic with an SQS queue subscribed, to read what was published."""
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    arn = sns.create_topic(Name=f"alerts-{uuid.uuid4().hex[:8]}")["TopicArn"]
    queue = sqs.create_queue(QueueName=f"pager-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=queue_arn)

    def pages() -> list[dict[str, Any]]:
        out = []
        while messages := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages"):
            for message in messages:
                envelope = json.loads(message["Body"])
                out.append({"subject": envelope.get("Subject"), **json.loads(envelope["Message"])})
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
        return out

    return arn, pages


def test_webhook_pages_once_per_burst(monkeypatch: pytest.MonkeyPatch, aws: AwsStack, topic: Any) -> None:
    arn, pages = topic
    invoke = invoker(load_app(monkeypatch, aws, AUDITLAKE_ALERT_TOPIC=arn))
    token = register(aws, "prod")
    nine = forbidden_events(9)
    assert invoke(eventlist_body(nine), token)[0] == 200
    assert pages() == []
    tenth_and_more = forbidden_events(6, first=9, start=BURST_START + timedelta(seconds=9))
    assert invoke(eventlist_body(tenth_and_more), token)[0] == 200
    assert invoke(eventlist_body(tenth_and_more), token)[0] == 200  # the API server retried: no second page
    two_minutes_later = forbidden_events(10, first=50, start=BURST_START + timedelta(minutes=2))
    assert invoke(eventlist_body(two_minutes_later), token)[0] == 200
    sent = pages()
    assert [(p["identity"], p["window_start"], p["count"]) for p in sent] == [
        ("mallory@example.com", "2026-11-21T10:05:00Z", 15),  # 9, then 6 more in the batch that crossed
        ("mallory@example.com", "2026-11-21T10:07:00Z", 10),
    ]
    assert sent[0]["subject"].startswith("auditlake: mallory@example.com denied 15x")
    assert sent[0]["resources"] == ["secrets prod/db-pass"] and sent[0]["cluster"] == "prod"


def test_webhook_answers_503_when_the_page_cannot_be_sent(monkeypatch: pytest.MonkeyPatch, aws: AwsStack,
                                                          topic: Any) -> None:  # fmt: skip
    arn, pages = topic
    missing = arn.replace(arn.rsplit(":", 1)[1], "no-such-topic")
    invoke = invoker(load_app(monkeypatch, aws, AUDITLAKE_ALERT_TOPIC=missing))
    token = register(aws, "prod")
    burst = eventlist_body(forbidden_events(10))
    status, body = invoke(burst, token)
    assert status == 503 and "alerting" in body["message"]  # kube-apiserver sends the batch again
    fixed = invoker(load_app(monkeypatch, aws, AUDITLAKE_ALERT_TOPIC=arn))
    assert fixed(burst, token)[0] == 200
    assert len(pages()) == 1


def test_eks_forwarder_pages_too(monkeypatch: pytest.MonkeyPatch, aws: AwsStack, topic: Any) -> None:
    arn, pages = topic
    env = {"AUDITLAKE_RAW_BUCKET": aws.bucket, "AUDITLAKE_STATE_TABLE": aws.table, "AUDITLAKE_ALERT_TOPIC": arn}
    app = load_function(monkeypatch, "cloudwatch", env)
    messages = [dumps(e).decode() for e in forbidden_events(12)]
    app.lambda_handler(awslogs_event(subscription_document(messages)), LambdaContext())
    [page] = pages()
    assert (page["cluster"], page["count"]) == ("prod", 12)  # the cluster comes from the log group


def test_the_dynamodb_counter_pages_a_straddling_burst_once_and_expires_by_the_ingest_clock(aws: AwsStack) -> None:
    """The state table's counters: a burst across a clock minute pages once although two deliveries
    race for it; every bucket's TTL is a day after it last counted, not a day after its event time."""
    from auditlake.trust.alerts import KEEP_SECONDS, Correlations, DynamoCounter, forbidden_thresholds

    calls: list[tuple[str, dict[str, Any]]] = []
    aws.dynamodb.meta.events.register("provide-client-params.dynamodb.*", lambda params, model, **_: calls.append(
        (model.name, params)))  # fmt: skip
    now = datetime.now(UTC).timestamp()
    sent: list[dict[str, Any]] = []
    rules, stack = forbidden_rules().correlations, forbidden_thresholds(10, 0)  # the stack's defaults
    first = Correlations(
        DynamoCounter(aws.dynamodb, aws.table, clock=lambda: now), sent.append, rules, thresholds=stack
    )
    second = Correlations(
        DynamoCounter(aws.dynamodb, aws.table, clock=lambda: now), sent.append, rules, thresholds=stack
    )
    nine = forbidden_matches(9, every=2, start=datetime(2026, 11, 21, 10, 5, 44, tzinfo=UTC))  # 10:05:44 .. 10:06:00
    six = forbidden_matches(6, every=2, first=9, start=datetime(2026, 11, 21, 10, 6, 2, tzinfo=UTC))  # .. 10:06:12
    first.observe(nine)
    assert sent == []
    first.observe(six)
    second.observe(six)  # a concurrent delivery of the same batch sees the same burst: its claim is refused
    assert [(a["count"], a["window_start"]) for a in sent] == [(15, "2026-11-21T10:05:44Z")]
    counted = list(calls)
    items = aws.dynamodb.scan(TableName=aws.table)["Items"]
    assert {item["pk"]["S"] for item in items} == {"ALERT#forbidden#prod#mallory@example.com"}
    assert all(int(item["ttl"]["N"]) == int(now) + KEEP_SECONDS for item in items)
    # What the functions' CountDenials statement must allow (tests/infra checks the roles): UpdateItem
    # (in a transaction too) and Query, on ALERT# partitions only.
    assert {name for name, _ in counted} == {"UpdateItem", "Query", "TransactWriteItems"}
    keys = [p.get("Key") or p["ExpressionAttributeValues"] for name, p in counted if name != "TransactWriteItems"]
    keys += [i["Update"]["Key"] for name, p in counted if name == "TransactWriteItems" for i in p["TransactItems"]]
    assert all((key.get("pk") or key[":pk"])["S"].startswith("ALERT#") for key in keys)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    offsets=st.lists(st.integers(min_value=0, max_value=300), min_size=1, max_size=40),
    cut=st.integers(min_value=1, max_value=9),
    data=st.data(),
)
def test_the_dynamodb_counter_pages_exactly_as_the_local_one(
    aws: AwsStack, tmp_path_factory: pytest.TempPathFactory, offsets: list[int], cut: int, data: st.DataObject
) -> None:
    """The two adapters of one port: the same denials, batched and redelivered the same way, page
    the same bursts with the same counts."""
    from auditlake.trust.alerts import Correlations, DynamoCounter, LocalCounter, forbidden_thresholds

    cluster = f"c{uuid.uuid4().hex[:12]}"  # one table for every example: each its own partitions
    at = [BURST_START + timedelta(seconds=offset) for offset in offsets]
    records = [m for n, start in enumerate(at) for m in forbidden_matches(1, cluster=cluster, first=n, start=start)]
    stream = [*data.draw(st.permutations(records)), *data.draw(st.lists(st.sampled_from(records), max_size=4))]
    threshold = data.draw(st.integers(min_value=2, max_value=6))
    pages: dict[str, list[tuple[str, int]]] = {"dynamodb": [], "local": []}
    counters = {
        "dynamodb": DynamoCounter(aws.dynamodb, aws.table),
        "local": LocalCounter(tmp_path_factory.mktemp("alerts") / "alerts.json"),
    }
    for name, counter in counters.items():
        page = partial(lambda name, a: pages[name].append((a["first_denied"], a["count"])), name)
        alerts = Correlations(counter, page, forbidden_rules().correlations,
                              thresholds=forbidden_thresholds(threshold, 0))  # fmt: skip
        for start in range(0, len(stream), cut):
            alerts.observe(stream[start : start + cut])
    assert pages["dynamodb"] == pages["local"]


def test_findings_are_paged_once_per_window_through_state_table_claims(aws: AwsStack) -> None:
    """FINDING# claims: a conditional PutItem (an expired claim DynamoDB has not removed yet counts as
    gone) and a DeleteItem of one's own claim when the page fails; nothing else is called."""
    from auditlake.trust.alerts import AlertError, DynamoPageClaims, FindingPages
    from tests.unit.test_alerts_rules import Pager, finding

    calls: list[tuple[str, dict[str, Any]]] = []
    aws.dynamodb.meta.events.register("provide-client-params.dynamodb.*", lambda params, model, **_: calls.append(
        (model.name, params)))  # fmt: skip
    clock = [datetime.now(UTC).timestamp()]
    pager = Pager(fail=1)
    cluster = f"c{uuid.uuid4().hex[:12]}"
    findings = FindingPages(DynamoPageClaims(aws.dynamodb, aws.table, clock=lambda: clock[0]), pager, dedup_minutes=10)
    with pytest.raises(AlertError):
        findings.observe([finding(1, cluster=cluster)])
    assert findings.observe([finding(1, cluster=cluster), finding(2, cluster=cluster)]) != []  # the retry pages, once
    assert findings.observe([finding(3, cluster=cluster)]) == []
    assert len(findings.observe([finding(4, cluster=cluster, secret="other")])) == 1
    clock[0] += 10 * 60  # the window is over; the item may still be in the table (TTL is lazy)
    assert len(findings.observe([finding(5, cluster=cluster)])) == 1
    assert [a["audit_id"][-1] for a in pager.sent] == ["1", "4", "5"]
    called = {name for name, _ in calls}
    items = aws.dynamodb.scan(TableName=aws.table)["Items"]
    mine = sorted(item["pk"]["S"] for item in items if f"#{cluster}#" in item["pk"]["S"])
    assert mine == [f"FINDING#f-1#{cluster}#mallory@example.com#secrets/prod/{name}" for name in ("db-pass", "other")]
    assert called == {"PutItem", "GetItem", "UpdateItem", "DeleteItem"}  # what PageFindingsOnce allows


def test_a_value_count_correlation_pages_alike_on_dynamodb_and_locally(aws: AwsStack, tmp_path: Any) -> None:
    from auditlake.trust.alerts import Correlations, DynamoCounter, LocalCounter
    from tests.unit.test_alerts_rules import ENUMERATION, reads

    cluster = f"c{uuid.uuid4().hex[:12]}"
    names = ["a", "b", "a", "c", "d", "b", "e", "f", "g", "h", "i", "j", "k"]
    batch = reads(names, every=70, cluster=cluster)  # 13 reads, 11 distinct, over 14 minutes
    sent: dict[str, list[tuple[str, int, list[str]]]] = {"dynamodb": [], "local": []}
    counters = {"dynamodb": DynamoCounter(aws.dynamodb, aws.table), "local": LocalCounter(tmp_path / "a.json")}
    for name, counter in counters.items():
        alerts = Correlations(counter, lambda a, name=name: sent[name].append(
            (a["window_start"], a["count"], a["values"])), [ENUMERATION])  # fmt: skip
        for start in range(0, len(batch), 3):
            alerts.observe(batch[start : start + 3])
    assert sent["dynamodb"] == sent["local"] and sent["local"]
    assert sent["local"][0][1] >= 5
