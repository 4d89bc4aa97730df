"""Reading audit input: webhook ``EventList`` bodies and JSON Lines audit logs."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, NoReturn

import msgspec

from auditlake.audit.redact import LETTER_ESCAPE, shown
from auditlake.audit.schema import AuditEvent, EventList, RawEventList, eventlist_decoder
from auditlake.jsonio import JSONError, encode, loads

_EVENTLIST_API_VERSIONS = frozenset({None, "audit.k8s.io/v1", "audit.k8s.io/v1beta1", "audit.k8s.io/v1alpha1"})


_UNREADABLE = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)
_top_decoder = msgspec.json.Decoder(dict[str, msgspec.Raw])
_value_decoder = msgspec.json.Decoder()
_typed_items_decoder = msgspec.json.Decoder(list[AuditEvent] | None)
_raw_items_decoder = msgspec.json.Decoder(list[msgspec.Raw] | None)
DUPLICATE_ITEMS = "the body has more than one top-level items key (readers disagree which list is the batch)"


class EnvelopeError(ValueError):
    """The body is not an EventList at all; ``reason`` is safe to return to the client. ``items``: the
    body's items as their bytes when they could still be told apart (each to be kept redacted)."""

    def __init__(self, reason: str, items: list[bytes] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.items = items


def decode_eventlist(body: bytes) -> EventList | RawEventList:
    """The typed EventList when every item fits the schema (the fast path), else the same list with
    each item as raw bytes, to be handled one by one. EnvelopeError when it is not an EventList.

    What makes one item unreadable (bytes that are not UTF-8, an escape that names no character, such
    as a lone surrogate, which Go's JSON accepts in a patch body; nesting beyond the parser) fails that
    item alone: the body is then split into its items by a scanner, and only an envelope that cannot
    be read refuses the body."""
    if body.count(b'"items"') == 1 and LETTER_ESCAPE.search(body) is None:
        # kube-apiserver's own bodies: one items key and no letter written as an escape (Go escapes
        # only <, >, & and U+2028/9), so no second items key can hide; one typed decode.
        try:
            check_utf8(body)
            doc = eventlist_decoder.decode(body)
        except (EnvelopeError, msgspec.ValidationError, *_UNREADABLE):
            pass
        else:
            check_envelope(doc.kind, doc.apiVersion)
            return doc
    top = _top(body)
    if top is None:
        return _split(body)
    kind, api_version, items = _envelope(body, top)
    if items is None:
        return EventList(kind=kind, apiVersion=api_version, items=[])
    try:
        return EventList(kind=kind, apiVersion=api_version, items=_typed_items_decoder.decode(items))
    except (msgspec.ValidationError, *_UNREADABLE):
        pass
    try:
        return RawEventList(kind=kind, apiVersion=api_version, items=_raw_items_decoder.decode(items))
    except msgspec.ValidationError:
        raise EnvelopeError("items must be a list") from None
    except _UNREADABLE:
        return _split(body)


def eventlist_raw_items(body: bytes, *, single_event: bool = False) -> list[Any]:
    """The items of an EventList as raw bytes each (file ingest); EnvelopeError when it is not one.
    With ``single_event``, a document that is one Event is a list of one."""
    if single_event and top_kind(body) == "Event":
        return [body]  # one Event, readable or not: it fails or passes on its own
    top = _top(body)
    if top is None:
        return list(_split(body).items or [])
    _kind, _api_version, items = _envelope(body, top)
    if items is None:
        return []
    try:
        return list(_raw_items_decoder.decode(items) or [])
    except msgspec.ValidationError:
        raise EnvelopeError("items must be a list") from None
    except _UNREADABLE:
        return list(_split(body).items or [])


def top_kind(document: bytes) -> Any:
    """The ``kind`` of a JSON object's top level (None when it has none or cannot be read): what tells a
    saved webhook body (an EventList) from an audit event that holds one in its bodies."""
    try:
        check_utf8(document)
        value = _top_decoder.decode(document).get("kind")
        return None if value is None else _value_decoder.decode(value)
    except (EnvelopeError, msgspec.ValidationError, *_UNREADABLE):
        scan = _scan(document)
        return scan.kind if scan is not None else None


def _top(body: bytes) -> dict[str, msgspec.Raw] | None:
    """The body's top-level object, each value as its bytes; None when something in it cannot be read."""
    try:
        check_utf8(body)
        return _top_decoder.decode(body)
    except msgspec.ValidationError:
        _explain(body)  # not a JSON object
    except (EnvelopeError, *_UNREADABLE):
        return None


def _envelope(body: bytes, top: dict[str, msgspec.Raw]) -> tuple[Any, Any, msgspec.Raw | None]:
    """kind, apiVersion (checked) and the items' bytes of a readable body; EnvelopeError for a body
    whose top level holds ``items`` more than once."""
    kind, api_version = (_value_decoder.decode(top[k]) if k in top else None for k in ("kind", "apiVersion"))
    check_envelope(kind, api_version)
    if not _compact_and_unique(body, top):
        scan = _scan(body)
        if scan is not None and len(scan.arrays) > 1:
            raise EnvelopeError(DUPLICATE_ITEMS, [bytes(item) for array in scan.arrays for item in array])
    return kind, api_version, top.get("items")


def _compact_and_unique(body: bytes, top: dict[str, msgspec.Raw]) -> bool:
    """True when the body is exactly its top-level keys and values, written compactly (as kube-apiserver
    writes it): then no key occurs twice (a repeated key adds bytes). Cheap: no pass over the body;
    anything else (whitespace, escaped keys, a repeated key) is told by the scanner."""
    if not top:
        return False
    size = 1 + len(top)  # braces and the commas between members
    for key, value in top.items():
        size += len(encode(key)) + 1 + len(value)
    return size == len(body)


def _split(body: bytes) -> RawEventList:
    """A body that cannot be read as a whole, split into its envelope and the bytes of each item, so
    that only the unreadable items fail. When the envelope itself cannot be read (or is not an
    EventList's), the items found are given with the EnvelopeError, to be kept each redacted."""
    scan = _scan(body)
    items = [item for array in scan.arrays for item in array] if scan is not None else []
    try:
        if scan is None or not scan.envelope_ok or not scan.arrays:
            _explain(body)
        check_envelope(scan.kind, scan.api_version)
        if len(scan.arrays) > 1:
            raise EnvelopeError(DUPLICATE_ITEMS)
    except EnvelopeError as exc:
        if items and exc.items is None:
            exc.items = [bytes(item) for item in items]
        raise
    return RawEventList(kind=scan.kind, apiVersion=scan.api_version, items=items)


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
        raise EnvelopeError(f"expected kind EventList, got {shown(kind)}")
    if api_version not in _EVENTLIST_API_VERSIONS:
        raise EnvelopeError(f"expected apiVersion audit.k8s.io/v1, got {shown(api_version)}")


def _explain(body: bytes) -> NoReturn:
    """Raise EnvelopeError with the reason the body is not an EventList (slow path, errors only)."""
    check_utf8(body)
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


def iter_lines(stream: Iterable[bytes]) -> Iterator[Line]:
    """The non-blank lines of a binary stream (a file, or ``ingest.inputs.open_input``'s gunzipped one)."""
    for number, raw in enumerate(stream, start=1):
        text = raw.strip()
        if text:
            yield Line(number, text)


def iter_decoded(stream: Iterable[bytes]) -> Iterator[tuple[Line, Any, str | None]]:
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


@dataclass
class _Scan:
    """A body as the scanner reads it: the top level's ``kind`` and ``apiVersion``, the items of each
    top-level ``items`` array (as their bytes, unparsed) and whether the rest, the envelope, is JSON
    this parser reads, at most ``_ENVELOPE_DEPTH`` deep."""

    kind: Any
    api_version: Any
    arrays: list[list[msgspec.Raw]]
    envelope_ok: bool


def _scan(body: bytes) -> _Scan | None:
    """Split a JSON object into its envelope and the bytes of each item of its ``items`` arrays without
    parsing the items. None when it is not an object with balanced brackets."""
    depth, key, expect_key, deepest = 0, None, False, 0
    values: dict[Any, Any] = {}
    arrays: list[list[msgspec.Raw]] = []
    spans: list[tuple[int, int]] = []
    items: list[msgspec.Raw] = []
    array_start = item_start = -1  # inside an items array: where it and its current item start
    for match in _TOKEN.finditer(body):
        char = body[match.start()]
        if char == 0x22:  # a string
            if depth == 1 and expect_key:
                key = _string(match.group())
            elif depth == 1 and key in ("kind", "apiVersion"):
                values[key] = _string(match.group())
        elif char in _OPEN:
            if depth == 0 and char != 0x7B:
                return None
            if depth == 1 and key == "items" and char == 0x5B and not expect_key:
                array_start = item_start = match.end()
                items = []
            depth += 1
            expect_key = char == 0x7B and depth == 1
            if item_start < 0 and depth > deepest:
                deepest = depth
        elif char in _CLOSE:
            depth -= 1
            if depth < 0:
                return None
            if depth == 1 and item_start >= 0:
                _add_item(items, body, item_start, match.start())
                arrays.append(items)
                spans.append((array_start, match.start()))
                item_start = -1
        elif char == 0x2C:  # ,
            if depth == 2 and item_start >= 0:
                _add_item(items, body, item_start, match.start())
                item_start = match.end()
            expect_key = depth == 1
        elif depth == 1:  # :
            expect_key = False
    if depth != 0 or deepest == 0:
        return None
    return _Scan(
        values.get("kind"), values.get("apiVersion"), arrays, deepest <= _ENVELOPE_DEPTH and _readable(body, spans)
    )


def _string(token: bytes) -> Any:
    try:
        return json.loads(token)
    except ValueError:  # not UTF-8, a broken escape: no key or value this parser would read
        return _UNREADABLE_STRING


_UNREADABLE_STRING = object()


def _readable(body: bytes, spans: list[tuple[int, int]]) -> bool:
    """Whether the body without the contents of its items arrays is JSON this parser reads."""
    parts, last = [], 0
    for start, end in spans:
        parts.append(body[last:start])
        last = end
    parts.append(body[last:])
    envelope = b"".join(parts)
    try:
        check_utf8(envelope)
        msgspec.json.decode(envelope)
    except (EnvelopeError, msgspec.DecodeError, *_UNREADABLE):
        return False
    return True


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
# Read from the head of an event that is not JSON (the regex Falco's k8saudit-eks plugin uses, anchored).
_AUDIT_ID = re.compile(r'"auditID"\s*:\s*"([A-Za-z0-9-]{1,64})"')
_STAGE = re.compile(r'"stage"\s*:\s*"([A-Za-z]{1,32})"')


def head_ids(text: str) -> tuple[str | None, str | None]:
    """The auditID and stage of an event's text that cannot be parsed: both sit near its start."""
    found = (pattern.search(text, 0, 4096) for pattern in (_AUDIT_ID, _STAGE))
    audit_id, stage = (match.group(1) if match else None for match in found)
    return audit_id, stage


def head_before_bodies(text: str) -> tuple[str, bool]:
    """An audit event's text cut before its first body (a message or line cut short: bodies that
    cannot be parsed cannot be checked for secrets); True when a body was cut off."""
    cut = [at for at in (text.find(key) for key in BODY_KEYS) if at >= 0]
    return (text[: min(cut)], True) if cut else (text, False)
