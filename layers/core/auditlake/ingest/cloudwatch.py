"""EKS audit events from CloudWatch Logs: the subscription payload and the forwarder into the pipeline.

EKS writes one audit ``Event`` per log event to ``/aws/eks/<cluster>/cluster``, streams
``kube-apiserver-audit-*``, next to the cluster's other control-plane logs. The forwarder takes the
cluster from the log group (never from the payload), keeps only audit streams, and sends each message
through the same pipeline as the webhook: policy, redaction, normalisation, raw landing.

A message EKS cut short (``[Truncated...]``, over 256 KiB) cannot be parsed or put back together;
it is quarantined with its auditID and stage (read from its head), its log stream and event id,
and the head up to its first body: bodies that were cut cannot be checked for secrets, so they
are not kept (the whole message stays in CloudWatch Logs for the log group's retention).

The subscription and ``auditlake backfill`` share ``events``: one raw object per call, named by
the log events' ids, so a redelivery rewrites the same object and the compactor's dedupe on
(cluster, auditID, stage) leaves each event once in the archive, whichever path brought it.
"""

from __future__ import annotations

import binascii
import gzip
import hashlib
import json
import logging
import re
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

import msgspec
from aws_lambda_powertools.utilities.data_classes.cloud_watch_logs_event import CloudWatchLogsEvent

from auditlake.audit.parse import head_before_bodies, head_ids
from auditlake.audit.pipeline import AuditPipeline, quarantine_item
from auditlake.audit.redact import RedactionConfig
from auditlake.ingest.intake import Batch, IngestStats, failed, land, quarantine
from auditlake.landing import UNROUTED, ItemFailure, Landing, batch_id, valid_cluster_name
from auditlake.metrics import MetricsSink, NoMetrics
from auditlake.model import SOURCE_CLOUDWATCH
from auditlake.timestamps import format_utc
from auditlake.trust.alerts import Watch

logger = logging.getLogger(__name__)

AUDIT_STREAM_PREFIX = "kube-apiserver-audit"
TRUNCATED = "[Truncated...]"
DATA_MESSAGE = "DATA_MESSAGE"
CONTROL_MESSAGE = "CONTROL_MESSAGE"
# EKS cluster names: 1-100 characters, a letter or digit first (the EKS CreateCluster API).
EKS_NAME = re.compile(r"^[0-9A-Za-z][A-Za-z0-9_-]{0,99}$")
_LOG_GROUP = re.compile(r"^/aws/eks/(?P<name>[0-9A-Za-z][A-Za-z0-9_-]{0,99})/cluster$")


def log_group_of(eks_cluster: str) -> str:
    return f"/aws/eks/{eks_cluster}/cluster"


def eks_cluster_of(log_group: str) -> str | None:
    match = _LOG_GROUP.match(log_group)
    return match.group("name") if match else None


def archive_cluster_name(eks_cluster: str) -> str:
    """The ``cluster`` column for an EKS cluster. EKS allows upper case, ``_`` and 100 characters;
    the archive's names are DNS labels: lower-cased, ``_`` -> ``-``, and when still not a label
    (too long, ``-`` last) cut to 54 characters plus 8 hex of the original name's SHA-256."""
    name = eks_cluster.lower().replace("_", "-")
    if valid_cluster_name(name):
        return name
    digest = hashlib.sha256(eks_cluster.encode()).hexdigest()[:8]
    return f"{name[:54].rstrip('-')}-{digest}"


class LogEvent(msgspec.Struct):
    id: str
    timestamp: int  # epoch ms, set by the shipper: not the audit event's time
    message: str
    stream: str = ""  # backfill pages mix streams; a subscription document names its one stream once


@dataclass(frozen=True)
class BadLogEvent:
    """A log event that is not one (an ``id`` that is a number, no ``message``): quarantined alone."""

    value: Any  # as parsed
    reason: str
    stream: str = ""


class _Document(msgspec.Struct, rename="camel"):
    message_type: str
    log_group: str
    log_stream: str
    log_events: list[LogEvent]


class _LooseDocument(msgspec.Struct, rename="camel"):
    """The same document with each log event left as parsed, to be checked one by one."""

    message_type: str
    log_group: str
    log_stream: str
    log_events: list[Any]


_document_decoder = msgspec.json.Decoder(_Document)


