"""Kubernetes Events (core/v1 and events.k8s.io/v1) -> records with the events archive's columns.

Both APIs serve the same stored objects under different field names (corpus events/NOTES.md);
both map to one set of columns. ``event_time`` is when it happened, the first of: eventTime,
series.lastObservedTime, lastTimestamp, firstTimestamp, metadata.creationTimestamp. Fields without a
column go to ``extra``; ``metadata.managedFields`` (the API server's bookkeeping of which client
wrote which field) is not kept.

Detection rules over Events are evaluated here, the one place the poller and Events file import
both pass through: ``normalise_event`` hands the Event, as the API server sent it, to its
``detector`` (``detect.matches.Detector.events``) and appends the matches to ``matches`` once the
Event has been read; an Event that cannot be (it is quarantined) yields none.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NoReturn

from auditlake import timestamps
from auditlake.jsonio import dumps_str
from auditlake.landing import Invalid

if TYPE_CHECKING:
    from auditlake.detect.matches import Detector, Match

CORE_V1 = "v1"
EVENTS_V1 = "events.k8s.io/v1"

# (core/v1 key, events.k8s.io key) -> column. Keys read by both names.
_SAME = {"reason": "reason", "type": "type", "action": "action", "reportingInstance": "reporting_instance"}
_RENAMED: tuple[tuple[str, str, str | None], ...] = (
    ("message", "note", "note"),
    ("involvedObject", "regarding", None),
    ("reportingComponent", "reportingController", "reporting_controller"),
    ("firstTimestamp", "deprecatedFirstTimestamp", None),
    ("lastTimestamp", "deprecatedLastTimestamp", None),
    ("count", "deprecatedCount", None),
    ("source", "deprecatedSource", None),
)
_HANDLED = frozenset(
    {"kind", "apiVersion", "metadata", "eventTime", "series", "related", *_SAME}
    | {name for pair in _RENAMED for name in pair[:2]}
)
_METADATA = frozenset({"name", "namespace", "uid", "resourceVersion", "creationTimestamp", "managedFields"})
_REFERENCE = {
    "kind": "regarding_kind",
    "namespace": "regarding_namespace",
    "name": "regarding_name",
    "uid": "regarding_uid",
    "apiVersion": "regarding_api_version",
    "fieldPath": "regarding_field_path",
}


def normalise_event(
    obj: Any,
    *,
    cluster: str,
    api: str,
    observed_at: str,
    detector: Detector | None = None,
    matches: list[Match] | None = None,
) -> dict[str, Any]:
    """One Event object (either API) -> its record; Invalid with the reason if it cannot be. With a
    ``detector``, its matches of the Event are appended to ``matches`` (only when it can be read)."""
    record = _normalise(obj, cluster, api, observed_at)
    if detector is not None and matches is not None:
        matches.extend(detector.events(obj, cluster, observed_at))
    return record


def _normalise(obj: Any, cluster: str, api: str, observed_at: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise Invalid(f"item is a JSON {type(obj).__name__}, not an Event object")
    if obj.get("kind") not in (None, "Event"):
        raise Invalid(f"kind must be Event, got {obj.get('kind')!r}")
    metadata = _object(obj, "metadata")
    uid, version = metadata.get("uid"), metadata.get("resourceVersion")
    if not isinstance(uid, str) or not uid or not isinstance(version, str) or not version:
        raise Invalid("metadata.uid and metadata.resourceVersion are required")
    record: dict[str, Any] = {
        "cluster": cluster,
        "api": api,
        "uid": uid,
        "resource_version": version,
        "namespace": _text(metadata, "namespace", "metadata."),
        "name": _text(metadata, "name", "metadata."),
        "observed_at": observed_at,
    }
    extra: dict[str, Any] = {}
    for key, column in _SAME.items():
        record[column] = _text(obj, key)
    values: dict[str, Any] = {}
    for core_key, events_key, target in _RENAMED:
        value = obj.get(core_key)
        if value is None:
            value = obj.get(events_key)
        values[core_key] = value
        if target is not None:
            record[target] = value if isinstance(value, str | None) else _wrong(core_key, "a string")
    regarding = values["involvedObject"]
    if regarding is not None:
        if not isinstance(regarding, dict):
            _wrong("involvedObject", "an object")
        for key, value in regarding.items():
            if key in _REFERENCE:
                record[_REFERENCE[key]] = _text(regarding, key, "involvedObject.")
            else:
                extra[f"involvedObject.{key}"] = value
    source = values["source"]
    if source:
        extra["source"] = source
    record["first_timestamp"] = _time(values["firstTimestamp"], "firstTimestamp")
    record["last_timestamp"] = _time(values["lastTimestamp"], "lastTimestamp")
    record["count"] = _count(values["count"], "count")
    series = obj.get("series")
    if series is not None:
        if not isinstance(series, dict):
            _wrong("series", "an object")
        record["series_count"] = _count(series.get("count"), "series.count")
        record["series_last_observed"] = _time(series.get("lastObservedTime"), "series.lastObservedTime")
    related = obj.get("related")
    if related is not None:
        record["related"] = dumps_str(related)
    record["event_time"] = (
        _time(obj.get("eventTime"), "eventTime")
        or record.get("series_last_observed")
        or record["last_timestamp"]
        or record["first_timestamp"]
        or _time(metadata.get("creationTimestamp"), "metadata.creationTimestamp")
    )
    if record["event_time"] is None:
        raise Invalid("no time (eventTime, series, lastTimestamp, firstTimestamp, creationTimestamp)")
    for key in obj.keys() - _HANDLED:
        extra[key] = obj[key]
    for key in metadata.keys() - _METADATA:
        extra[f"metadata.{key}"] = metadata[key]
    if extra:
        record["extra"] = dumps_str(extra)
    return {key: value for key, value in record.items() if value is not None}


def api_of(obj: Mapping[str, Any], default: str = CORE_V1) -> str:
    """Which API an Event was read through, from its own apiVersion when it says."""
    api = obj.get("apiVersion")
    return api if api in (CORE_V1, EVENTS_V1, "events.k8s.io/v1beta1") else default


def _object(obj: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = obj.get(key)
    if not isinstance(value, dict):
        raise Invalid(f"{key} must be an object")
    return value


def _text(obj: Mapping[str, Any], key: str, prefix: str = "") -> str | None:
    value = obj.get(key)
    if value is None or isinstance(value, str):
        return value
    return _wrong(f"{prefix}{key}", "a string")


def _time(value: Any, name: str) -> str | None:
    if value is None:
        return None
    try:
        return timestamps.canonical(value)
    except ValueError as exc:
        raise Invalid(f"{name}: {exc}") from None


def _count(value: Any, name: str) -> int | None:
    """A count the archive's int32 column holds (checked here, so the compactor never meets one it cannot)."""
    if value is not None and (type(value) is not int or not 0 <= value < 2**31):
        _wrong(name, "a 32-bit count")
    return value


def _wrong(name: str, expected: str) -> NoReturn:
    raise Invalid(f"{name} must be {expected}")
