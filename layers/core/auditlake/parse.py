"""Reading audit input: webhook ``EventList`` bodies, single ``Event`` documents, JSON Lines logs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from .jsonio import JSONError, loads

_EVENTLIST_API_VERSIONS = frozenset({None, "audit.k8s.io/v1", "audit.k8s.io/v1beta1", "audit.k8s.io/v1alpha1"})


class EnvelopeError(ValueError):
    """The body is not an EventList at all; ``reason`` is safe to return to the client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_eventlist(body: bytes) -> list[Any]:
    """Return the items of an ``audit.k8s.io`` EventList; EnvelopeError when the body is not one."""
    try:
        doc = loads(body)
    except JSONError as exc:
        raise EnvelopeError(exc.reason) from None
    return eventlist_items(doc)


def eventlist_items(doc: Any) -> list[Any]:
    if not isinstance(doc, dict):
        raise EnvelopeError(f"expected a JSON object of kind EventList, got a JSON {type(doc).__name__}")
    kind = doc.get("kind")
    if kind != "EventList":
        raise EnvelopeError(f"expected kind EventList, got {kind!r}")
    if doc.get("apiVersion") not in _EVENTLIST_API_VERSIONS:
        raise EnvelopeError(f"expected apiVersion audit.k8s.io/v1, got {doc.get('apiVersion')!r}")
    items = doc.get("items")
    if items is None:  # Go serialises an empty slice as null
        return []
    if not isinstance(items, list):
        raise EnvelopeError("items must be a list")
    return items


@dataclass(frozen=True)
class Line:
    """One line of a JSON Lines file: the parsed value, or the reason it could not be parsed."""

    number: int
    raw: bytes
    value: Any = None
    error: str | None = None


def iter_jsonl(stream: IO[bytes]) -> Iterator[Line]:
    """Yield every non-blank line; an ``EventList`` line is expanded into its items."""
    for number, raw in enumerate(stream, start=1):
        text = raw.strip()
        if not text:
            continue
        try:
            value = loads(text)
        except JSONError as exc:
            hint = " (legacy text audit format?)" if b" AUDIT: id=" in text else ""
            yield Line(number, text, error=exc.reason + hint)
            continue
        if isinstance(value, dict) and value.get("kind") == "EventList":
            try:
                items = eventlist_items(value)
            except EnvelopeError as exc:
                yield Line(number, text, error=exc.reason)
                continue
            for item in items:
                yield Line(number, text, value=item)
        else:
            yield Line(number, text, value=value)
