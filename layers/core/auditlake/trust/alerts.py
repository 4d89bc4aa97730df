"""403 bursts: an identity denied ``threshold`` times within any 60 seconds (of event time) is an
attack in progress, or a broken deployment; either way someone should be paged, once.

Every ingest path hands the records it stored with response code 403 to ``ForbiddenBursts``.
Denials are kept per (rule, cluster, identity) in 10-second *buckets* of event time, each a set of
``<time>|<audit ID>`` entries, so a batch the API server or CloudWatch delivers twice is not counted
twice. After a batch is added, the buckets around it are read back and swept for a *burst*: at least
``threshold`` denials between some denial's time ``s`` and ``s + 60 s`` inclusive, the span the
``forbidden_bursts`` query counts (``RANGE ... INTERVAL '1' MINUTE PRECEDING``), whatever clock
minutes it straddles. A burst is paged once: it *claims* every bucket its minute touches (one
atomic write), and a span that touches a claimed bucket never pages again. So a sustained attack
pages at most once a minute, a redelivered batch or a concurrent delivery of the same burst never
pages twice, and if publishing fails the claim is released and the error raised, so the delivery
is retried (the webhook answers 503) and the retry pages.

Buckets expire a day after they last counted (the ingest clock, not event time): a log from last
week pages for its bursts when it is ingested, exactly once, and ingesting it again within a day
pages nothing new. After a day the counters are gone and a re-ingest pages again.

Rules: ``forbidden`` (every 403, ``threshold``) and the optional narrower ``forbidden-secrets``
(403s on secrets only, ``secrets_threshold``; 0 = off).

DynamoDB: ``pk = ALERT#<rule>#<cluster>#<identity>``, ``sk = <bucket start, YYYY-MM-DDTHH:MM:S0>``,
TTL a day after the last write; one UpdateItem per touched bucket and one Query per identity a batch.
Local: ``<lake>/state/alerts.json`` (one read and one write a batch), alerts appended to
``<lake>/alerts/<yyyy-mm-dd>.jsonl``.
"""

from __future__ import annotations

import fcntl
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from auditlake.jsonio import JSONError, dumps, dumps_str, loads
from auditlake.metrics import MetricsSink
from auditlake.state_table import TTL, alert_key, alert_partition, alert_stream, conditional_write
from auditlake.timestamps import format_seconds
from auditlake.trust.liveness import Heartbeats

RULE_ALL = "forbidden"
RULE_SECRETS = "forbidden-secrets"
DETAILS = ("source_ips", "resources", "verbs")
KEEP_SECONDS = 24 * 3600  # a bucket outlives any redelivery by this long after it last counted
BUCKET_SECONDS = 10
SPAN = timedelta(seconds=60)
_BUCKET = timedelta(seconds=BUCKET_SECONDS)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class AlertError(RuntimeError):
    """Counting or publishing failed: the delivery must be retried."""


@dataclass(frozen=True)
class Stream:
    """Whose denials are counted together."""

    rule: str
    cluster: str
    identity: str

    @property
    def key(self) -> str:
        return alert_stream(self.rule, self.cluster, self.identity)


@dataclass
class Bucket:
    """Ten seconds of one stream's denials: ``<canonical time>|<audit ID>`` entries, what they were
    about, and the claim of the burst that paged for them (None while none has)."""

    ids: set[str] = field(default_factory=set)
    details: dict[str, set[str]] = field(default_factory=lambda: {name: set() for name in DETAILS})
    claimed: str | None = None


class Counter(Protocol):
    def add(self, batch: dict[Stream, dict[str, Bucket]], cap: int) -> dict[Stream, dict[str, Bucket]]:
        """Add each stream's new denials to their buckets (not to a claimed bucket, nor to one that
        already holds ``cap`` entries: neither can change what pages) and return, per stream, every
        stored bucket within a minute of the buckets added (``around``)."""
        ...

    def claim(self, stream: Stream, buckets: list[str], claim: str) -> bool:
        """Claim every bucket at once for one burst; False when any is claimed already."""
        ...

    def unclaim(self, stream: Stream, buckets: list[str], claim: str) -> None: ...


def bucket_of(moment: datetime) -> str:
    """The start of the 10-second bucket holding ``moment``, as the bucket's sort key (four-digit
    years, so keys sort in time from year 1 on)."""
    m = moment
    return f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second // BUCKET_SECONDS}0"


def _shift(moment: datetime, delta: timedelta) -> datetime:
    """``moment + delta``, held at the calendar's edge instead of overflowing (year 1, year 9999)."""
    try:
        return moment + delta
    except OverflowError:
        return datetime.max.replace(tzinfo=UTC) if delta > timedelta(0) else datetime.min.replace(tzinfo=UTC)


