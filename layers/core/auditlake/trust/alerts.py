"""Paging: correlation rules counted as matches arrive (403 bursts among them), and findings at or
above the alert level, each paged once.

Every ingest path hands the post-store hook (``Watch.stored``) the batch's rule matches
(``detect.matches.Match``, taken *before* the pipeline policy: a 403 the policy drops still counts).

Correlations (``Correlations``). Each correlation rule (``detect.ir.Correlation``) counts the
matches of its base rules per stream (correlation name, cluster, group-by values) in buckets of
event time (``detect/correlate.py``: entries ``<time>|<audit ID>[|<value>]``, so a batch the API
server or CloudWatch delivers twice is not counted twice). After a batch is added, the buckets
around it are read back and swept for a span that fires (``threshold`` matches, or distinct
values, between some match's time ``s`` and ``s + timespan`` inclusive, the span the hunt counts,
whatever clock minutes it straddles). A span is paged once: it *claims* every bucket it touches
(one atomic write), and a span touching a claimed bucket never pages again. So a sustained attack
pages at most once a timespan, a redelivered batch or a concurrent delivery of the same burst never
pages twice, and if publishing fails the claim is released and AlertError raised, so the delivery
is retried (the webhook answers 503) and the retry pages. A correlation that fires pages whatever
its level: its threshold is what keeps it quiet (``AlertLevel`` gates single findings only).

A claim is a lease until it is confirmed: it is written with ``claim_until`` (now +
``PUBLISH_LEASE_SECONDS``) and marked ``published`` once SNS took the alert. A process killed between
its claim and its publish (a Lambda timeout, an out-of-memory kill) makes no call to release it; its
claim expires unpublished and the next delivery takes it over and pages. While a claim is alive and
unpublished, a delivery that touches it (or whose claim a concurrent one refused) raises AlertError:
its sender retries until the page is confirmed or the claim expired. So a page is never lost to a kill
or a lost answer; it can be sent twice when the publish happened and its confirmation did not (a kill
or a failure after Publish, an answer SNS gave and the network lost): at least once, never zero.

The 403 bursts are two built-in correlations (``detect/builtin/forbidden.yml``): ``forbidden``
(every 403 of one identity) and ``forbidden-secrets`` (403s on secrets), whose thresholds the
stack's AlertThreshold / SecretsAlertThreshold replace (``thresholds``; 0 = off). Their alerts
keep the fields they always had (``first_denied``/``last_denied`` beside ``first_at``/``last_at``).

Buckets expire a day after they last counted (the ingest clock, not event time): a log from last
week pages for its bursts when it is ingested, exactly once, and ingesting it again within a day
pages nothing new. After a day the counters are gone and a re-ingest pages again.

Findings (``FindingPages``). A match of a rule that generates findings, at or above the alert level
(``model.SIGMA_LEVEL_RANK``), is paged at most once per (rule, cluster, identity, object) per
dedup window: a claim that lives ``dedup_minutes`` (the ingest clock) is written before publishing,
and released if publishing fails (AlertError: the retried delivery pages, once); it is a lease of
``PUBLISH_LEASE_SECONDS`` until confirmed published, as above. A retry of the claim's own write (its
answer lost) is taken as the claim it is.

DynamoDB: counters ``pk = ALERT#<rule>#<cluster>#<identity>``, ``sk = <bucket start>``, TTL a day
after the last write; one UpdateItem per touched bucket, one Query per stream a batch, one
TransactWriteItems per fired span. Finding claims ``pk = FINDING#<rule>#<cluster>#<identity>#<object>``:
a conditional PutItem (DeleteItem to release), TTL the window's end. Local: ``<lake>/state/alerts.json``
and ``<lake>/state/pages.json`` (one read and one write a batch each), alerts appended to
``<lake>/alerts/<yyyy-mm-dd>.jsonl``.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from auditlake.detect import correlate
from auditlake.detect.correlate import Bucket, Burst, Window
from auditlake.detect.ir import Correlation
from auditlake.detect.matches import Match
from auditlake.jsonio import JSONError, dumps, dumps_str, loads
from auditlake.metrics import MetricsSink
from auditlake.model import SIGMA_LEVEL_RANK
from auditlake.state_table import (
    TTL,
    alert_key,
    alert_partition,
    alert_stream,
    conditional_write,
    correlation_identity,
    finding_key,
    finding_partition,
)
from auditlake.timestamps import format_seconds
from auditlake.trust.liveness import Heartbeats

logger = logging.getLogger(__name__)

RULE_ALL = "forbidden"
RULE_SECRETS = "forbidden-secrets"
FORBIDDEN_RULES = (RULE_ALL, RULE_SECRETS)
DETAILS = ("source_ips", "resources", "verbs")
KEEP_SECONDS = 24 * 3600  # a bucket outlives any redelivery by this long after it last counted
# How long an unconfirmed claim holds: the longest timeout of a function that pages (cloudwatch and
# events_poller, 60 s; the webhook 29 s; tests/infra ties it to template.yaml). A claimer alive after it
# has been stopped by Lambda; kube-apiserver's fifth attempt (~81 s after the first) takes the page over.
PUBLISH_LEASE_SECONDS = 60
SHOWN_VALUES = 20  # a value_count alert names at most this many of the values it counted

Notify = Callable[[dict[str, Any]], None]


class AlertError(RuntimeError):
    """Counting or publishing failed: the delivery must be retried."""


@dataclass(frozen=True)
class Stream:
    """Whose matches are counted together: one correlation, one cluster, one group."""

    rule: str
    cluster: str
    identity: str

    @property
    def key(self) -> str:
        return alert_stream(self.rule, self.cluster, self.identity)


@dataclass
class Tally:
    """What one batch adds to a stream: its buckets, their width and span, and the most entries a
    bucket keeps (``cap``)."""

    window: Window
    cap: int
    buckets: dict[str, Bucket]


# What a claim found: it is ours; a confirmed claim holds (paged); an unconfirmed live one (paging).
MINE, PAGED, PAGING = "mine", "paged", "paging"


class Counter(Protocol):
    def add(self, batch: dict[Stream, Tally]) -> dict[Stream, dict[str, Bucket]]:
        """Add each stream's new entries to their buckets (not to a claimed bucket, nor to one that
        already holds ``cap`` entries: neither can change what pages) and return, per stream, every
        stored bucket within a span of the buckets added (``Window.around``)."""
        ...

    def claim(self, stream: Stream, buckets: list[str], claim: str) -> str:
        """Claim every bucket at once for one span, for ``PUBLISH_LEASE_SECONDS`` until confirmed:
        MINE; PAGED when any is claimed for good (a span of a page already sent, which the buckets
        read back need not all show); PAGING when one is claimed, unconfirmed and alive."""
        ...

    def unclaim(self, stream: Stream, buckets: list[str], claim: str) -> None: ...

    def confirm(self, stream: Stream, buckets: list[str], claim: str) -> None:
        """The span's alert was published: its claim holds for good."""
        ...


