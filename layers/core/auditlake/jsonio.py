"""JSON in and out: orjson for speed, the standard library where orjson would lose data.

orjson turns integers beyond 64 bits into floats when loading and refuses them when dumping; an
audit archive must not round numbers, so documents that may hold such integers take the exact path.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

# A run of 19+ digits may be an integer outside orjson's exact range (|n| >= 2**63 has 19 digits).
_MAYBE_BIG_INT = re.compile(rb"\d{19}")


class JSONError(ValueError):
    """Input is not a JSON document we can read; ``reason`` is safe to show to a client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads(data: bytes) -> Any:
    """Parse bytes as UTF-8 JSON; raise JSONError with a precise reason (UTF-8, depth, syntax)."""
    if not _MAYBE_BIG_INT.search(data):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            _raise_reason(data, exc)
    return _exact_loads(data)


def _exact_loads(data: bytes) -> Any:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JSONError(f"body is not UTF-8 (byte {exc.start})") from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise JSONError("nesting too deep") from None
    except ValueError as exc:
        raise JSONError(f"invalid JSON: {exc}") from None


def _raise_reason(data: bytes, exc: orjson.JSONDecodeError) -> None:
    message = str(exc)
    if "depth limit" in message or "recursion" in message.lower():
        raise JSONError("nesting too deep (more than 1024 levels)") from None
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise JSONError(f"body is not UTF-8 (byte {err.start})") from None
    raise JSONError(f"invalid JSON: {message}") from None


def dumps(value: Any) -> bytes:
    """Compact JSON bytes; falls back to the standard library for integers orjson cannot hold."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError as exc:
        if "64-bit" not in str(exc):
            raise
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def dumps_str(value: Any) -> str:
    return dumps(value).decode("utf-8")
