"""JSON in and out with msgspec: exact integers of any size, compact UTF-8 output, precise errors."""

from __future__ import annotations

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


def dumps(value: Any) -> bytes:
    """Compact JSON bytes, key order kept."""
    return encode(value)


def dumps_str(value: Any) -> str:
    return encode(value).decode("utf-8")