@dataclass(frozen=True)
class LogBatch:
    """One decoded subscription document: log events of one log stream."""

    message_type: str
    log_group: str
    log_stream: str
    events: Sequence[LogEvent | BadLogEvent]
    document: bytes = b""  # the decoded JSON as delivered, kept for quarantine


class PayloadError(ValueError):
    """Not a CloudWatch Logs subscription payload; ``payload`` holds the bytes as far as they decoded."""

    def __init__(self, reason: str, payload: bytes) -> None:
        super().__init__(reason)
        self.reason = reason
        self.payload = payload


def decode_subscription(data: str) -> LogBatch:
    """The ``awslogs.data`` field: base64(gzip(JSON)). Powertools undoes base64 and gzip; the JSON is
    read into typed structs in one call (the stdlib parser would be the slowest step)."""
    try:
        document = CloudWatchLogsEvent({"awslogs": {"data": data}}).decompress_logs_data
    except (binascii.Error, zlib.error, ValueError) as exc:
        raise PayloadError(f"awslogs.data is not base64(gzip): {exc}", data.encode("utf-8", "replace")) from None
    return decode_document(document)


_UNPARSED: Any = object()


def decode_document(document: bytes, parsed: Any = _UNPARSED) -> LogBatch:
    """A subscription document already decoded (a Firehose object, a saved payload); ``parsed`` is its
    JSON value when the caller has read it already, so it is converted rather than parsed again."""
    try:
        doc = _document_decoder.decode(document) if parsed is _UNPARSED else msgspec.convert(parsed, _Document)
    except msgspec.ValidationError:
        return _loose_document(document, parsed)  # one log event that is not one fails alone
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise PayloadError(f"decoded awslogs.data is not JSON: {exc}", document) from None
    return LogBatch(doc.message_type, doc.log_group, doc.log_stream, doc.log_events, document)


def _loose_document(document: bytes, parsed: Any) -> LogBatch:
    """A document whose log events are checked one by one (slow path): the bad ones as BadLogEvent."""
    try:
        doc = msgspec.convert(msgspec.json.decode(document) if parsed is _UNPARSED else parsed, _LooseDocument)
    except msgspec.ValidationError as exc:
        raise PayloadError(f"not a CloudWatch Logs subscription document: {exc}", document) from None
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise PayloadError(f"decoded awslogs.data is not JSON: {exc}", document) from None
    events: list[LogEvent | BadLogEvent] = []
    for value in doc.log_events:
        try:
            events.append(msgspec.convert(value, LogEvent))
        except msgspec.ValidationError as exc:
            stream = value.get("stream") if isinstance(value, dict) else None
            events.append(BadLogEvent(value, f"not a log event: {exc}", stream if isinstance(stream, str) else ""))
    return LogBatch(doc.message_type, doc.log_group, doc.log_stream, events, document)


@dataclass
class ForwardStats(IngestStats):
    skipped: int = 0  # log events of other streams (api, authenticator, ...)
    control: int = 0  # CONTROL_MESSAGE deliveries
    truncated: int = 0


