"""Bodies as kube-apiserver serialises them, grown to an exact size, for the webhook's size limits.

Real content is the shared corpus' complete audit events, serialised as Go's encoding/json does
(compact, UTF-8 as is, ``<``, ``>``, ``&`` as ``\\u003c`` ...): the bytes a real batch has, so what
API Gateway's escaping does to them is what it does to a real batch. Worst-case content is a valid
event whose annotation is all ``"``: two bytes in the body (``\\"``), four once escaped again.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from typing import Any

from auditlake.demo.replay import eventlist
from auditlake.http_api import LAMBDA_MAX_REQUEST_BYTES, http_api_event, invocation_bytes
from tests.helpers import COMPLETE_AUDIT_FILES, complete_events

PAD = "auditlake.test/pad"


def go_json(value: Any) -> bytes:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                         ("\u2029", "\\u2029")):  # fmt: skip
        text = text.replace(char, escape)
    return text.encode("utf-8")


@cache
def corpus_items() -> tuple[bytes, ...]:
    """Every complete corpus event as an EventList item (no kind/apiVersion of its own)."""
    events = [e for relative in COMPLETE_AUDIT_FILES for e in complete_events(relative)]
    return tuple(go_json({k: v for k, v in e.items() if k not in ("kind", "apiVersion")}) for e in events)


def padded_item(size: int, filler: str = "x") -> bytes:
    """A valid audit event of exactly ``size`` bytes, its annotation ``filler`` repeated (then ``x``
    for a byte the filler cannot make up)."""
    template = json.loads(corpus_items()[0])
    template["annotations"] = {PAD: ""}
    left = size - len(go_json(template))
    if left < 0:
        raise ValueError(f"an item cannot be as small as {size} bytes")
    unit = len(go_json(filler)) - 2
    template["annotations"][PAD] = filler * (left // unit) + "x" * (left % unit)
    item = go_json(template)
    assert len(item) == size
    return item


def realistic_body(size: int) -> bytes:
    """An EventList of exactly ``size`` bytes: corpus events (repeated as needed), then one event
    padded with ``x`` to make up the rest (escaping leaves ``x`` as it is)."""
    minimum = len(corpus_items()[0]) + 64  # the padded event: the first corpus event and its annotation
    items: list[bytes] = []
    used = len(eventlist([]))
    corpus = corpus_items()
    while used + len(corpus[len(items) % len(corpus)]) + 1 + minimum + 1 <= size:
        item = corpus[len(items) % len(corpus)]
        items.append(item)
        used += len(item) + 1
    items.append(padded_item(size - used))  # `used` counts a comma after every corpus item
    body = eventlist(items)
    assert len(body) == size
    return body


def worst_body(size: int) -> bytes:
    """An EventList of exactly ``size`` bytes that escaping doubles: one event, all ``"``."""
    body = eventlist([padded_item(size - len(eventlist([])), '"')])
    assert len(body) == size
    return body


def largest_fitting(make: Callable[[int], bytes], low: int, high: int, *, base64_encoded: bool = False) -> int:
    """The largest size ``make`` builds a body of whose invocation Lambda still accepts (for bodies
    that only grow with their size: the envelope is then monotonic)."""

    def fits(size: int) -> bool:
        event = http_api_event(make(size), base64_encoded=base64_encoded)
        return invocation_bytes(event) < LAMBDA_MAX_REQUEST_BYTES

    assert fits(low) and not fits(high)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low
