"""Reading audit input: webhook ``EventList`` bodies and JSON Lines audit logs."""

from __future__ import annotations

import json
import re
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
    except (msgspec.ValidationError, RecursionError):
        doc = _raw_eventlist(body)
    except _UNREADABLE:
        _explain(body)
        raise
    check_envelope(doc.kind, doc.apiVersion)
    return doc


def _raw_eventlist(body: bytes) -> RawEventList:
    """Each item as its bytes; an item nested beyond the parser's limit is split out by a scanner,
    so it alone fails (and its neighbours are kept)."""
    try:
        return raw_eventlist_decoder.decode(body)
    except RecursionError:
        split = split_eventlist(body)
        if split is None:
            _explain(body)
            raise
        return split
    except _UNREADABLE:
        _explain(body)  # raises the precise reason
        raise


def eventlist_raw_items(body: bytes, *, single_event: bool = False) -> list[Any]:
    """The items of an EventList as raw bytes each (file ingest); EnvelopeError when it is not one.
    With ``single_event``, a document that is one Event is a list of one."""
    check_utf8(body)
    try:
        doc = _raw_eventlist(body)
    except RecursionError:
        if single_event:
            return [body]  # one Event too deep to parse: it fails on its own
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


# JSON strings (escapes included) and the structural characters between them: enough to track depth.
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},:]')
_OPEN, _CLOSE = frozenset(b"[{"), frozenset(b"]}")
TOO_DEEP_TEXT = b'"[nested too deep]"'
_ENVELOPE_DEPTH = 64


def split_eventlist(body: bytes) -> RawEventList | None:
    """An EventList body split into its envelope and the bytes of each item, without parsing the
    items: for a body the parser refuses as too deep. None when it is not an object with an
    ``items`` array (the caller then explains why)."""
    depth, key, expect_key, seen_items, deepest = 0, None, False, False, 0
    kind = api_version = None
    items: list[msgspec.Raw] = []
    item_start: int | None = None  # inside the items array: where the current item starts
    for match in _TOKEN.finditer(body):
        char = body[match.start()]
        if char == 0x22:  # a string
            if depth == 1 and expect_key:
                key = json.loads(match.group())
            elif depth == 1 and key in ("kind", "apiVersion"):
                value = json.loads(match.group())
                kind, api_version = (value, api_version) if key == "kind" else (kind, value)
        elif char in _OPEN:
            if depth == 0 and char != 0x7B:
                return None
            if depth == 1 and key == "items" and char == 0x5B and not expect_key:
                item_start, seen_items, items = match.end(), True, []
            depth += 1
            expect_key = char == 0x7B and depth == 1
            if item_start is None and depth > deepest:
                deepest = depth
        elif char in _CLOSE:
            depth -= 1
            if depth == 1 and item_start is not None:
                _add_item(items, body, item_start, match.start())
                item_start = None
            if depth < 0:
                return None
        elif char == 0x2C:  # ,
            if depth == 2 and item_start is not None:
                _add_item(items, body, item_start, match.start())
                item_start = match.end()
            expect_key = depth == 1
        elif depth == 1:  # :
            expect_key = False
    if depth != 0 or not seen_items or deepest > _ENVELOPE_DEPTH:
        return None  # the envelope itself (not an item) is too deep: the body is refused
    return RawEventList(kind=kind, apiVersion=api_version, items=items)


def _add_item(items: list[msgspec.Raw], body: bytes, start: int, end: int) -> None:
    item = body[start:end].strip()
    if item:
        items.append(msgspec.Raw(item))


def prune(data: bytes, limit: int) -> bytes:
    """JSON bytes with every value nested deeper than ``limit`` replaced by ``"[nested too deep]"``:
    what the parser can then read, and redaction walk."""
    out: list[bytes] = []
    depth, last, skipping = 0, 0, False
    for match in _TOKEN.finditer(data):
        char = data[match.start()]
        if char in _OPEN:
            depth += 1
            if depth == limit + 1 and not skipping:
                out.append(data[last : match.start()])
                skipping = True
        elif char in _CLOSE:
            if depth == limit + 1 and skipping:
                out.append(TOO_DEEP_TEXT)
                last, skipping = match.end(), False
            depth -= 1
    out.append(b"" if skipping else data[last:])
    return b"".join(out)


BODY_KEYS = ('"requestObject":', '"responseObject":')
AUDIT_ID = re.compile(r'"auditID"\s*:\s*"([A-Za-z0-9-]{1,64})"')
STAGE = re.compile(r'"stage"\s*:\s*"([A-Za-z]{1,32})"')


def head_before_bodies(text: str) -> tuple[str, bool]:
    """An audit event's text cut before its first body (a message or line cut short: bodies that
    cannot be parsed cannot be checked for secrets); True when a body was cut off."""
    cut = [at for at in (text.find(key) for key in BODY_KEYS) if at >= 0]
    return (text[: min(cut)], True) if cut else (text, False)