class EksAuditForwarder:
    def __init__(
        self,
        pipeline: AuditPipeline,
        landing: Landing,
        *,
        source: str = SOURCE_CLOUDWATCH,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        metrics: MetricsSink | None = None,
        watch: Watch | None = None,
    ) -> None:
        self.watch = watch or Watch()
        self.pipeline = pipeline
        self.landing = landing
        self.source = source
        self.clock = clock
        self.metrics = metrics or NoMetrics()

    def payload(self, data: str) -> ForwardStats:
        """One subscription delivery. Raises when storage fails, so the delivery is retried."""
        try:
            batch = decode_subscription(data)
        except PayloadError as exc:
            return self.refuse(exc.reason, exc.payload)
        try:
            return self.forward(batch)
        except Exception as exc:  # every rung raises: Lambda retries the delivery
            keep = partial(self.refuse, payload=batch.document, log_group=batch.log_group)
            failed(exc, self.metrics, keep, log_group=batch.log_group)
            raise

    def forward(self, batch: LogBatch) -> ForwardStats:
        if batch.message_type == CONTROL_MESSAGE:
            self.metrics.add_metric("ControlMessages", "Count", 1)
            return ForwardStats(control=1)
        if batch.message_type != DATA_MESSAGE:
            reason = f"message type {batch.message_type!r} is neither DATA_MESSAGE nor CONTROL_MESSAGE"
            return self.refuse(reason, batch.document, log_group=batch.log_group)
        eks = eks_cluster_of(batch.log_group)
        if eks is None:
            reason = f"log group {batch.log_group!r} is not an EKS cluster's (/aws/eks/<cluster>/cluster)"
            return self.refuse(reason, batch.document, log_group=batch.log_group)
        return self.events(eks, batch.events, stream=batch.log_stream)

    def events(self, eks_cluster: str, events: Sequence[LogEvent | BadLogEvent], *, stream: str = "") -> ForwardStats:
        """Log events of one EKS cluster's log group (each of its own stream, or of ``stream``): audit
        streams go through the pipeline into one raw object; other streams are counted as skipped. A
        value that is not a log event (BadLogEvent) is quarantined alone, its message redacted."""
        cluster = archive_cluster_name(eks_cluster)
        names: list[str] = []  # of the audit stream's log events, in order: what names the batch
        refused: list[ItemFailure] = []  # bad log events and truncated messages
        truncated = 0
        raws: list[bytes] = []
        sources: list[tuple[int, LogEvent]] = []  # of each raw: its position and log event
        for event in events:  # one pass: keep audit streams, set truncated messages aside
            if isinstance(event, BadLogEvent):
                if (event.stream or stream).startswith(AUDIT_STREAM_PREFIX):
                    failure = _bad_log_event(len(names), event, stream, self.pipeline.config().redaction)
                    refused.append(failure)
                    names.append(f"{event.stream or stream}/!{hashlib.sha256(encode_any(event.value)).hexdigest()}")
                continue
            event.stream = event.stream or stream
            if not event.stream.startswith(AUDIT_STREAM_PREFIX):
                continue
            if event.message.rstrip().endswith(TRUNCATED):
                refused.append(_truncated(len(names), event))
                truncated += 1
            else:
                raws.append(event.message.encode("utf-8", "surrogatepass"))
                sources.append((len(names), event))
            names.append(f"{event.stream}/{event.id}")
        stats = ForwardStats(events=len(names), skipped=len(events) - len(names))
        if not names:
            self.metrics.add_metric("EventsSkipped", "Count", stats.skipped)
            return stats
        at = self.clock()
        batch = batch_id(cluster, self.source, "\n".join(names).encode())
        # Each message on its own: joined into one EventList text, a message such as
        # ``{...}],"items":[{...}`` would close the list and replace the others (measured: no slower).
        result = self.pipeline.items(raws, cluster=cluster, source=self.source, ingested_at=format_utc(at))
        for failure in result.failures:
            failure.index, event = sources[failure.index]
            failure.origin = _origin(event)
            _fill_ids(failure, event.message)
        failures = sorted(refused + result.failures, key=lambda f: f.index)
        stats.add(
            land(
                self.landing,
                Batch(cluster, at, batch, self.source, context={"log_group": log_group_of(eks_cluster)}),
                result.lines,
                failures,
                reason=f"{len(failures)} of {len(names)} log events could not be ingested",
                result=result,
                watch=self.watch,  # AlertError: Lambda retries
                metrics=self.metrics,
                logged="log events stored",
            )
        )
        stats.truncated = truncated
        self.metrics.add_metric("EventsSkipped", "Count", stats.skipped)
        self.metrics.add_metric("TruncatedMessages", "Count", stats.truncated)
        return stats

    def refuse(self, reason: str, payload: bytes, *, log_group: str = "") -> ForwardStats:
        """A delivery that is not EKS audit data at all, under no cluster: when it parses, its log
        events' messages (or itself) kept redacted as quarantined items; else its bytes unchanged."""
        context = {"log_group": log_group} if log_group else None
        batch = Batch(UNROUTED, self.clock(), batch_id(UNROUTED, self.source, payload), self.source, payload, context)
        quarantine(self.landing, batch, reason, _refused_document(payload, reason, self.pipeline.config().redaction))
        self.metrics.add_metric("PayloadsRejected", "Count", 1)
        logger.warning("delivery quarantined", extra={"batch": batch.id, "reason": reason, "log_group": log_group})
        return ForwardStats(events=1, quarantined=1)


def _origin(event: LogEvent) -> dict[str, Any]:
    return {"log_stream": event.stream, "event_id": event.id, "timestamp": event.timestamp}


def encode_any(value: Any) -> bytes:
    """JSON text of a parsed value, whatever its strings hold (lone surrogates come out as escapes)."""
    return json.dumps(value).encode()


