"""Pure parts of the EKS path: cluster names from log groups, saved payload files, command-line times."""

from __future__ import annotations

import base64
import gzip
import json
from datetime import UTC, datetime

import pytest

from auditlake.audit.pipeline import AuditPipeline, PipelineConfig
from auditlake.ingest.cloudwatch import (
    EksAuditForwarder,
    PayloadError,
    archive_cluster_name,
    decode_document,
    decode_subscription,
    eks_cluster_of,
    forward_saved,
)
from auditlake.landing import Landing, decode_lines, valid_cluster_name
from auditlake.stores.local import LocalStore
from auditlake.timestamps import instant
from tests.helpers import awslogs_event, eks_messages, subscription_document


@pytest.mark.parametrize(
    ("group", "cluster"),
    [
        ("/aws/eks/prod/cluster", "prod"),
        ("/aws/eks/Prod_EU-1/cluster", "Prod_EU-1"),
        ("/aws/eks/prod/cluster/extra", None),
        ("/aws/lambda/prod", None),
        ("testLogGroup", None),
        ("/aws/eks/-bad/cluster", None),
    ],
)
def test_cluster_comes_from_the_log_group_only(group: str, cluster: str | None) -> None:
    assert eks_cluster_of(group) == cluster


@pytest.mark.parametrize(
    ("eks", "archive"),
    [("prod", "prod"), ("Prod_EU", "prod-eu"), ("a" * 63, "a" * 63), ("staging_", None), ("B" * 100, None)],
)
def test_archive_names_are_dns_labels(eks: str, archive: str | None) -> None:
    name = archive_cluster_name(eks)
    assert valid_cluster_name(name)
    if archive is not None:
        assert name == archive
    else:  # cut and made unique by a hash of the original name
        assert name != archive_cluster_name(eks.lower() + "x") and len(name) <= 63


def test_malformed_payloads_say_why() -> None:
    with pytest.raises(PayloadError, match="base64"):
        decode_subscription("***")
    not_json = base64.b64encode(gzip.compress(b"{nope")).decode()
    with pytest.raises(PayloadError, match="not JSON") as caught:
        decode_subscription(not_json)
    assert caught.value.payload == b"{nope"
    wrong_shape = base64.b64encode(gzip.compress(b'{"messageType": "DATA_MESSAGE"}')).decode()
    with pytest.raises(PayloadError, match="subscription document"):
        decode_subscription(wrong_shape)


def test_saved_payload_files_in_every_shape(tmp_path: object) -> None:
    """One Lambda event per line, a Lambda on-failure record, a decoded document, all concatenated
    and gzip-compressed (as Firehose writes them), and trailing garbage: 4 deliveries and 1 refusal."""
    messages = eks_messages()
    event = awslogs_event(subscription_document(messages[:2]))
    failure_record = {
        "version": "1.0",
        "requestPayload": awslogs_event(subscription_document(messages[2:3], first_id=9)),
    }
    decoded = subscription_document(messages[3:], first_id=20)
    control = subscription_document([], log_group="")
    control["messageType"] = "CONTROL_MESSAGE"
    text = (
        "\n".join(json.dumps(d) for d in (event, failure_record)) + json.dumps(decoded) + json.dumps(control) + "{oops"
    )
    lake = LocalStore(str(tmp_path))
    forwarder = EksAuditForwarder(AuditPipeline(PipelineConfig()), Landing(lake))
    stats = forward_saved(forwarder, gzip.compress(text.encode()))
    assert (stats.accepted, stats.control, stats.quarantined) == (5, 1, 1)
    (refused,) = [k for k in lake.list("quarantine/audit/_unrouted/") if k.endswith(".body")]
    assert lake.get(refused) == b"{oops"


def test_command_line_times() -> None:
    now = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    assert instant("7d", now) == datetime(2026, 11, 14, 12, 0, tzinfo=UTC)
    assert instant("90m", now) == datetime(2026, 11, 21, 10, 30, tzinfo=UTC)
    assert instant("2026-11-20", now) == datetime(2026, 11, 20, tzinfo=UTC)
    assert instant("2026-11-20T10:00:00+02:00", now) == datetime(2026, 11, 20, 8, tzinfo=UTC)
    with pytest.raises(ValueError):
        instant("last week", now)


def test_a_message_holding_two_events_cannot_shift_the_others(tmp_path: object) -> None:
    """Messages are read as one EventList when each is one event; one that is not falls back to one
    at a time, so every failure still names its own log event."""
    first, second, third = eks_messages()[:3]
    document = subscription_document([first + "," + second, third, "{"])
    lake = LocalStore(str(tmp_path))
    stats = EksAuditForwarder(AuditPipeline(PipelineConfig()), Landing(lake)).forward(
        decode_document(json.dumps(document).encode())
    )
    assert (stats.accepted, stats.quarantined) == (1, 2)
    (key,) = [k for k in lake.list("quarantine/audit/prod/") if k.endswith(".json")]
    items = json.loads(lake.get(key))["items"]
    assert [(i["index"], i["origin"]["event_id"]) for i in items] == [
        (0, document["logEvents"][0]["id"]),
        (2, document["logEvents"][2]["id"]),
    ]
    assert items[0]["auditID"] == json.loads(first)["auditID"]  # read from the head of the bad message