def claim_state(claimed: str | None, published: bool, until: float | None, now: float) -> tuple[str | None, bool]:
    """A stored claim as (claimed, paging): a claim confirmed published (or written before claims had
    a lease) holds; an unconfirmed one is being paged while its lease lives, and is no claim at all
    once it expired (its claimer died before publishing: the span may page again)."""
    if claimed is None or published or until is None:
        return claimed, False
    return (claimed, True) if until >= now else (None, False)


MINUTE = Window(60)


def bucket_of(moment: Any) -> str:
    """The 10-second bucket of a one-minute correlation (the 403 bursts) holding ``moment``."""
    return MINUTE.bucket_of(moment)


def forbidden_thresholds(threshold: int, secrets_threshold: int) -> dict[str, int]:
    """The stack's AlertThreshold / SecretsAlertThreshold as ``Correlations`` thresholds."""
    return {RULE_ALL: threshold, RULE_SECRETS: secrets_threshold}


@dataclass(frozen=True)
class _Counted:
    correlation: Correlation
    threshold: int
    window: Window

    @property
    def distinct(self) -> bool:
        return self.correlation.type == "value_count"


class Correlations:
    """Correlation rules counted on the counters; ``correlations`` is the rules in force (a
    callable is asked every batch: a function's custom rules change without a deploy).
    ``thresholds`` replaces a correlation's threshold by name (0: not counted)."""

    def __init__(
        self,
        counter: Counter,
        notify: Notify,
        correlations: Sequence[Correlation] | Callable[[], Sequence[Correlation]],
        *,
        thresholds: Mapping[str, int] | None = None,
    ) -> None:
        thresholds = dict(thresholds or {})
        if any(value < 0 for value in thresholds.values()):
            raise ValueError("an alert threshold must be >= 0 (0 = off)")
        self.counter, self.notify, self.thresholds = counter, notify, thresholds
        self._source = correlations if callable(correlations) else (lambda: correlations)
        self._seen: tuple[Sequence[Correlation], dict[str, list[_Counted]]] | None = None

    def _index(self) -> dict[str, list[_Counted]]:
        """The counted correlations by base rule id and name, rebuilt only when the rules change.
        A name already in force is not counted twice (the first correlation of that name wins)."""
        correlations = self._source()
        if self._seen is not None and self._seen[0] is correlations:
            return self._seen[1]
        index: dict[str, list[_Counted]] = {}
        named: set[str] = set()
        for correlation in correlations:
            name = correlate.name_of(correlation)
            threshold = self.thresholds.get(name, correlation.condition[1])
            if name in named or threshold < 1 or correlate.ingest_problem(correlation, threshold):
                continue
            named.add(name)
            counted = _Counted(correlation, correlate.needed(correlation, threshold), correlate.window_of(correlation))
            for rule in correlation.rules:
                index.setdefault(rule, []).append(counted)
        self._seen = (correlations, index)
        return index

    def observe(self, matches: Sequence[Match]) -> list[dict[str, Any]]:
        """Count the matches of correlations' base rules; returns the alerts published."""
        index = self._index()
        if not index:
            return []
        added: dict[Stream, Tally] = {}
        counted_by: dict[Stream, _Counted] = {}
        for match in matches:
            targets = index.get(match.rule, [])
            if match.name is not None and match.name != match.rule:
                targets = targets + [c for c in index.get(match.name, []) if c not in targets]
            for counted in targets:
                item = correlate.entry(counted.correlation, match)
                if item is None:
                    continue
                group = correlation_identity(correlate.group_values(counted.correlation, match))
                stream = Stream(correlate.name_of(counted.correlation), match.finding.cluster, group)
                cap = correlate.cap(counted.correlation, counted.threshold)
                tally = added.get(stream) or added.setdefault(stream, Tally(counted.window, cap, {}))
                counted_by[stream] = counted
                key = counted.window.bucket_of(correlate.moment(item))
                bucket = tally.buckets.get(key) or tally.buckets.setdefault(key, _empty())
                bucket.ids.add(item)
                for name, values in correlate.describe(match).items():
                    bucket.details[name].update(values)
        if not added:
            return []
        stored = self.counter.add(added)
        published = []
        busy = []
        for stream, buckets in stored.items():
            if any(bucket.paging for bucket in buckets.values()):
                busy.append(stream.key)  # a claim in flight (or its claimer died): retry until settled
                continue
            counted = counted_by[stream]
            for burst in correlate.find_bursts(buckets, counted.window, counted.threshold, distinct=counted.distinct):
                alert = self._page(stream, counted, burst, buckets)
                if alert is not None:
                    published.append(alert)
        if busy:
            raise AlertError(f"a burst is being paged by another delivery (not yet confirmed): {', '.join(busy)}")
        return published

    def _page(
        self, stream: Stream, counted: _Counted, burst: Burst, stored: dict[str, Bucket]
    ) -> dict[str, Any] | None:
        claim = uuid.uuid4().hex
        state = self.counter.claim(stream, burst.buckets, claim)
        if state == PAGED:
            return None  # part of a span already paged
        if state == PAGING:
            # A concurrent delivery claimed the span first: retried until its page is confirmed (or its
            # claim expired unpublished and the retry pages).
            raise AlertError(f"a burst of {stream.key} is being paged by another delivery (not yet confirmed)")
        alert = correlation_alert(stream, counted, burst, stored)
        try:
            self.notify(alert)
        except Exception as exc:
            self.counter.unclaim(stream, burst.buckets, claim)  # the retried delivery claims and publishes again
            raise AlertError(f"alert not published: {exc}") from exc
        try:
            self.counter.confirm(stream, burst.buckets, claim)
        except AlertError:
            # Published: the claim expires unconfirmed and a later delivery pages again (twice, never zero).
            logger.warning("page published but not confirmed: it may be sent again", extra={"stream": stream.key})
        return alert


