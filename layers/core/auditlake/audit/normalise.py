"""One audit event -> one record whose fields are the archive's columns.

The event arrives typed (``audit.schema.AuditEvent``): msgspec has already checked every field's
type. What is left here: timestamps, the pipeline policy, redaction, and fields this version has
no column for, which go to ``extra`` so nothing is lost. This is the ingest hot path (`make bench`):
sub-objects are replaced by empty stand-ins instead of tested at every use, and the record is built
in one constructor call.
"""

from __future__ import annotations

from typing import Any

from ciso8601 import parse_rfc3339

from auditlake import timestamps
from auditlake.audit.policy import Policy
from auditlake.audit.redact import RedactionConfig, free_form, raw_text, redact_bodies, redact_text, safe_reason, shown
from auditlake.audit.schema import AuditEvent, ObjectReference, Status, UserInfo
from auditlake.jsonio import loads
from auditlake.landing import Invalid
from auditlake.model import LEVEL_RANK, AuditRecord

CURRENT_API = "audit.k8s.io/v1"
_NO_USER = UserInfo()
_NO_REF = ObjectReference()
_NO_STATUS = Status()
_REQUEST = LEVEL_RANK["Request"]
_REQUEST_RESPONSE = LEVEL_RANK["RequestResponse"]
_fromisoformat = parse_rfc3339  # strict RFC 3339: the grammar of timestamps.canonical and the compactor


def normalise(  # noqa: PLR0917 - positional: keyword passing costs measurably per event
    event: AuditEvent,
    extra: dict[str, Any] | None,
    cluster: str,
    source: str,
    ingested_at: str,
    policy: Policy | None,
    redaction: RedactionConfig,
) -> Any:
    """The event's AuditRecord, or None when the pipeline policy drops it.

    ``extra`` holds fields the lenient path found that have no column (None on the fast path).
    """
    api = event.apiVersion
    if api is not None and api != CURRENT_API and not api.startswith("audit.k8s.io/"):
        raise Invalid(f"apiVersion must be audit.k8s.io/*, got {shown(api)}", "apiVersion")
    user = event.user or _NO_USER
    ref = event.objectRef or _NO_REF
    status = event.responseStatus or _NO_STATUS
    verb, uri, stage, received = event.verb, event.requestURI, event.stage, event.level

    level: str = received
    omit_managed = False
    if policy is not None:
        decision = policy.decide(
            user.username, user.groups, verb, ref.resource, ref.subresource, ref.namespace, ref.apiGroup, ref.name, uri
        )
        if decision.level == "None" or stage in decision.omit_stages:
            return None
        if LEVEL_RANK[decision.level] < LEVEL_RANK[received]:
            level = decision.level
        omit_managed = decision.omit_managed_fields

    # Kubernetes writes RFC 3339 with microseconds and Z, the archive's form: validated inline.
    received_at, stage_at = event.requestReceivedTimestamp, event.stageTimestamp
    if received_at is not None and _is_canonical_shape(received_at):
        try:
            _fromisoformat(received_at)
        except ValueError as exc:
            raise _bad_time("requestReceivedTimestamp", received_at, exc) from None
    else:
        received_at = _event_time(event)
    if stage_at is not None and stage_at != received_at:
        if _is_canonical_shape(stage_at):
            try:
                _fromisoformat(stage_at)
            except ValueError as exc:
                raise _bad_time("stageTimestamp", stage_at, exc) from None
        else:
            stage_at = _timestamp(stage_at, "stageTimestamp")

    redactions: list[str] = []
    request_json = response_json = None
    rank = LEVEL_RANK[level]
    if rank >= _REQUEST:
        request = event.requestObject or None
        response = (event.responseObject or None) if rank >= _REQUEST_RESPONSE else None
        if request is not None or response is not None:
            request_json, response_json = redact_bodies(
                request, response, ref, redaction, redactions, omit_managed=omit_managed, verb=verb, uri=uri
            )

    annotations = event.annotations
    if (
        extra is not None
        or (api is not None and api != CURRENT_API)
        or event.timestamp is not None
        or event.metadata is not None
        or status.metadata
    ):
        extra = dict(extra or {})
        if api is not None and api != CURRENT_API:
            extra["apiVersion"] = api
        if event.timestamp is not None:
            extra["timestamp"] = event.timestamp
        if event.metadata is not None:
            extra["metadata"] = event.metadata
        if status.metadata:
            extra["responseStatus.metadata"] = status.metadata
    imp = event.impersonatedUser or _NO_USER
    imp_extra = None if imp.extra is None else free_form(imp.extra, "impersonatedUser.extra", redactions, redaction)
    user_extra = None if user.extra is None else free_form(user.extra, "user.extra", redactions, redaction)
    details = status.details
    details_json = raw_text(details, "responseStatus.details", redactions, redaction) if details else None
    message = status.message
    if message:
        message = redact_text(message, "responseStatus.message", redactions)
    authz_decision = authz_reason = annotations_json = None
    if annotations:
        # The authorization columns come from the annotations as stored: redacted (string values
        # stay strings, replaced or re-encoded).
        before = len(redactions)
        annotations_json = free_form(annotations, "annotations", redactions, redaction)
        kept = annotations if len(redactions) == before else loads(annotations_json.encode()) or {}
        authz_decision = kept.get("authorization.k8s.io/decision")
        authz_reason = kept.get("authorization.k8s.io/reason")
    # Positional, one line per column in AUDIT_COLUMNS order (tests/unit/test_normalise.py checks it).
    return AuditRecord(
        cluster,  # cluster
        source,  # source
        event.auditID,  # audit_id
        stage,  # stage
        level,  # level
        received,  # received_level
        verb,  # verb
        uri,  # request_uri
        user.username,  # user_name
        user.uid,  # user_uid
        user.groups,  # user_groups
        user_extra,  # user_extra
        imp.username,  # impersonated_user_name
        imp.uid,  # impersonated_user_uid
        imp.groups,  # impersonated_user_groups
        imp_extra,  # impersonated_user_extra
        event.sourceIPs,  # source_ips
        event.userAgent,  # user_agent
        ref.resource,  # object_resource
        ref.subresource,  # object_subresource
        ref.namespace,  # object_namespace
        ref.name,  # object_name
        ref.apiGroup,  # object_api_group
        ref.apiVersion,  # object_api_version
        ref.uid,  # object_uid
        ref.resourceVersion,  # object_resource_version
        status.code,  # response_code
        status.status,  # response_status
        status.reason,  # response_reason
        message,  # response_message
        details_json,  # response_details
        received_at,  # request_received_at
        stage_at,  # stage_at
        authz_decision,  # authz_decision
        authz_reason,  # authz_reason
        annotations_json,  # annotations
        request_json,  # request_object
        response_json,  # response_object
        redactions,  # redactions
        free_form(extra, "extra", redactions, redaction) if extra else None,  # extra
        ingested_at,  # ingested_at
    )


