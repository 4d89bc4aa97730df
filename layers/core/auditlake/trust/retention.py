"""When S3 may have expired an object, by the retention the signed digests recorded; and whether a
bucket's current lifecycle rules would expire sooner than that.

``verify`` never trusts a bucket's current lifecycle rules to excuse an absence: whoever may change
them (s3:PutLifecycleConfiguration) could add a one-day rule and delete young files. Each digest
records, under its signature, the retention the stack gave it (``{"audit/": 365, "digests/": 365,
"events/": 90, "findings/": 400}``: AuditRetentionDays covers the audit files and the digests,
EventsRetentionDays the events files, FindingsRetentionDays the findings files). An absent object
written at ``t`` (at the latest) is accepted as expired iff, for some signed digest ``j`` written at
or after ``t``, S3's due date under ``j``'s recorded retention is not after ``now``
(``Recorded.expiry``). Why "at or after ``t``": the retention in force when ``j`` was written
applied to the object, which existed by then; a digest written before the object says nothing about
the rules it lived under. Digests that record nothing (older ones, local lakes) expire nothing.

S3's arithmetic (``due``): a rule with ``Expiration: {Days: N}`` makes an object eligible for
removal N days after it was written, rounded up to the next midnight UTC (S3 User Guide,
"Lifecycle configuration elements"; its example: written 2014-01-15 10:30, 3 days, due
2014-01-19 00:00). Removal is asynchronous and in no particular order, so an absence is accepted
from the due date on, never before.

``sooner_rules`` compares a bucket's current rules with the newest digest's recorded retention:
any enabled expiration rule that may reach ``audit/``, ``digests/``, ``events/`` or ``findings/`` keys (its prefix
a prefix of theirs, or inside theirs; tag and size filters are assumed to match: the objects'
tags and sizes are not ours to rely on) with fewer days than recorded, or with a ``Date``, would
let S3 remove what verify would then report missing: said before it happens. ``Retention`` parses
rules as S3 matches them (prefix, size, status, tags), for ``doctor``'s lifecycle check.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from auditlake.stores import StoreError
from auditlake.stores.s3 import forbidden
from auditlake.timestamps import parse

# What a digest records, and which archive (bucket) holds the keys under each prefix.
RECORDED_PREFIXES: dict[str, str] = {
    "audit/": "audit",
    "digests/": "audit",
    "events/": "events",
    "findings/": "findings",
}


def stack_retention(
    audit_days: int | None, events_days: int | None, findings_days: int | None = None
) -> dict[str, int]:
    """The stack's retention by recorded prefix, as each digest records it: AuditRetentionDays for
    the audit files and the digests (template.yaml's audit-expiry and digest-expiry rules),
    EventsRetentionDays for the events files, FindingsRetentionDays for the findings files. What is
    not given (None) is not recorded."""
    days = {"audit": audit_days, "events": events_days, "findings": findings_days}
    return {prefix: kept for prefix, store in RECORDED_PREFIXES.items() if (kept := days[store]) is not None}


def due(written: datetime, days: int) -> datetime:
    """When S3 may remove an object written at ``written`` under a rule of ``days``: the days
    added, rounded up to the next midnight UTC (a time already at midnight stays)."""
    moment = written.astimezone(UTC) + timedelta(days=days)
    midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight if midnight == moment else midnight + timedelta(days=1)


def recorded_retention(value: Any) -> dict[str, int] | None:
    """A digest's ``retention`` field, checked: prefix -> whole days >= 1 for the known prefixes;
    anything else (absent, malformed) is None: that digest expires nothing."""
    if not isinstance(value, dict):
        return None
    kept = {p: d for p, d in value.items() if p in RECORDED_PREFIXES and type(d) is int and d >= 1}
    return kept or None


def describe(retention: Mapping[str, int]) -> str:
    """``audit/ 365 days, events/ 90 days, findings/ 400 days, digests/ 365 days``."""
    order = ("audit/", "events/", "findings/", "digests/")
    return ", ".join(f"{p} {retention[p]} days" for p in order if p in retention)


class Recorded:
    """The retention each signed digest recorded, by when it was written: answers, per prefix,
    the shortest retention recorded by any digest written at or after a moment."""

    def __init__(self, digests: Iterable[tuple[int, datetime, Mapping[str, int] | None]]) -> None:
        """``digests``: (sequence, write time or its lower bound, recorded retention or None)."""
        self._by_prefix: dict[str, tuple[list[datetime], list[tuple[int, int]]]] = {}
        rows = sorted(digests, key=lambda row: row[1])
        for prefix in RECORDED_PREFIXES:
            times = [written for _, written, retention in rows if retention and prefix in retention]
            days = [(retention[prefix], -seq) for seq, _, retention in rows if retention and prefix in retention]
            # Suffix minimum: the shortest retention among digests written at or after times[i], and
            # of those that record it, the newest (-seq): messages then name one digest, not many.
            for i in range(len(days) - 2, -1, -1):
                days[i] = min(days[i], days[i + 1])
            self._by_prefix[prefix] = (times, days)

    def expiry(self, key: str, written: datetime, now: datetime) -> int | None:
        """The sequence of a digest whose recorded retention lets S3 have removed ``key``, written
        at ``written`` at the latest, by ``now``; None: S3 cannot have removed it yet."""
        times, days = self._by_prefix.get(key.split("/", 1)[0] + "/", ([], []))
        i = bisect.bisect_left(times, written)
        if i == len(times):
            return None
        shortest, newest = days[i]
        return -newest if due(written, shortest) <= now else None


def _rule_prefix(rule: Mapping[str, Any]) -> str:
    filters = rule.get("Filter") or {}
    both = filters.get("And") or {}
    return str(both.get("Prefix", filters.get("Prefix", rule.get("Prefix", ""))) or "")


def _expiring(rules: Iterable[Mapping[str, Any]]) -> Iterable[tuple[Mapping[str, Any], Any, Any]]:
    """(rule, Expiration.Days, Expiration.Date) of every enabled rule that expires current objects."""
    for rule in rules:
        expiration = rule.get("Expiration") or {}
        days, date = expiration.get("Days"), expiration.get("Date")
        if rule.get("Status") == "Enabled" and (days is not None or date is not None):
            yield rule, days, date


def sooner_rules(
    recorded: Mapping[str, int], store: str, rules: Sequence[Mapping[str, Any]]
) -> list[tuple[str, str, int]]:
    """(rule id, what it does, the days recorded) for each enabled rule of ``store``'s bucket that
    may expire keys under a recorded prefix sooner than recorded: fewer days, or any ``Date`` (it
    removes whatever it reaches, however young)."""
    found = []
    for rule, days, date in _expiring(rules):
        prefix = _rule_prefix(rule)
        for recorded_prefix, kept in recorded.items():
            if RECORDED_PREFIXES.get(recorded_prefix) != store:
                continue
            if not (recorded_prefix.startswith(prefix) or prefix.startswith(recorded_prefix)):
                continue
            reach = f"prefix {prefix!r}" if prefix else "every key"
            rule_id = str(rule.get("ID", rule.get("Id", "")))
            if date is not None:
                when = date if isinstance(date, str) else date.astimezone(UTC).strftime("%Y-%m-%d")
                found.append((rule_id, f"expires {recorded_prefix} keys ({reach}) on {when}", kept))
            elif days is not None and int(days) < kept:
                found.append((rule_id, f"expires {recorded_prefix} keys ({reach}) after {int(days)} days", kept))
    return found


def bucket_rules(s3: Any, bucket: str) -> list[dict[str, Any]] | None:
    """The bucket's lifecycle rules (GetBucketLifecycleConfiguration; none configured: []), or
    None when the caller may not read them (s3:GetLifecycleConfiguration denied)."""
    try:
        return list(s3.get_bucket_lifecycle_configuration(Bucket=bucket).get("Rules", []))
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code == "NoSuchLifecycleConfiguration":
            return []
        if forbidden(exc):
            return None
        raise StoreError(f"cannot read the lifecycle rules of {bucket}: {exc}") from exc
    except BotoCoreError as exc:
        raise StoreError(f"cannot read the lifecycle rules of {bucket}: {exc}") from exc


@dataclass(frozen=True)
class Rule:
    id: str
    prefix: str
    days: int | None = None  # Expiration.Days
    date: datetime | None = None  # Expiration.Date (midnight UTC)
    larger_than: int | None = None  # ObjectSizeGreaterThan
    smaller_than: int | None = None  # ObjectSizeLessThan

    def applies(self, key: str, size: int | None) -> bool:
        if not key.startswith(self.prefix):
            return False
        if self.larger_than is None and self.smaller_than is None:
            return True
        if size is None:
            return False
        return (self.larger_than is None or size > self.larger_than) and (
            self.smaller_than is None or size < self.smaller_than
        )

    def eligible(self, written: datetime) -> datetime:
        """When an object written at ``written`` may be removed under this rule."""
        if self.date is not None:
            return self.date
        assert self.days is not None
        return due(written, self.days)


@dataclass(frozen=True)
class Retention:
    """The expiration rules of one bucket, as S3 matches them (empty: nothing expires)."""

    rules: tuple[Rule, ...] = ()

    @classmethod
    def from_lifecycle(cls, rules: Iterable[Mapping[str, Any]]) -> Retention:
        """From GetBucketLifecycleConfiguration's ``Rules`` (or a template's ``LifecycleConfiguration.Rules``)."""
        parsed = []
        for rule, days, date in _expiring(rules):
            filters = rule.get("Filter") or {}
            both = filters.get("And") or {}
            if "Tag" in filters or both.get("Tags"):
                continue  # auditlake writes no tags: such a rule never expires its objects
            # A template's ExpirationDate is RFC 3339 text; the S3 API answers a datetime.
            when = parse(date) if isinstance(date, str) else date
            parsed.append(
                Rule(
                    id=str(rule.get("ID", rule.get("Id", ""))),
                    prefix=_rule_prefix(rule),
                    days=int(days) if days is not None else None,
                    date=when.astimezone(UTC) if isinstance(when, datetime) else None,
                    larger_than=_int(both.get("ObjectSizeGreaterThan", filters.get("ObjectSizeGreaterThan"))),
                    smaller_than=_int(both.get("ObjectSizeLessThan", filters.get("ObjectSizeLessThan"))),
                )
            )
        return cls(tuple(parsed))

    def eligible(self, key: str, written: datetime, size: int | None = None) -> datetime | None:
        """When S3 may remove ``key`` (written at ``written``): the earliest of its rules; None: never."""
        times = [rule.eligible(written) for rule in self.rules if rule.applies(key, size)]
        return min(times, default=None)

    def describe(self, key: str, size: int | None = None) -> str:
        """The rule that expires ``key`` soonest, for messages: "365 days" or "on 2027-01-01"."""
        rules = [rule for rule in self.rules if rule.applies(key, size)]
        if not rules:
            return "never"
        days = [rule.days for rule in rules if rule.days is not None]
        if days:
            return f"{min(days)} days"
        return "on " + min(rule.date for rule in rules if rule.date is not None).strftime("%Y-%m-%d")


def _int(value: Any) -> int | None:
    return None if value is None else int(value)