def _empty() -> Bucket:
    return Bucket(set(), {name: set() for name in DETAILS})


def correlation_alert(stream: Stream, counted: _Counted, burst: Burst, stored: dict[str, Bucket]) -> dict[str, Any]:
    correlation, threshold, window = counted.correlation, counted.threshold, counted.window
    touched = [stored[key] for key in burst.buckets if key in stored]
    details = {name: set[str]().union(*(bucket.details.get(name, set()) for bucket in touched)) for name in DETAILS}
    first, last = correlate.stamp(burst.entries[0]), correlate.stamp(burst.entries[-1])
    alert: dict[str, Any] = {
        "rule": stream.rule,
        "title": correlation.title,
        "level": correlation.level,
        "cluster": stream.cluster,
        "identity": stream.identity,
        "group": dict(zip(correlation.group_by, stream_group(stream, correlation), strict=True)),
        "count": burst.count,
        "threshold": threshold,
        "window_start": format_seconds(burst.start),
        "window_end": format_seconds(correlate.shift(burst.start, window.span)),
        "first_at": first,
        "last_at": last,
    }
    if stream.rule in FORBIDDEN_RULES:
        alert |= {"first_denied": first, "last_denied": last}  # the 403 alerts' fields since they began
    if correlation.type == "value_count":
        values = sorted({correlate.value(item) for item in burst.entries})
        alert |= {"field": correlation.field, "values": values[:SHOWN_VALUES]}
    return alert | {name: sorted(values) for name, values in details.items()}


