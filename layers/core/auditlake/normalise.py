"""One audit event -> one normalised record whose keys are the archive's columns.

Typed fields are checked here, at the edge: a wrong type quarantines one event instead of failing a
whole Parquet conversion later. Free-form objects become JSON strings; fields this version does not
map (v1beta1's ``timestamp``, vendor fields, new API fields) go to ``extra``, so nothing is lost.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import timestamps
from .jsonio import dumps_str

_TOP_LEVEL = frozenset(
    {
        "kind",
        "apiVersion",
        "level",
        "auditID",
        "stage",
        "requestURI",
        "verb",
        "user",
        "impersonatedUser",
        "sourceIPs",
        "userAgent",
        "objectRef",
        "responseStatus",
        "requestObject",
        "responseObject",
        "requestReceivedTimestamp",
        "stageTimestamp",
        "annotations",
    }
)
_USER = frozenset({"username", "uid", "groups", "extra"})
_OBJECT_REF = frozenset(
    {"resource", "namespace", "name", "uid", "apiGroup", "apiVersion", "resourceVersion", "subresource"}
)
_STATUS = frozenset({"metadata", "status", "message", "reason", "details", "code"})
_EVENT_LEVELS = frozenset({"Metadata", "Request", "RequestResponse"})
_STAGES = frozenset({"RequestReceived", "ResponseStarted", "ResponseComplete", "Panic"})
_CURRENT_API = "audit.k8s.io/v1"
_INT32 = 2**31


class Invalid(ValueError):
    """The event cannot be normalised; the message is the quarantine reason."""


def check_identity(event: Any) -> tuple[str, str, str]:
    """Validate what every later step relies on; return (auditID, stage, level)."""
    if not isinstance(event, dict):
        raise Invalid(f"item is a JSON {type(event).__name__}, not an audit event object")
    kind = event.get("kind")
    if kind is not None and kind != "Event":
        raise Invalid(f"kind must be Event, got {kind!r}")
    api = event.get("apiVersion")
    if api is not None and not (isinstance(api, str) and api.startswith("audit.k8s.io/")):
        raise Invalid(f"apiVersion must be audit.k8s.io/*, got {api!r}")
    audit_id, stage, level = event.get("auditID"), event.get("stage"), event.get("level")
    if not isinstance(audit_id, str) or not audit_id:
        raise Invalid("auditID missing")
    if stage not in _STAGES:
        raise Invalid(f"stage missing or unknown: {stage!r}")
    if level not in _EVENT_LEVELS:
        raise Invalid(f"level missing or unknown: {level!r}")
    return audit_id, stage, level


def normalise(
    event: dict[str, Any],
    *,
    cluster: str,
    source: str,
    ingested_at: str,
    level: str,
    request_object: str | None,
    response_object: str | None,
    redactions: list[str],
) -> dict[str, Any]:
    """Build the record. ``level`` and the serialised bodies come from policy and redaction."""
    extra: dict[str, Any] = {}
    received_at = _event_time(event, extra)
    stage_ts = event.get("stageTimestamp")
    user = _mapping(event, "user")
    imp = _mapping(event, "impersonatedUser")
    ref = _mapping(event, "objectRef")
    status = _mapping(event, "responseStatus")
    annotations = _mapping(event, "annotations")
    for key, value in annotations.items():
        if not isinstance(value, str):
            raise Invalid(f"annotations[{key!r}] must be a string")
    if len(event) > len(_TOP_LEVEL) or not _TOP_LEVEL.issuperset(event):
        for key in event.keys() - _TOP_LEVEL:
            extra[key] = event[key]
    api = event.get("apiVersion")
    if api is not None and api != _CURRENT_API:
        extra["apiVersion"] = api
    _leftovers(user, _USER, "user", extra)
    _leftovers(imp, _USER, "impersonatedUser", extra)
    _leftovers(ref, _OBJECT_REF, "objectRef", extra)
    _leftovers(status, _STATUS, "responseStatus", extra)
    status_meta = status.get("metadata")
    if status_meta:
        extra["responseStatus.metadata"] = status_meta
    code = status.get("code")
    if code is not None and (type(code) is not int or not -_INT32 <= code < _INT32):
        raise Invalid("responseStatus.code must be a 32-bit integer")
    user_extra = user.get("extra")
    imp_extra = imp.get("extra")
    details = status.get("details")
    return {
        "cluster": cluster,
        "source": source,
        "audit_id": event["auditID"],
        "stage": event["stage"],
        "level": level,
        "received_level": event["level"],
        "verb": _opt_str(event, "verb"),
        "request_uri": _opt_str(event, "requestURI"),
        "user_name": _opt_str(user, "username", "user.username"),
        "user_uid": _opt_str(user, "uid", "user.uid"),
        "user_groups": _str_list(user, "groups", "user.groups"),
        "user_extra": None if user_extra is None else _extra_json(user_extra, "user.extra"),
        "impersonated_user_name": _opt_str(imp, "username", "impersonatedUser.username"),
        "impersonated_user_uid": _opt_str(imp, "uid", "impersonatedUser.uid"),
        "impersonated_user_groups": _str_list(imp, "groups", "impersonatedUser.groups"),
        "impersonated_user_extra": None if imp_extra is None else _extra_json(imp_extra, "impersonatedUser.extra"),
        "source_ips": _str_list(event, "sourceIPs", "sourceIPs"),
        "user_agent": _opt_str(event, "userAgent"),
        "object_resource": _opt_str(ref, "resource", "objectRef.resource"),
        "object_subresource": _opt_str(ref, "subresource", "objectRef.subresource"),
        "object_namespace": _opt_str(ref, "namespace", "objectRef.namespace"),
        "object_name": _opt_str(ref, "name", "objectRef.name"),
        "object_api_group": _opt_str(ref, "apiGroup", "objectRef.apiGroup"),
        "object_api_version": _opt_str(ref, "apiVersion", "objectRef.apiVersion"),
        "object_uid": _opt_str(ref, "uid", "objectRef.uid"),
        "object_resource_version": _opt_str(ref, "resourceVersion", "objectRef.resourceVersion"),
        "response_code": code,
        "response_status": _opt_str(status, "status", "responseStatus.status"),
        "response_reason": _opt_str(status, "reason", "responseStatus.reason"),
        "response_message": _opt_str(status, "message", "responseStatus.message"),
        "response_details": None if details is None else dumps_str(details),
        "request_received_at": received_at,
        "stage_at": None if stage_ts is None else _timestamp(stage_ts, "stageTimestamp"),
        "authz_decision": annotations.get("authorization.k8s.io/decision"),
        "authz_reason": annotations.get("authorization.k8s.io/reason"),
        "annotations": dumps_str(annotations) if annotations else None,
        "request_object": request_object,
        "response_object": response_object,
        "redactions": redactions,
        "extra": dumps_str(extra) if extra else None,
        "ingested_at": ingested_at,
    }


def _event_time(event: Mapping[str, Any], extra: dict[str, Any]) -> str:
    """requestReceivedTimestamp; v1beta1 log lines may only carry ``timestamp`` or metadata's."""
    for key in ("requestReceivedTimestamp", "stageTimestamp", "timestamp"):
        value = event.get(key)
        if value is not None:
            return _timestamp(value, key)
    metadata = event.get("metadata")
    if isinstance(metadata, dict) and metadata.get("creationTimestamp") is not None:
        return _timestamp(metadata["creationTimestamp"], "metadata.creationTimestamp")
    raise Invalid("no timestamp (requestReceivedTimestamp, stageTimestamp, timestamp) to place the event in time")


def _timestamp(value: Any, name: str) -> str:
    try:
        return timestamps.canonical(value)
    except ValueError as exc:
        raise Invalid(f"{name}: {exc}") from None


def _mapping(parent: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = parent.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Invalid(f"{key} must be an object")
    return value


def _opt_str(parent: Mapping[str, Any], key: str, name: str | None = None) -> str | None:
    value = parent.get(key)
    if value is None or type(value) is str:
        return value
    raise Invalid(f"{name or key} must be a string")


def _str_list(parent: Mapping[str, Any], key: str, name: str) -> list[str] | None:
    value = parent.get(key)
    if value is None:
        return None
    if type(value) is not list or not all(type(item) is str for item in value):
        raise Invalid(f"{name} must be a list of strings")
    return value


def _extra_json(value: Any, name: str) -> str:
    if not isinstance(value, dict):
        raise Invalid(f"{name} must be an object")
    return dumps_str(value)


def _leftovers(obj: Mapping[str, Any], known: frozenset[str], prefix: str, extra: dict[str, Any]) -> None:
    if obj and not known.issuperset(obj):
        for key in obj.keys() - known:
            extra[f"{prefix}.{key}"] = obj[key]