def _is_canonical_shape(value: str) -> bool:
    # parse_rfc3339 then checks digits, separators and the calendar (no week dates, hour 24, second 60).
    return len(value) == 27 and value[26] == "Z" and value[19] == "." and value[10] == "T"


def _event_time(event: AuditEvent) -> str:
    """requestReceivedTimestamp; v1beta1 log lines may only carry ``timestamp`` or metadata's."""
    for name, value in (
        ("requestReceivedTimestamp", event.requestReceivedTimestamp),
        ("stageTimestamp", event.stageTimestamp),
        ("timestamp", event.timestamp),
    ):
        if value is not None:
            return _timestamp(value, name)
    created = (event.metadata or {}).get("creationTimestamp")
    if created is not None:
        return _timestamp(created, "metadata.creationTimestamp")
    raise Invalid("no timestamp (requestReceivedTimestamp, stageTimestamp, timestamp) to place the event in time")


def _timestamp(value: Any, name: str) -> str:
    try:
        return timestamps.canonical(value)
    except ValueError as exc:
        raise _bad_time(name, value, exc) from None


def _bad_time(name: str, value: Any, exc: ValueError) -> Invalid:
    """The reason names the field and the problem; the value only as ``redact.shown`` allows."""
    text = str(exc)
    if type(value) is str:
        text = text.replace(repr(value[:40]), shown(value))
    return Invalid(f"{name}: {safe_reason(text)}", name)