def stream_group(stream: Stream, correlation: Correlation) -> list[str]:
    """The group-by values a stream's identity holds (``state_table.correlation_identity``)."""
    if len(correlation.group_by) == 1:
        return [stream.identity]
    from urllib.parse import unquote  # the escaping is percent-encoding of % # |

    return [unquote(part) for part in stream.identity.split("|")]


# ---------------------------------------------------------------- findings


@dataclass(frozen=True)
class Page:
    """One finding's claim: which finding, for how long."""

    rule: str
    cluster: str
    identity: str
    subject: str  # the object: <resource>/<namespace>/<name>

    @property
    def key(self) -> str:
        return finding_partition(self.rule, self.cluster, self.identity, self.subject)


class PageClaims(Protocol):
    def claim(self, page: Page, claim: str, seconds: int) -> str:
        """Claim ``page`` for ``seconds`` (the ingest clock), unconfirmed for ``PUBLISH_LEASE_SECONDS``:
        MINE; PAGED while a confirmed claim lives; PAGING while an unconfirmed one does."""
        ...

    def release(self, page: Page, claim: str) -> None: ...

    def confirm(self, page: Page, claim: str) -> None: ...


class FindingPages:
    """Findings of rules at or above ``level`` paged once per (rule, cluster, identity, object)
    per ``dedup_minutes``."""

    def __init__(self, claims: PageClaims, notify: Notify, *, level: str = "high", dedup_minutes: int = 60) -> None:
        if level not in SIGMA_LEVEL_RANK or dedup_minutes < 1:
            raise ValueError("the alert level must be a Sigma level and the dedup window >= 1 minute")
        self.claims, self.notify = claims, notify
        self.rank, self.seconds = SIGMA_LEVEL_RANK[level], dedup_minutes * 60

    def observe(self, matches: Sequence[Match]) -> list[dict[str, Any]]:
        """Page the batch's findings at or above the level; returns the alerts published."""
        published = []
        pages: set[Page] = set()
        busy = 0
        for match in matches:
            if not match.generate or SIGMA_LEVEL_RANK.get(match.level, -1) < self.rank:
                continue
            finding = match.finding
            subject = f"{finding.resource or ''}/{finding.namespace or ''}/{finding.name or ''}"
            page = Page(match.rule, finding.cluster, finding.identity or "(unknown)", subject)
            if page in pages:
                continue  # the batch's own repeat: one claim is enough
            pages.add(page)
            claim = uuid.uuid4().hex
            state = self.claims.claim(page, claim, self.seconds)
            if state == PAGED:
                continue  # paged within the window
            if state == PAGING:
                busy += 1  # another delivery is paging it, or died doing so: retried until settled
                continue
            alert = finding_alert(match)
            try:
                self.notify(alert)
            except Exception as exc:
                self.claims.release(page, claim)  # the retried delivery pages it
                raise AlertError(f"alert not published: {exc}") from exc
            try:
                self.claims.confirm(page, claim)
            except AlertError:
                logger.warning("page published but not confirmed: it may be sent again", extra={"page": page.key})
            published.append(alert)
        if busy:
            raise AlertError(f"{busy} finding page(s) being paged by another delivery (not yet confirmed)")
        return published