@pytest.mark.parametrize("splice", ["close the list and repeat items", "two messages make one value"])
def test_a_message_is_read_as_exactly_one_json_value(splice: str, tmp_path: object) -> None:
    """Joined into one EventList text, such messages would replace or merge their neighbours; each
    is read on its own, so only the splicing messages are quarantined."""
    first, second, third = eks_messages()[:3]
    if splice == "close the list and repeat items":
        messages = [first, second + '],"items":[' + third]
    else:
        messages = [first + "," + second[:-1] + ",", '"userAgent":"spliced"}', third]
    lake = LocalStore(str(tmp_path))
    stats = EksAuditForwarder(AuditPipeline(PipelineConfig()), Landing(lake)).forward(
        decode_document(json.dumps(subscription_document(messages)).encode())
    )
    kept = first if splice == "close the list and repeat items" else third
    assert (stats.accepted, stats.quarantined) == (1, len(messages) - 1)
    [raw] = lake.list("raw/")
    assert [json.loads(line)["audit_id"] for line in decode_lines(lake.get(raw))] == [json.loads(kept)["auditID"]]


SECRET_MESSAGE = json.dumps(
    {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "RequestResponse",
        "auditID": "cw-secret-1",
        "stage": "ResponseComplete",
        "verb": "get",
        "objectRef": {"resource": "secrets", "namespace": "prod", "name": "db", "apiVersion": "v1"},
        "requestReceivedTimestamp": "2026-11-20T10:00:00.000000Z",
        "stageTimestamp": "2026-11-20T10:00:00.100000Z",
        "responseObject": {"kind": "Secret", "data": {"p": "Y3ctcmVmdXNlZA=="}},
    }
)


def test_a_log_event_that_is_not_one_fails_alone(tmp_path: object) -> None:
    """A numeric id (or no message) in one log event: that one quarantined, its message redacted;
    the others archived; the document never kept as bytes."""
    messages = [*eks_messages()[:2], SECRET_MESSAGE]
    document = subscription_document(messages)
    document["logEvents"][1]["id"] = 2
    lake = LocalStore(str(tmp_path))
    forwarder = EksAuditForwarder(AuditPipeline(PipelineConfig()), Landing(lake))
    stats = forward_saved(forwarder, json.dumps(document).encode())
    assert (stats.events, stats.accepted, stats.quarantined) == (3, 2, 1)
    (key,) = [k for k in lake.list("quarantine/") if k.endswith(".json")]
    (item,) = json.loads(lake.get(key))["items"]
    assert item["index"] == 1 and item["origin"]["event_id"] == 2 and "`$.id`" in item["reason"]
    assert item["auditID"] == json.loads(messages[1])["auditID"]
    assert not [k for k in lake.list("quarantine/") if k.endswith(".body")]
    assert all(b"Y3ctcmVmdXNlZA==" not in lake.get(k) for k in lake.list(""))


def test_a_refused_document_that_parses_is_kept_redacted(tmp_path: object) -> None:
    document = subscription_document([SECRET_MESSAGE, eks_messages()[0]], log_group="/aws/lambda/not-eks")
    lake = LocalStore(str(tmp_path))
    forwarder = EksAuditForwarder(AuditPipeline(PipelineConfig()), Landing(lake))
    stats = forward_saved(forwarder, json.dumps(document).encode())
    assert (stats.accepted, stats.quarantined) == (0, 1)
    (key,) = list(lake.list("quarantine/audit/_unrouted/"))
    manifest = json.loads(lake.get(key))
    assert "not an EKS cluster's" in manifest["reason"] and len(manifest["items"]) == 2
    assert manifest["items"][0]["auditID"] == "cw-secret-1" and "responseObject" not in manifest["items"][0]["item"]
    assert b"Y3ctcmVmdXNlZA==" not in lake.get(key)


class _Recorded:
    def __init__(self) -> None:
        self.metrics: dict[str, float] = {}

    def add_metric(self, name: str, unit: str, value: float) -> None:
        self.metrics[name] = self.metrics.get(name, 0) + value


def test_only_truncated_messages_count_as_truncated(tmp_path: object) -> None:
    """A log event that is not one is quarantined too, but is not a message CloudWatch cut short."""
    first, second = eks_messages()[:2]
    document = subscription_document([first, second[:500] + "[Truncated...]", SECRET_MESSAGE])
    document["logEvents"][2]["id"] = 3
    metrics = _Recorded()
    forwarder = EksAuditForwarder(AuditPipeline(PipelineConfig()), Landing(LocalStore(str(tmp_path))), metrics=metrics)
    stats = forward_saved(forwarder, json.dumps(document).encode())
    assert (stats.accepted, stats.quarantined, stats.truncated) == (1, 2, 1)
    assert metrics.metrics["TruncatedMessages"] == 1
