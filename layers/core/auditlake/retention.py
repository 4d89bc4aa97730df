"""When S3 may have expired an object: a bucket's lifecycle expiration rules, as ``verify`` reads them.

A lifecycle rule with ``Expiration: {Days: N}`` makes an object eligible for removal at N days after
it was written, rounded up to the next midnight UTC (S3 User Guide, "Lifecycle configuration
elements": the days are added to the creation time and the result rounded to the next day's
midnight UTC). Removal itself is asynchronous and in no particular order, so ``verify`` accepts an
object's absence from the moment it became eligible, and never before: ``expired(key, written,
now)`` is true when every rule's arithmetic says S3 may have removed it by ``now``. The latest time
the object can have been written is what the caller passes as ``written``, so the answer never
accepts an absence that S3 could not have caused.

Rules are matched as S3 matches them: enabled, the key under the rule's prefix (``Filter.Prefix``,
``Filter.And.Prefix``, or the legacy top-level ``Prefix``; none: every key), the object's size
within ``ObjectSizeGreaterThan``/``ObjectSizeLessThan`` (a rule that filters by size is not applied
when the size is unknown), and no tag filter (auditlake writes no tags). ``Expiration.Date``
expires every matching object at that date. With no rule (a local lake, a bucket without a
lifecycle configuration) nothing expires.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from .stores import StoreError


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
        due = written.astimezone(UTC) + timedelta(days=self.days)
        midnight = due.replace(hour=0, minute=0, second=0, microsecond=0)
        return midnight if midnight == due else midnight + timedelta(days=1)


@dataclass(frozen=True)
class Retention:
    """The expiration rules of one bucket (empty: nothing expires)."""

    rules: tuple[Rule, ...] = ()

    @classmethod
    def from_lifecycle(cls, rules: Iterable[Mapping[str, Any]]) -> Retention:
        """From GetBucketLifecycleConfiguration's ``Rules`` (or a template's ``LifecycleConfiguration.Rules``)."""
        parsed = []
        for rule in rules:
            expiration = rule.get("Expiration") or {}
            days, date = expiration.get("Days"), expiration.get("Date")
            if rule.get("Status") != "Enabled" or (days is None and date is None):
                continue
            filters = rule.get("Filter") or {}
            both = filters.get("And") or {}
            if "Tag" in filters or both.get("Tags"):
                continue  # auditlake writes no tags: such a rule never expires its objects
            prefix = both.get("Prefix", filters.get("Prefix", rule.get("Prefix", "")))
            if isinstance(date, str):
                date = datetime.fromisoformat(date.replace("Z", "+00:00"))
            parsed.append(
                Rule(
                    id=str(rule.get("ID", rule.get("Id", ""))),
                    prefix=str(prefix or ""),
                    days=int(days) if days is not None else None,
                    date=date.astimezone(UTC) if isinstance(date, datetime) else None,
                    larger_than=_int(both.get("ObjectSizeGreaterThan", filters.get("ObjectSizeGreaterThan"))),
                    smaller_than=_int(both.get("ObjectSizeLessThan", filters.get("ObjectSizeLessThan"))),
                )
            )
        return cls(tuple(parsed))

    @classmethod
    def days(cls, days: int, prefix: str = "") -> Retention:
        """Every object under ``prefix`` expires ``days`` after it was written (``--retention-days``)."""
        return cls((Rule(id="given", prefix=prefix, days=days),))

    def eligible(self, key: str, written: datetime, size: int | None = None) -> datetime | None:
        """When S3 may remove ``key`` (written at ``written``): the earliest of its rules; None: never."""
        times = [rule.eligible(written) for rule in self.rules if rule.applies(key, size)]
        return min(times, default=None)

    def expired(self, key: str, written: datetime, now: datetime, size: int | None = None) -> bool:
        """Whether S3 may have removed ``key``, written at ``written`` at the latest, by ``now``."""
        eligible = self.eligible(key, written, size)
        return eligible is not None and eligible <= now

    def describe(self, key: str, size: int | None = None) -> str:
        """The rule that expires ``key`` soonest, for messages: "365 days" or "on 2027-01-01"."""
        rules = [rule for rule in self.rules if rule.applies(key, size)]
        if not rules:
            return "never"
        days = [rule.days for rule in rules if rule.days is not None]
        if days:
            return f"{min(days)} days"
        return "on " + min(rule.date for rule in rules if rule.date is not None).strftime("%Y-%m-%d")


def bucket_retention(s3: Any, bucket: str, option: str) -> Retention:
    """The expiration rules of ``bucket`` (GetBucketLifecycleConfiguration); none: nothing expires.
    Refused (the caller lacks s3:GetLifecycleConfiguration): a StoreError naming the fix and the
    command-line ``option`` that gives the retention instead."""
    try:
        rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket).get("Rules", [])
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code == "NoSuchLifecycleConfiguration":
            return Retention()
        raise StoreError(
            f"cannot read the lifecycle rules of {bucket} ({code}): grant s3:GetLifecycleConfiguration "
            f"on the bucket, or give {option} (the stack's retention parameter), so that verify can "
            "tell files and digests expired by retention from removed ones"
        ) from exc
    except BotoCoreError as exc:
        raise StoreError(f"cannot read the lifecycle rules of {bucket}: {exc}") from exc
    return Retention.from_lifecycle(rules)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)