def finding_alert(match: Match) -> dict[str, Any]:
    finding = match.finding
    try:
        details = loads(finding.details.encode()) if finding.details else None
    except JSONError:
        details = finding.details
    return {
        "rule": match.rule,
        "title": finding.title,
        "level": match.level,
        "cluster": finding.cluster,
        "identity": finding.identity,
        "verb": finding.verb,
        "resource": finding.resource,
        "namespace": finding.namespace,
        "name": finding.name,
        "at": finding.at,
        "audit_id": finding.audit_id,
        "source_ips": list(finding.source_ips or ()),
        "details": details,
    }


def subject(alert: dict[str, Any]) -> str:
    """The SNS subject (at most 100 characters)."""
    if "count" not in alert:  # a finding
        text = f"auditlake {alert['level']}: {alert['title']} by {alert['identity'] or '?'} in {alert['cluster']}"
    elif alert["rule"] in FORBIDDEN_RULES:
        what = denied_what(alert)
        text = f"auditlake: {alert['identity']} denied {alert['count']}x{': ' + what if what else ''}"
        text += f" in {alert['cluster']} at {alert['window_start']}"
    else:
        text = (
            f"auditlake {alert['level']}: {alert['title']}: {alert['identity']} {alert['count']}x in {alert['cluster']}"
        )
    return text[:100]


def denied_what(alert: dict[str, Any]) -> str:
    """What a 403 burst was denied, from its ``verbs`` and ``resources`` details (each resource as
    ``correlate.describe`` keeps it: ``<resource>``, ``<resource> <namespace>`` or ``<resource>
    <namespace>/<name>``): ``list secrets cluster-wide``, ``get secrets prod/db-pass``, ``get,list
    secrets, configmaps (5 objects)``. Empty when the alert holds neither: the subject then says no
    more than the count, never an empty placeholder."""
    verbs = [verb for verb in alert.get("verbs") or () if verb and verb != "?"]
    targets = [target for target in alert.get("resources") or () if target]
    if not targets:
        return ",".join(verbs)
    kinds = sorted({target.split(" ", 1)[0] for target in targets})
    if len(targets) == 1:
        resource, _, place = targets[0].partition(" ")
        if not place:
            place = "cluster-wide"
        elif "/" not in place:
            place = f"in namespace {place}"
        what = f"{resource} {place}"
    else:
        what = f"{', '.join(kinds)} ({len(targets)} objects)"
    return f"{','.join(verbs)} {what}" if verbs else what


# ---------------------------------------------------------------- DynamoDB