def _slot(moment: datetime) -> int:
    """The bucket holding ``moment`` as a number (10-second steps since 1970; negative before)."""
    return (moment - _EPOCH) // _BUCKET


def _slot_key(slot: int) -> str:
    return bucket_of(_EPOCH + slot * _BUCKET)


def _key_slot(key: str) -> int:
    return _slot(datetime.fromisoformat(key).replace(tzinfo=UTC))


_SPAN_SLOTS = SPAN // _BUCKET
_EDGES = (_slot(datetime.min.replace(tzinfo=UTC)), _slot(datetime.max.replace(tzinfo=UTC)))


def around(keys: Iterable[str]) -> tuple[str, str]:
    """The first and last bucket keys within a minute of ``keys`` (held at the calendar's edges):
    every 60-second span that holds a denial of those buckets lies between them."""
    slots = [_key_slot(key) for key in keys]
    return _slot_key(max(min(slots) - _SPAN_SLOTS, _EDGES[0])), _slot_key(min(max(slots) + _SPAN_SLOTS, _EDGES[1]))


def _stamp(entry: str) -> str:
    """An entry's time (``<canonical time>|<audit ID>``)."""
    return entry.split("|", 1)[0]


@dataclass(frozen=True)
class Burst:
    start: datetime
    entries: list[str]
    buckets: list[str]


def find_bursts(stored: dict[str, Bucket], threshold: int) -> list[Burst]:
    """Non-overlapping spans of ``threshold`` or more denials within 60 s that touch no claimed
    bucket, earliest first. Pure: the sweep the counters' answers are judged by."""
    taken = {_key_slot(key) for key, bucket in stored.items() if bucket.claimed}
    entries = sorted({entry for bucket in stored.values() for entry in bucket.ids})
    times = [datetime.fromisoformat(_stamp(entry)) for entry in entries]
    bursts: list[Burst] = []
    end = 0
    for first, start in enumerate(times):
        if (bursts and start <= _shift(bursts[-1].start, SPAN)) or _slot(start) in taken:
            continue
        end = max(end, first)
        while end < len(times) and times[end] <= _shift(start, SPAN):
            end += 1
        if end - first < threshold:
            continue
        slots = range(_slot(start), _slot(_shift(start, SPAN)) + 1)
        if taken.intersection(slots):
            continue
        taken.update(slots)
        bursts.append(Burst(start, entries[first:end], [_slot_key(slot) for slot in slots]))
    return bursts


class ForbiddenBursts:
    def __init__(
        self,
        counter: Counter,
        notify: Callable[[dict[str, Any]], None],
        *,
        threshold: int = 10,
        secrets_threshold: int = 0,
    ) -> None:
        if threshold < 1 or secrets_threshold < 0:
            raise ValueError("the alert threshold must be >= 1 (the secrets threshold >= 0, 0 = off)")
        self.counter, self.notify = counter, notify
        self.thresholds = {RULE_ALL: threshold, RULE_SECRETS: secrets_threshold}

    def observe(self, records: Iterable[Any]) -> list[dict[str, Any]]:
        """Count stored 403 records (normalised audit records); returns the alerts published."""
        added: dict[Stream, dict[str, Bucket]] = {}
        for record in records:
            if not record.audit_id or not (received := record.request_received_at):
                continue
            # A canonical time's first 18 characters are its bucket's (four-digit years only).
            key = received[:18] + "0" if len(received) == 27 else bucket_of(datetime.fromisoformat(received))
            rules = [RULE_ALL]
            if self.thresholds[RULE_SECRETS] and record.object_resource == "secrets":
                rules.append(RULE_SECRETS)
            for rule in rules:
                buckets = added.setdefault(Stream(rule, record.cluster, record.user_name or "(unknown)"), {})
                bucket = buckets.get(key) or buckets.setdefault(key, Bucket())
                bucket.ids.add(f"{received}|{record.audit_id}")
                bucket.details["source_ips"].update(record.source_ips or ())
                bucket.details["resources"].add(_resource(record))
                bucket.details["verbs"].add(record.verb or "?")
        if not added:
            return []
        # A bucket holding the largest threshold already pages every span it is in: more entries change nothing.
        stored = self.counter.add(added, cap=max(self.thresholds.values()))
        published = []
        for stream, buckets in stored.items():
            for burst in find_bursts(buckets, self.thresholds[stream.rule]):
                alert = self._page(stream, burst, buckets)
                if alert is not None:
                    published.append(alert)
        return published

    def _page(self, stream: Stream, burst: Burst, stored: dict[str, Bucket]) -> dict[str, Any] | None:
        claim = uuid.uuid4().hex
        if not self.counter.claim(stream, burst.buckets, claim):
            return None  # a concurrent delivery paged for this burst
        touched = [stored[key] for key in burst.buckets if key in stored]
        details = {name: set[str]().union(*(bucket.details[name] for bucket in touched)) for name in DETAILS}
        alert = {
            "rule": stream.rule,
            "cluster": stream.cluster,
            "identity": stream.identity,
            "count": len(burst.entries),
            "threshold": self.thresholds[stream.rule],
            "window_start": format_seconds(burst.start),
            "window_end": format_seconds(_shift(burst.start, SPAN)),
            "first_denied": _stamp(burst.entries[0]),
            "last_denied": _stamp(burst.entries[-1]),
            **{name: sorted(values) for name, values in details.items()},
        }
        try:
            self.notify(alert)
        except Exception as exc:
            self.counter.unclaim(stream, burst.buckets, claim)  # the retried delivery claims and publishes again
            raise AlertError(f"alert not published: {exc}") from exc
        return alert


