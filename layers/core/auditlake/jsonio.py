"""JSON in and out with msgspec: exact integers of any size, compact UTF-8 output, precise errors."""

from __future__ import annotations

import json
from typing import Any

import msgspec

_encoder = msgspec.json.Encoder()
encode = _encoder.encode


class JSONError(ValueError):
    """Input is not a JSON document we can read; ``reason`` is safe to show to a client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def loads(data: bytes) -> Any:
    """Parse bytes as UTF-8 JSON; raise JSONError with a precise reason (UTF-8, depth, syntax)."""
    try:
        return msgspec.json.decode(data)
    except UnicodeDecodeError as exc:
        raise JSONError(f"body is not UTF-8 (byte {exc.start})") from None
    except RecursionError:
        raise JSONError("nesting too deep") from None
    except msgspec.DecodeError as exc:
        raise JSONError(f"invalid JSON: {exc}") from None


REPLACED = "bytes not UTF-8 or lone UTF-16 surrogate escapes, read as U+FFFD"


def loads_like_go(data: bytes) -> tuple[Any, bool]:
    """Parse as Go's encoding/json reads (kube-apiserver's, and so every body it accepted): bytes
    that are not UTF-8 and lone UTF-16 surrogate escapes (``"\\ud800"``) in strings become U+FFFD.
    True when anything was replaced; JSONError for what Go would refuse too."""
    try:
        return loads(data), False
    except JSONError as exc:
        if exc.reason == "nesting too deep":
            raise
        try:
            value = json.loads(data.decode("utf-8", "replace"), parse_constant=_no_constant)
        except (ValueError, RecursionError):
            raise exc from None
        return _without_surrogates(value), True


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _without_surrogates(value: Any) -> Any:
    """``value`` with every lone surrogate in its strings and keys replaced by U+FFFD."""

    def fix(text: str) -> str:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")

    if type(value) is str:
        return fix(value)
    stack = [value]
    while stack:
        node = stack.pop()
        if type(node) is dict:
            for key in list(node):
                child = node.pop(key)
                node[fix(key)] = fix(child) if type(child) is str else child
                if isinstance(child, dict | list):
                    stack.append(child)
        elif type(node) is list:
            for index, child in enumerate(node):
                if type(child) is str:
                    node[index] = fix(child)
                elif isinstance(child, dict | list):
                    stack.append(child)
    return value


def dumps(value: Any) -> bytes:
    """Compact JSON bytes, key order kept."""
    return encode(value)


def dumps_str(value: Any) -> str:
    return encode(value).decode("utf-8")
