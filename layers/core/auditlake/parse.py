"""Reading audit input: webhook ``EventList`` bodies and JSON Lines audit logs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

import msgspec

from .jsonio import JSONError, loads
from .k8s_audit import EventList, RawEventList, eventlist_decoder, raw_eventlist_decoder

_EVENTLIST_API_VERSIONS = frozenset({None, "audit.k8s.io/v1", "audit.k8s.io/v1beta1", "audit.k8s.io/v1alpha1"})


_UNREADABLE = (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError, RecursionError)


class EnvelopeError(ValueError):
    """The body is not an EventList at all; ``reason`` is safe to return to the client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def decode_eventlist(body: bytes) -> EventList | RawEventList:
    """The typed EventList when every item fits the schema (the fast path), else the same list with
    each item as raw bytes, to be handled one by one. EnvelopeError when it is not an EventList."""
    check_utf8(body)
    try:
        doc: EventList | RawEventList = eventlist_decoder.decode(body)
    except msgspec.ValidationError:
        try:
            doc = raw_eventlist_decoder.decode(body)
        except _UNREADABLE:
            _explain(body)  # raises the precise reason
            raise
    except _UNREADABLE:
        _explain(body)
        raise
    check_envelope(doc.kind, doc.apiVersion)
    return doc


def eventlist_raw_items(body: bytes, *, single_event: bool = False) -> list[Any]:
    """The items of an EventList as raw bytes each (file ingest); EnvelopeError when it is not one.
    With ``single_event``, a document that is one Event is a list of one."""
    check_utf8(body)
    try:
        doc = raw_eventlist_decoder.decode(body)
    except _UNREADABLE:
        _explain(body)
        raise
    if single_event and doc.kind == "Event":
        return [body]
    check_envelope(doc.kind, doc.apiVersion)
    return doc.items or []


def check_utf8(body: bytes) -> None:
    """JSON is UTF-8. msgspec does not look inside the raw bodies it hands back, so check up front;
    isascii() runs at memory speed, and only other bodies pay for a full decode."""
    if not body.isascii():
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EnvelopeError(f"body is not UTF-8 (byte {exc.start})") from None


def check_envelope(kind: Any, api_version: Any) -> None:
    if kind != "EventList":
        raise EnvelopeError(f"expected kind EventList, got {_shown(kind)}")
    if api_version not in _EVENTLIST_API_VERSIONS:
        raise EnvelopeError(f"expected apiVersion audit.k8s.io/v1, got {_shown(api_version)}")


def _shown(value: Any) -> str:
    """A client's value in a reply or a log line, bounded: it may be anything, of any size."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _explain(body: bytes) -> None:
    """Raise EnvelopeError with the reason the body is not an EventList (slow path, errors only)."""
    try:
        doc = loads(body)
    except JSONError as exc:
        raise EnvelopeError(exc.reason) from None
    if not isinstance(doc, dict):
        raise EnvelopeError(f"expected a JSON object of kind EventList, got a JSON {type(doc).__name__}")
    check_envelope(doc.get("kind"), doc.get("apiVersion"))
    if not isinstance(doc.get("items"), list | None):
        raise EnvelopeError("items must be a list")
    raise EnvelopeError("not an EventList")


def legacy_hint(raw: bytes) -> str:
    """A line of ``--audit-log-format=legacy`` text is worth naming as such in the reason."""
    return " (legacy text audit format?)" if b" AUDIT: id=" in raw else ""


@dataclass(frozen=True)
class Line:
    """One non-blank line of a JSON Lines file, as bytes."""

    number: int
    raw: bytes


def iter_lines(stream: IO[bytes]) -> Iterator[Line]:
    for number, raw in enumerate(stream, start=1):
        text = raw.strip()
        if text:
            yield Line(number, text)


def iter_decoded(stream: IO[bytes]) -> Iterator[tuple[Line, Any, str | None]]:
    """Each non-blank line with its JSON value, or with None and why it is not JSON."""
    for line in iter_lines(stream):
        try:
            yield line, loads(line.raw), None
        except JSONError as exc:
            yield line, None, exc.reason + legacy_hint(line.raw)