def _resource(record: Any) -> str:
    if not record.object_resource:
        return record.request_uri or "?"
    resource = record.object_resource + (f"/{record.object_subresource}" if record.object_subresource else "")
    where = record.object_namespace or ""
    return f"{resource} {where}/{record.object_name}" if record.object_name else f"{resource} {where}".rstrip()


def subject(alert: dict[str, Any]) -> str:
    scope = "secrets " if alert["rule"] == RULE_SECRETS else ""
    text = f"auditlake: {alert['identity']} denied {alert['count']}x on {scope}in {alert['cluster']}"
    return f"{text} at {alert['window_start']}"[:100]  # SNS subjects are at most 100 characters


class DynamoCounter:
    def __init__(self, client: Any, table: str, *, clock: Callable[[], float] = time.time) -> None:
        self.client, self.table, self.clock = client, table, clock

    def _expires(self) -> dict[str, str]:
        return {"N": str(int(self.clock()) + KEEP_SECONDS)}

    @staticmethod
    def _key(stream: Stream, bucket: str) -> dict[str, Any]:
        return alert_key(stream.key, bucket)

    def add(self, batch: dict[Stream, dict[str, Bucket]], cap: int) -> dict[Stream, dict[str, Bucket]]:
        for stream, added in batch.items():
            for key, bucket in added.items():
                sets = {"ids": bucket.ids, **bucket.details}
                present = {name: values for name, values in sets.items() if values}  # DynamoDB has no empty sets
                request = {
                    "TableName": self.table,
                    "Key": self._key(stream, key),
                    "UpdateExpression": "ADD " + ", ".join(f"{n} :{n}" for n in present) + " SET #ttl = :ttl",
                    "ConditionExpression": "attribute_not_exists(claimed) AND "
                    "(attribute_not_exists(ids) OR size(ids) < :cap)",
                    "ExpressionAttributeNames": {"#ttl": TTL},
                    "ExpressionAttributeValues": {
                        **{f":{n}": {"SS": sorted(v)} for n, v in present.items()},
                        ":ttl": self._expires(),
                        ":cap": {"N": str(cap)},
                    },
                }
                # Refused when claimed or full: nothing to add then.
                conditional_write(partial(self.client.update_item, **request), AlertError, "count 403s")
        return {stream: self._read(stream, *around(added)) for stream, added in batch.items()}

    def _read(self, stream: Stream, first: str, last: str) -> dict[str, Bucket]:
        buckets: dict[str, Bucket] = {}
        try:
            pages = self.client.get_paginator("query").paginate(
                TableName=self.table,
                KeyConditionExpression="pk = :pk AND sk BETWEEN :first AND :last",
                ExpressionAttributeValues={
                    ":pk": {"S": alert_partition(stream.key)}, ":first": {"S": first}, ":last": {"S": last}
                },
                ConsistentRead=True,  # a concurrent delivery's denials must be seen
            )  # fmt: skip
            for page in pages:
                for item in page["Items"]:
                    buckets[item["sk"]["S"]] = Bucket(
                        set(item.get("ids", {}).get("SS", ())),
                        {name: set(item.get(name, {}).get("SS", ())) for name in DETAILS},
                        item.get("claimed", {}).get("S"),
                    )
        except (BotoCoreError, ClientError) as exc:
            raise AlertError(f"cannot read 403 counters: {exc}") from exc
        return buckets

    def claim(self, stream: Stream, buckets: list[str], claim: str) -> bool:
        update = {
            "TableName": self.table,
            "UpdateExpression": "SET claimed = :claim, #ttl = :ttl",
            "ConditionExpression": "attribute_not_exists(claimed)",
            "ExpressionAttributeNames": {"#ttl": TTL},
            "ExpressionAttributeValues": {":claim": {"S": claim}, ":ttl": self._expires()},
        }
        items = [{"Update": {**update, "Key": self._key(stream, key)}} for key in buckets]
        claimed = partial(self.client.transact_write_items, TransactItems=items)
        return conditional_write(claimed, AlertError, "claim the burst") is not None

    def unclaim(self, stream: Stream, buckets: list[str], claim: str) -> None:
        for key in buckets:
            release = partial(
                self.client.update_item,
                TableName=self.table,
                Key=self._key(stream, key),
                UpdateExpression="REMOVE claimed",
                ConditionExpression="claimed = :claim",
                ExpressionAttributeValues={":claim": {"S": claim}},
            )
            conditional_write(release, AlertError, "release the burst's claim")