class DynamoCounter:
    def __init__(self, client: Any, table: str, *, clock: Callable[[], float] = time.time) -> None:
        self.client, self.table, self.clock = client, table, clock

    def _expires(self) -> dict[str, str]:
        return {"N": str(int(self.clock()) + KEEP_SECONDS)}

    @staticmethod
    def _key(stream: Stream, bucket: str) -> dict[str, Any]:
        return alert_key(stream.key, bucket)

    def add(self, batch: dict[Stream, Tally]) -> dict[Stream, dict[str, Bucket]]:
        for stream, tally in batch.items():
            for key, bucket in tally.buckets.items():
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
                        ":cap": {"N": str(tally.cap)},
                    },
                }
                # Refused when claimed or full: nothing to add then.
                conditional_write(partial(self.client.update_item, **request), AlertError, "count matches")
        return {stream: self._read(stream, *tally.window.around(tally.buckets)) for stream, tally in batch.items()}

    def _read(self, stream: Stream, first: str, last: str) -> dict[str, Bucket]:
        buckets: dict[str, Bucket] = {}
        now = self.clock()
        try:
            pages = self.client.get_paginator("query").paginate(
                TableName=self.table,
                KeyConditionExpression="pk = :pk AND sk BETWEEN :first AND :last",
                ExpressionAttributeValues={
                    ":pk": {"S": alert_partition(stream.key)}, ":first": {"S": first}, ":last": {"S": last}
                },
                ConsistentRead=True,  # a concurrent delivery's matches must be seen
            )  # fmt: skip
            for page in pages:
                for item in page["Items"]:
                    until = item.get("claim_until", {}).get("N")
                    claimed, paging = claim_state(item.get("claimed", {}).get("S"), "published" in item,
                                                  None if until is None else float(until), now)  # fmt: skip
                    buckets[item["sk"]["S"]] = Bucket(
                        set(item.get("ids", {}).get("SS", ())),
                        {name: set(item.get(name, {}).get("SS", ())) for name in DETAILS},
                        claimed,
                        paging,
                    )
        except (BotoCoreError, ClientError) as exc:
            raise AlertError(f"cannot read the correlation counters: {exc}") from exc
        return buckets

    def claim(self, stream: Stream, buckets: list[str], claim: str) -> str:
        # Unclaimed, or claimed by a claimer that died before publishing (its lease is over). A retry of
        # this transaction after a lost answer is AWS's to settle: botocore sends the same
        # ClientRequestToken, and DynamoDB answers it as the write it already applied.
        now = self.clock()
        update = {
            "TableName": self.table,
            "UpdateExpression": "SET claimed = :claim, claim_until = :until, #ttl = :ttl",
            "ConditionExpression": "attribute_not_exists(claimed) OR "
            "(attribute_not_exists(published) AND claim_until < :now)",
            "ExpressionAttributeNames": {"#ttl": TTL},
            "ExpressionAttributeValues": {
                ":claim": {"S": claim},
                ":ttl": self._expires(),
                ":now": {"N": f"{now:.3f}"},
                ":until": {"N": f"{now + PUBLISH_LEASE_SECONDS:.3f}"},
            },
        }
        items = [{"Update": {**update, "Key": self._key(stream, key)}} for key in buckets]
        claimed = partial(self.client.transact_write_items, TransactItems=items)
        if conditional_write(claimed, AlertError, "claim the burst") is not None:
            return MINE
        held = self._read(stream, min(buckets), max(buckets))
        return PAGING if any(held[key].paging for key in buckets if key in held) else PAGED

    def unclaim(self, stream: Stream, buckets: list[str], claim: str) -> None:
        for key in buckets:
            release = partial(
                self.client.update_item,
                TableName=self.table,
                Key=self._key(stream, key),
                UpdateExpression="REMOVE claimed, claim_until",
                ConditionExpression="claimed = :claim",
                ExpressionAttributeValues={":claim": {"S": claim}},
            )
            conditional_write(release, AlertError, "release the burst's claim")

    def confirm(self, stream: Stream, buckets: list[str], claim: str) -> None:
        for key in buckets:
            published = partial(
                self.client.update_item,
                TableName=self.table,
                Key=self._key(stream, key),
                UpdateExpression="SET published = :yes",
                ConditionExpression="claimed = :claim",  # refused: taken over after our lease (paged twice)
                ExpressionAttributeValues={":claim": {"S": claim}, ":yes": {"BOOL": True}},
            )
            conditional_write(published, AlertError, "confirm the burst's page")


