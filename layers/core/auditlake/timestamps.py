"""Timestamps as the archive stores them: UTC, microseconds, ``YYYY-MM-DDTHH:MM:SS.ffffffZ``.

Kubernetes writes RFC 3339 with microseconds (the fast path); other producers write nanoseconds,
offsets, or a space instead of ``T`` (Panther-normalised logs). Everything is validated here, at the
edge, so a bad value quarantines one event instead of failing a whole Parquet conversion later.

The grammar is RFC 3339 (``ciso8601.parse_rfc3339``, strict): no ISO week or ordinal dates, no hour
24, no leap second, ASCII digits only. Before it, three spellings are normalised: a missing zone is
UTC, an offset without its colon gets one, a comma before the fraction is a dot. The supported
range is what the archive's string form holds: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999Z
in UTC; an offset that carries a time past either end is refused (ValueError), never OverflowError.
Every value ``canonical`` returns is the 27-character form the compactor's Arrow reader parses.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from ciso8601 import parse_rfc3339

_SLOW = re.compile(
    r"^(\d{4}-\d{2}-\d{2})([Tt ])(\d{2}:\d{2}:\d{2})(?:[.,](\d{1,9}))?\s*(Z|z|[+-]\d{2}:?\d{2})?$", re.ASCII
)
RANGE = "0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999Z"


def canonical(value: object) -> str:
    """Return the canonical UTC string for an RFC 3339-like timestamp; ValueError if it is not one."""
    if type(value) is not str:
        raise ValueError(f"timestamp must be a string, not {type(value).__name__}")
    if len(value) == 27 and value[26] == "Z" and value[19] == "." and value[10] == "T":
        parse_rfc3339(value)  # validates digits, separators and the calendar; raises ValueError
        return value
    if len(value) == 20 and value[19] == "Z" and value[10] == "T":  # whole seconds (metav1.Time)
        parse_rfc3339(value)
        return f"{value[:19]}.000000Z"
    match = _SLOW.match(value.strip())
    if match is None:
        raise ValueError(f"not an RFC 3339 timestamp: {value[:40]!r}")
    date, _, time, fraction, zone = match.groups()
    offset = "Z" if zone in (None, "Z", "z") else zone if ":" in zone else f"{zone[:3]}:{zone[3:]}"
    parsed = parse_rfc3339(f"{date}T{time}.{(fraction or '0')[:6]}{offset}")
    try:
        return format_utc(parsed)
    except OverflowError:
        raise ValueError(f"outside the supported range ({RANGE}) in UTC: {value[:40]!r}") from None


def format_utc(moment: datetime) -> str:
    """``moment`` in the canonical form (the year zero-padded: strftime's ``%Y`` does not pad on glibc).
    OverflowError when its UTC time is outside the calendar (year 1 to 9999)."""
    if moment.tzinfo is None or moment.utcoffset():
        moment = moment.astimezone(UTC)
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T"
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}.{moment.microsecond:06d}Z"
    )


def format_millis(moment: datetime) -> str:
    """``moment`` as RFC 3339 UTC to the millisecond (for people: query parameters and output)."""
    return format_utc(moment)[:23] + "Z"


def format_seconds(moment: datetime) -> str:
    """``moment`` as RFC 3339 UTC to the second."""
    return format_utc(moment)[:19] + "Z"


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