class LocalCounter:
    """The same counting in one JSON file of the local lake, under a file lock: one read and one
    write a batch (and one each for a burst's claim)."""

    def __init__(self, path: str | os.PathLike[str], *, clock: Callable[[], float] = time.time) -> None:
        self.path, self.clock = Path(path), clock

    @contextmanager
    def _state(self) -> Iterator[dict[str, dict[str, dict[str, Any]]]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                state = loads(self.path.read_bytes())
            except FileNotFoundError:
                state = {}
            except JSONError as exc:
                raise AlertError(f"{self.path}: {exc.reason}") from None
            now = self.clock()
            # What expired goes; so does anything not of this shape (an older release's windows).
            state = {stream: live for stream, buckets in state.items() if isinstance(buckets, dict)
                     and (live := {k: b for k, b in buckets.items()
                                   if isinstance(b, dict) and b.get("expires_at", 0) > now})}  # fmt: skip
            yield state
            pending = self.path.with_suffix(".partial")
            pending.write_bytes(dumps(state))
            os.replace(pending, self.path)
        finally:
            os.close(fd)

    def add(self, batch: dict[Stream, dict[str, Bucket]], cap: int) -> dict[Stream, dict[str, Bucket]]:
        expires = self.clock() + KEEP_SECONDS
        out: dict[Stream, dict[str, Bucket]] = {}
        with self._state() as state:
            for stream, added in batch.items():
                stored = state.setdefault(stream.key, {})
                for key, bucket in added.items():
                    entry = stored.setdefault(key, {"ids": [], "claimed": None, "expires_at": expires})
                    if entry["claimed"] or len(entry["ids"]) >= cap:
                        continue
                    entry["ids"] = sorted(set(entry["ids"]) | bucket.ids)
                    for name in DETAILS:
                        entry[name] = sorted(set(entry.get(name, ())) | bucket.details[name])
                    entry["expires_at"] = expires
                first, last = around(added)
                out[stream] = {
                    key: Bucket(set(entry["ids"]), {n: set(entry.get(n, ())) for n in DETAILS}, entry["claimed"])
                    for key, entry in stored.items()
                    if first <= key <= last
                }
        return out

    def claim(self, stream: Stream, buckets: list[str], claim: str) -> bool:
        with self._state() as state:
            stored = state.setdefault(stream.key, {})
            if any(stored.get(key, {}).get("claimed") for key in buckets):
                return False
            for key in buckets:
                entry = stored.setdefault(key, {"ids": []})
                entry["claimed"], entry["expires_at"] = claim, self.clock() + KEEP_SECONDS
            return True

    def unclaim(self, stream: Stream, buckets: list[str], claim: str) -> None:
        with self._state() as state:
            for key in buckets:
                entry = state.get(stream.key, {}).get(key)
                if entry is not None and entry.get("claimed") == claim:
                    entry["claimed"] = None


def sns_notifier(make_client: Callable[[], Any], topic_arn: str) -> Callable[[dict[str, Any]], None]:
    """Publish to SNS; the client is made at the first alert (alerts are rare; cold starts are not)."""
    clients: list[Any] = []

    def notify(alert: dict[str, Any]) -> None:
        if not clients:
            clients.append(make_client())
        clients[0].publish(TopicArn=topic_arn, Subject=subject(alert), Message=dumps_str(alert))

    return notify


Notify = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Watch:
    """What every ingest path does once a batch is stored: count its 403s for burst alerts
    (AlertError when one cannot be sent: the caller makes the delivery retried) and note that the
    cluster is alive (the dead-man alarm)."""

    bursts: ForbiddenBursts | None = None
    heartbeats: Heartbeats | None = None

    def stored(self, cluster: str, denials: list[Any], metrics: MetricsSink | None = None) -> list[dict[str, Any]]:
        published = self.bursts.observe(denials) if self.bursts is not None and denials else []
        if published and metrics is not None:
            metrics.add_metric("AlertsPublished", "Count", len(published))
        if self.heartbeats is not None:
            self.heartbeats.beat(cluster)
        return published