class DynamoPageClaims:
    """Finding page claims in the state table: PutItem unless a live claim is there (an expired
    one DynamoDB has not yet removed counts as gone), DeleteItem of our own claim to release."""

    def __init__(self, client: Any, table: str, *, clock: Callable[[], float] = time.time) -> None:
        self.client, self.table, self.clock = client, table, clock

    def claim(self, page: Page, claim: str, seconds: int) -> str:
        now = self.clock()
        put = partial(
            self.client.put_item,
            TableName=self.table,
            Item={**self._key(page), "claim": {"S": claim}, TTL: {"N": str(int(now) + seconds)},
                  "claim_until": {"N": f"{now + PUBLISH_LEASE_SECONDS:.3f}"}},
            # ``claim = :claim``: botocore's retry of this very put after its answer was lost.
            ConditionExpression="attribute_not_exists(pk) OR #ttl <= :now OR claim = :claim OR "
            "(attribute_not_exists(published) AND claim_until < :now)",
            ExpressionAttributeNames={"#ttl": TTL},
            ExpressionAttributeValues={":now": {"N": f"{now:.3f}"}, ":claim": {"S": claim}},
        )  # fmt: skip
        if conditional_write(put, AlertError, "claim the finding's page") is not None:
            return MINE
        try:
            item = self.client.get_item(TableName=self.table, Key=self._key(page), ConsistentRead=True).get("Item")
        except (BotoCoreError, ClientError) as exc:
            raise AlertError(f"cannot read the finding's page claim: {exc}") from exc
        if item is None:
            return PAGING  # gone since: the retry claims it
        until = item.get("claim_until", {}).get("N")
        _, paging = claim_state(item["claim"]["S"], "published" in item, None if until is None else float(until), now)
        return PAGING if paging else PAGED

    def confirm(self, page: Page, claim: str) -> None:
        published = partial(
            self.client.update_item,
            TableName=self.table,
            Key=self._key(page),
            UpdateExpression="SET published = :yes",
            ConditionExpression="claim = :claim",
            ExpressionAttributeValues={":claim": {"S": claim}, ":yes": {"BOOL": True}},
        )
        conditional_write(published, AlertError, "confirm the finding's page")

    def release(self, page: Page, claim: str) -> None:
        delete = partial(
            self.client.delete_item,
            TableName=self.table,
            Key=self._key(page),
            ConditionExpression="claim = :claim",
            ExpressionAttributeValues={":claim": {"S": claim}},
        )
        conditional_write(delete, AlertError, "release the finding's page")

    @staticmethod
    def _key(page: Page) -> dict[str, Any]:
        return finding_key(page.rule, page.cluster, page.identity, page.subject)


# ---------------------------------------------------------------- local lake


