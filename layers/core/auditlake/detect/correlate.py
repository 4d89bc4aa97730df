"""Correlation rules counted at ingest: which matches a correlation counts, in which stream, and
the sweep that finds where it fires. Pure (no I/O): ``trust/alerts.py`` keeps the counters (the
state table, or the local lake's state file) and pages.

A correlation (``ir.Correlation``) counts the matches of its base ``rules`` per ``group_by`` values
within ``timespan_seconds`` of event time. Its matches are kept per *stream* (correlation name,
cluster, group values) in *buckets* of event time, each a set of entries:

- ``event_count``: ``<at>|<audit ID>``: a match delivered twice is one entry, counted once;
- ``value_count``: ``<at>|<audit ID>|<value of field>``: the span's distinct values are counted;
  a match without the field's value is not counted (Sigma's: nothing to count).

A bucket is ``max(10 s, timespan / 6)`` wide (whole seconds, rounded up), so any span of the
timespan touches at most 7 buckets: a fired span claims all of them in one transaction (DynamoDB's
TransactWriteItems), and a span touching a claimed bucket never fires again (one page per burst,
however the matches were batched or redelivered). A one-minute correlation (the 403 bursts) has
10-second buckets keyed ``YYYY-MM-DDTHH:MM:S0``, the keys a running stack's counters already hold.

At ingest only rising conditions are counted: ``gte`` and ``gt`` (a count can only grow as matches
arrive). ``eq``, ``lt`` and ``lte`` need the window to be over and are left to the history hunt
(``query/hunt.py``); ``ingest_problem`` says why a correlation is not counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from auditlake.detect.ir import Correlation
from auditlake.detect.matches import Match

MIN_BUCKET_SECONDS = 10
MAX_BUCKETS = 7  # of one span: TransactWriteItems claims them at once
INGEST_CONDITIONS = ("gte", "gt")
# The most entries a bucket takes: a bounded DynamoDB item (400 KB). event_count entries are short
# (time and audit ID); value_count entries carry a value, and a bucket full of one value still
# has to admit new values, so it takes more, of a smaller bound of bytes each.
EVENT_CAP = 1000
VALUE_CAP = 400
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MIN = datetime.min.replace(tzinfo=UTC)
_MAX = datetime.max.replace(tzinfo=UTC)


@dataclass
class Bucket:
    """One bucket of a stream: its entries, what they were about (``details``: name -> values),
    the claim of the span that fired for them (None while none has), and whether that claim is
    still being paged (``paging``: claimed, not yet confirmed published, its lease alive)."""

    ids: set[str] = field(default_factory=set)
    details: dict[str, set[str]] = field(default_factory=dict)
    claimed: str | None = None
    paging: bool = False


@dataclass(frozen=True)
class Window:
    """A correlation's timespan and the width of its buckets."""

    span_seconds: int

    @property
    def width(self) -> int:
        return max(MIN_BUCKET_SECONDS, -(-self.span_seconds // (MAX_BUCKETS - 1)))

    @property
    def span(self) -> timedelta:
        return timedelta(seconds=self.span_seconds)

    def slot(self, moment: datetime) -> int:
        """The bucket holding ``moment`` as a number (steps of ``width`` since 1970; negative before)."""
        return (moment - _EPOCH) // timedelta(seconds=self.width)

    def slot_key(self, slot: int) -> str:
        """A bucket's sort key: its start (four-digit years, so keys sort in time from year 1 on)."""
        return bucket_key(_EPOCH + slot * timedelta(seconds=self.width))

    def key_slot(self, key: str) -> int:
        return self.slot(datetime.fromisoformat(key).replace(tzinfo=UTC))

    def bucket_of(self, moment: datetime) -> str:
        return self.slot_key(self.slot(moment))

    def around(self, keys: Iterable[str]) -> tuple[str, str]:
        """The first and last bucket keys within a span of ``keys`` (held at the calendar's edges):
        every span that holds an entry of those buckets lies between them."""
        slots = [self.key_slot(key) for key in keys]
        reach = -(-self.span_seconds // self.width)
        low, high = self.slot(_MIN), self.slot(_MAX)
        return self.slot_key(max(min(slots) - reach, low)), self.slot_key(min(max(slots) + reach, high))


def bucket_key(moment: datetime) -> str:
    m = moment
    return f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}"


def window_of(correlation: Correlation) -> Window:
    return Window(correlation.timespan_seconds)


def name_of(correlation: Correlation) -> str:
    """What a correlation's streams and alerts are named by: its name, else its id."""
    return correlation.name or correlation.id


def needed(correlation: Correlation, threshold: int) -> int:
    """The count at which the correlation fires (``gt 9`` fires at 10)."""
    return threshold + 1 if correlation.condition[0] == "gt" else threshold


def cap(correlation: Correlation, threshold: int) -> int:
    """The most entries one bucket of this correlation keeps: an event_count bucket holding the
    count it fires at already fires every span it is in (more change nothing); a value_count
    bucket is bounded by size."""
    return VALUE_CAP if correlation.type == "value_count" else min(EVENT_CAP, needed(correlation, threshold))


def ingest_problem(correlation: Correlation, threshold: int) -> str | None:
    """Why this correlation is not counted at ingest (None: it is)."""
    cmp = correlation.condition[0]
    if cmp not in INGEST_CONDITIONS:
        return f"condition {cmp}: only gte and gt are counted as matches arrive (hunt for the others)"
    if correlation.type == "value_count" and not correlation.field:
        return "value_count without a field"
    most = MAX_BUCKETS * (VALUE_CAP if correlation.type == "value_count" else EVENT_CAP)
    if needed(correlation, threshold) > most:
        return f"threshold above {most}: more than ingest keeps in one span (hunt for it)"
    if correlation.timespan_seconds < 1:
        return "no timespan"
    return None


def counts(correlation: Correlation, match: Match) -> bool:
    """Whether ``match`` is of one of the correlation's base rules (by id or name)."""
    return match.rule in correlation.rules or (match.name is not None and match.name in correlation.rules)


def group_values(correlation: Correlation, match: Match) -> list[str | None]:
    return [match.fields.get(name) for name in correlation.group_by]


def entry(correlation: Correlation, match: Match) -> str | None:
    """The match's entry in its stream (see the module docstring); None when it cannot be counted:
    no event time or audit ID, or a value_count match without the value."""
    finding = match.finding
    at, audit_id = getattr(finding, "at", None), getattr(finding, "audit_id", None)
    if not at or not audit_id:
        return None
    if correlation.type != "value_count":
        return f"{at}|{audit_id}"
    value = match.fields.get(correlation.field or "")
    return f"{at}|{audit_id}|{value}" if value else None


def stamp(entry: str) -> str:
    """An entry's event time (canonical RFC 3339)."""
    return entry.split("|", 1)[0]


def value(entry: str) -> str:
    """A value_count entry's value (audit IDs hold no ``|``; a value may)."""
    parts = entry.split("|", 2)
    return parts[2] if len(parts) == 3 else ""


def moment(entry_or_time: str) -> datetime:
    return datetime.fromisoformat(stamp(entry_or_time))


def shift(moment: datetime, delta: timedelta) -> datetime:
    """``moment + delta``, held at the calendar's edge instead of overflowing (year 1, year 9999)."""
    try:
        return moment + delta
    except OverflowError:
        return _MAX if delta > timedelta(0) else _MIN


@dataclass(frozen=True)
class Burst:
    """A span that fires: from ``start`` for the window's span; its entries and ``count`` (entries,
    or distinct values), and the buckets it claims."""

    start: datetime
    entries: list[str]
    buckets: list[str]
    count: int


def find_bursts(stored: Mapping[str, Bucket], window: Window, threshold: int, *, distinct: bool = False) -> list[Burst]:
    """Non-overlapping spans of ``threshold`` or more entries (``distinct``: distinct values) within
    the window's span, inclusive at both ends, that touch no claimed bucket, earliest first. Pure:
    the sweep the counters' answers are judged by."""
    taken = {window.key_slot(key) for key, bucket in stored.items() if bucket.claimed}
    entries = sorted({item for bucket in stored.values() for item in bucket.ids})
    times = [moment(item) for item in entries]
    inside: Counter[str] = Counter()  # the values of entries[first:end]
    bursts: list[Burst] = []
    end = 0
    for first, start in enumerate(times):
        if first and end > first - 1:  # the previous start leaves the span
            left = value(entries[first - 1])
            inside[left] -= 1
            if not inside[left]:
                del inside[left]
        end = max(end, first)
        if (bursts and start <= shift(bursts[-1].start, window.span)) or window.slot(start) in taken:
            continue
        while end < len(times) and times[end] <= shift(start, window.span):
            inside[value(entries[end])] += 1
            end += 1
        count = len(inside) if distinct else end - first
        if count < threshold:
            continue
        slots = range(window.slot(start), window.slot(shift(start, window.span)) + 1)
        if taken.intersection(slots):
            continue
        taken.update(slots)
        bursts.append(Burst(start, entries[first:end], [window.slot_key(slot) for slot in slots], count))
    return bursts


def describe(match: Match) -> dict[str, str | list[str]]:
    """What a bucket keeps of a counted match for its alert: source IPs, ``<resource> <ns>/<name>``, verb."""
    finding: Any = match.finding
    resource = finding.resource or "?"
    where = finding.namespace or ""
    target = f"{resource} {where}/{finding.name}" if finding.name else f"{resource} {where}".rstrip()
    return {"source_ips": list(finding.source_ips or ()), "resources": [target], "verbs": [finding.verb or "?"]}
