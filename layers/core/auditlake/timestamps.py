"""Timestamps as the archive stores them: UTC, microseconds, ``YYYY-MM-DDTHH:MM:SS.ffffffZ``.

Kubernetes writes RFC 3339 with microseconds (the fast path); other producers write nanoseconds,
offsets, or a space instead of ``T`` (Panther-normalised logs). Everything is validated here, at the
edge, so a bad value quarantines one event instead of failing a whole Parquet conversion later.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_SLOW = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?\s*(Z|z|[+-]\d{2}:?\d{2})?$")
_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def canonical(value: object) -> str:
    """Return the canonical UTC string for an RFC 3339-like timestamp; ValueError if it is not one."""
    if type(value) is not str:
        raise ValueError(f"timestamp must be a string, not {type(value).__name__}")
    if len(value) == 27 and value[26] == "Z" and value[19] == "." and value[10] == "T":
        datetime.fromisoformat(value)  # validates the calendar; raises ValueError
        return value
    if len(value) == 20 and value[19] == "Z" and value[10] == "T":  # whole seconds (metav1.Time)
        datetime.fromisoformat(value)
        return f"{value[:19]}.000000Z"
    match = _SLOW.match(value.strip())
    if match is None:
        raise ValueError(f"not an RFC 3339 timestamp: {value[:40]!r}")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    micros = int((fraction or "0")[:6].ljust(6, "0"))
    offset = "+00:00" if zone in (None, "Z", "z") else zone if ":" in zone else f"{zone[:3]}:{zone[3:]}"
    parsed = datetime.fromisoformat(f"{year}-{month}-{day}T{hour}:{minute}:{second}.{micros:06d}{offset}")
    return parsed.astimezone(UTC).strftime(_FORMAT)


def format_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(_FORMAT)


def parse(value: str) -> datetime:
    """An RFC 3339 timestamp (any of the forms ``canonical`` accepts) as an aware UTC datetime."""
    return datetime.fromisoformat(canonical(value))


DURATION = re.compile(r"^(\d+)\s*([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def instant(value: str, now: datetime) -> datetime:
    """A time given on a command line: ``7d``, ``12h``, ``30m``, ``45s``, ``2w`` before ``now``, or an
    ISO 8601 date or time (UTC when it has no zone). ValueError otherwise."""
    text = value.strip()
    ago = DURATION.match(text)
    if ago:
        return now - timedelta(seconds=int(ago.group(1)) * _UNIT_SECONDS[ago.group(2)])
    moment = parse(text) if "T" in text or " " in text else datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