@contextmanager
def _locked_json(path: Path, now: float, live: Callable[[Any, float], Any]) -> Iterator[dict[str, Any]]:
    """A JSON object file read and rewritten under a file lock; ``live(value, now)`` keeps what has
    not expired (None drops the entry), so the file never grows with what is gone."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            state = loads(path.read_bytes())
        except FileNotFoundError:
            state = {}
        except JSONError as exc:
            raise AlertError(f"{path}: {exc.reason}") from None
        state = {key: kept for key, value in (state if isinstance(state, dict) else {}).items()
                 if (kept := live(value, now))}  # fmt: skip
        yield state
        pending = path.with_suffix(".partial")
        pending.write_bytes(dumps(state))
        os.replace(pending, path)
    finally:
        os.close(fd)


def _live_buckets(buckets: Any, now: float) -> dict[str, Any] | None:
    # What expired goes; so does anything not of this shape (an older release's windows).
    if not isinstance(buckets, dict):
        return None
    return {k: b for k, b in buckets.items() if isinstance(b, dict) and b.get("expires_at", 0) > now} or None


class LocalCounter:
    """The same counting in one JSON file of the local lake, under a file lock: one read and one
    write a batch (and one each for a span's claim)."""

    def __init__(self, path: str | os.PathLike[str], *, clock: Callable[[], float] = time.time) -> None:
        self.path, self.clock = Path(path), clock

    def _state(self) -> Any:
        return _locked_json(self.path, self.clock(), _live_buckets)

    def add(self, batch: dict[Stream, Tally]) -> dict[Stream, dict[str, Bucket]]:
        expires = self.clock() + KEEP_SECONDS
        out: dict[Stream, dict[str, Bucket]] = {}
        with self._state() as state:
            for stream, tally in batch.items():
                stored = state.setdefault(stream.key, {})
                for key, bucket in tally.buckets.items():
                    entry = stored.setdefault(key, {"ids": [], "claimed": None, "expires_at": expires})
                    if entry["claimed"] or len(entry["ids"]) >= tally.cap:
                        continue
                    entry["ids"] = sorted(set(entry["ids"]) | bucket.ids)
                    for name in DETAILS:
                        entry[name] = sorted(set(entry.get(name, ())) | bucket.details[name])
                    entry["expires_at"] = expires
                first, last = tally.window.around(tally.buckets)
                now = self.clock()
                out[stream] = {
                    key: Bucket(
                        set(entry["ids"]), {n: set(entry.get(n, ())) for n in DETAILS}, *_local_claim(entry, now)
                    )
                    for key, entry in stored.items()
                    if first <= key <= last
                }
        return out

    def claim(self, stream: Stream, buckets: list[str], claim: str) -> str:
        now = self.clock()
        with self._state() as state:
            stored = state.setdefault(stream.key, {})
            held = [_local_claim(stored.get(key, {}), now) for key in buckets]
            if any(holder for holder, _ in held):
                return PAGING if any(paging for _, paging in held) else PAGED
            for key in buckets:
                entry = stored.setdefault(key, {"ids": []})
                entry.pop("published", None)
                entry["claimed"], entry["expires_at"] = claim, now + KEEP_SECONDS
                entry["claim_until"] = now + PUBLISH_LEASE_SECONDS
            return MINE

    def unclaim(self, stream: Stream, buckets: list[str], claim: str) -> None:
        with self._state() as state:
            for key in buckets:
                entry = state.get(stream.key, {}).get(key)
                if entry is not None and entry.get("claimed") == claim:
                    entry["claimed"] = None

    def confirm(self, stream: Stream, buckets: list[str], claim: str) -> None:
        with self._state() as state:
            for key in buckets:
                entry = state.get(stream.key, {}).get(key)
                if entry is not None and entry.get("claimed") == claim:
                    entry["published"] = True


def _local_claim(entry: dict[str, Any], now: float) -> tuple[str | None, bool]:
    return claim_state(entry.get("claimed"), bool(entry.get("published")), entry.get("claim_until"), now)


class LocalPageClaims:
    """Finding page claims in one JSON file of the local lake (``{key: {claim, expires_at}}``)."""

    def __init__(self, path: str | os.PathLike[str], *, clock: Callable[[], float] = time.time) -> None:
        self.path, self.clock = Path(path), clock

    @staticmethod
    def _live(value: Any, now: float) -> Any:
        return value if isinstance(value, dict) and value.get("expires_at", 0) > now else None

    def claim(self, page: Page, claim: str, seconds: int) -> str:
        now = self.clock()
        with _locked_json(self.path, now, self._live) as state:
            held = state.get(page.key)
            if held is not None:
                holder, paging = claim_state(
                    held.get("claim"), bool(held.get("published")), held.get("claim_until"), now
                )
                if holder is not None:
                    return PAGING if paging else PAGED
            state[page.key] = {"claim": claim, "expires_at": now + seconds, "claim_until": now + PUBLISH_LEASE_SECONDS}
            return MINE

    def release(self, page: Page, claim: str) -> None:
        with _locked_json(self.path, self.clock(), self._live) as state:
            if state.get(page.key, {}).get("claim") == claim:
                del state[page.key]

    def confirm(self, page: Page, claim: str) -> None:
        with _locked_json(self.path, self.clock(), self._live) as state:
            if state.get(page.key, {}).get("claim") == claim:
                state[page.key]["published"] = True


def sns_notifier(make_client: Callable[[], Any], topic_arn: str) -> Notify:
    """Publish to SNS; the client is made at the first alert (alerts are rare; cold starts are not)."""
    clients: list[Any] = []

    def notify(alert: dict[str, Any]) -> None:
        if not clients:
            clients.append(make_client())
        clients[0].publish(TopicArn=topic_arn, Subject=subject(alert), Message=dumps_str(alert))

    return notify


@dataclass(frozen=True)
class Watch:
    """What every ingest path does once a batch is stored: count its matches for correlation
    alerts, page its findings (AlertError when an alert cannot be sent: the caller makes the
    delivery retried; what was paged stays claimed, so the retry pages only the rest), and note
    that the cluster is alive (the dead-man alarm)."""

    bursts: Correlations | None = None
    heartbeats: Heartbeats | None = None
    findings: FindingPages | None = None

    def stored(
        self, cluster: str, matches: Sequence[Match], metrics: MetricsSink | None = None
    ) -> list[dict[str, Any]]:
        published = self.bursts.observe(matches) if self.bursts is not None and matches else []
        paged = self.findings.observe(matches) if self.findings is not None and matches else []
        if metrics is not None and (published or paged):
            metrics.add_metric("AlertsPublished", "Count", len(published) + len(paged))
            if paged:
                metrics.add_metric("FindingAlerts", "Count", len(paged))
        if self.heartbeats is not None:
            self.heartbeats.beat(cluster)
        return published + paged