def _message_failure(index: int, reason: str, value: Any, redaction: RedactionConfig) -> ItemFailure:
    """A log event (as parsed) that is quarantined: its message, when it has one, as an audit event
    with quarantine's redaction; otherwise the whole value, redacted the same way. Its stream, id
    and time, where they are scalars, say where CloudWatch keeps it."""
    message = value.get("message") if isinstance(value, dict) else None
    if isinstance(message, str):
        failure = quarantine_item(index, reason, message.encode("utf-8", "surrogatepass"), redaction)
        _fill_ids(failure, message)
    else:
        failure = quarantine_item(index, reason, encode_any(value), redaction)
    if isinstance(value, dict):
        origin = {name: value.get(key) for name, key in _ORIGIN if isinstance(value.get(key), str | int | float)}
        failure.origin = origin or None
    return failure


_ORIGIN = (("log_stream", "stream"), ("event_id", "id"), ("timestamp", "timestamp"))


def _bad_log_event(index: int, event: BadLogEvent, stream: str, redaction: RedactionConfig) -> ItemFailure:
    failure = _message_failure(index, event.reason, event.value, redaction)
    failure.origin = {"log_stream": event.stream or stream, **(failure.origin or {})}
    return failure


def _refused_document(payload: bytes, reason: str, redaction: RedactionConfig) -> list[ItemFailure]:
    """A refused delivery that parses, as redacted items: each log event's message, or the document
    itself when it holds none. Empty when it is not JSON (it is then kept unchanged)."""
    try:
        value = json.loads(payload.decode("utf-8", "surrogateescape"))  # lone surrogates too, as Go writes
    except (ValueError, RecursionError):
        return []
    events = value.get("logEvents") if isinstance(value, dict) else None
    if isinstance(events, list) and events:
        return [_message_failure(index, reason, event, redaction) for index, event in enumerate(events)]
    return [quarantine_item(0, reason, encode_any(value), redaction)]


def _truncated(index: int, event: LogEvent) -> ItemFailure:
    head, cut = head_before_bodies(event.message)
    reason = f"message truncated by CloudWatch Logs ({len(event.message)} characters, ends with {TRUNCATED})"
    if cut:
        reason += "; bodies not kept (cut short, they cannot be checked for secrets)"
    audit_id, stage = head_ids(event.message)
    return ItemFailure(
        index, reason, audit_id=audit_id, stage=stage, raw=head.encode("utf-8", "surrogatepass"), origin=_origin(event)
    )


def _fill_ids(failure: ItemFailure, message: str) -> None:
    """The auditID and stage, when quarantine could not read them, from the message's head."""
    if failure.audit_id is None or failure.stage is None:
        audit_id, stage = head_ids(message)
        failure.audit_id, failure.stage = failure.audit_id or audit_id, failure.stage or stage


def forward_saved(forwarder: EksAuditForwarder, data: bytes) -> ForwardStats:
    """Saved deliveries: Lambda events (``{"awslogs": {"data": ...}}``, also inside a Lambda
    on-failure record's ``requestPayload``) or decoded subscription documents; one per file, one per
    line or concatenated (as Firehose writes them), the file gzip-compressed or not. Anything else is
    quarantined whole."""
    total = ForwardStats()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            total.add(forwarder.refuse(f"not readable gzip: {exc}", data))
            return total
    for document, parsed in _documents(data):
        value = parsed["requestPayload"] if isinstance(parsed, dict) and "requestPayload" in parsed else parsed
        if isinstance(value, dict) and isinstance(value.get("awslogs"), dict):
            payload = value["awslogs"].get("data")
            if isinstance(payload, str):
                total.add(forwarder.payload(payload))
                continue
        elif isinstance(value, dict) and "logEvents" in value:
            try:
                total.add(forwarder.forward(decode_document(document, value)))
            except PayloadError as exc:
                total.add(forwarder.refuse(exc.reason, document))
            continue
        total.add(forwarder.refuse("not a CloudWatch Logs subscription payload", document))
    return total


def _documents(data: bytes) -> Iterator[tuple[bytes, Any]]:
    """Each JSON document of a file, with its bytes; the rest of a file that stops being JSON is one
    document of its own (value None)."""
    text = data.decode("utf-8", "surrogateescape")
    decoder = json.JSONDecoder()
    position = 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position >= len(text):
            return
        try:
            value, end = decoder.raw_decode(text, position)
        except ValueError:
            yield text[position:].encode("utf-8", "surrogateescape"), None
            return
        yield text[position:end].encode("utf-8", "surrogateescape"), value
        position = end
