"""403 bursts: an identity denied ``threshold`` times within one minute (of event time) is an attack
in progress, or a broken deployment; either way someone should be paged, once.

Every ingest path hands the records it stored with response code 403 to ``ForbiddenBursts``.
Denials are counted per (rule, cluster, identity, minute) as a *set of audit IDs*, so a batch the
API server or CloudWatch delivers twice is not counted twice. When a window reaches its rule's
threshold it is claimed (a conditional write) and published once; if publishing fails the claim
is released and the error raised, so the delivery is retried (the webhook answers 503).

Rules: ``forbidden`` (every 403, ``threshold``) and the optional narrower ``forbidden-secrets``
(403s on secrets only, ``secrets_threshold``; 0 = off).

DynamoDB: ``ALERT#<rule>#<cluster>#<minute>#<identity>/WINDOW`` with a TTL of a day.
Local: ``<lake>/state/alerts.json``, alerts appended to ``<lake>/alerts/<yyyy-mm-dd>.jsonl``.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from .conditional import conditional_write
from .jsonio import JSONError, dumps, dumps_str, loads
from .liveness import Heartbeats
from .metrics import MetricsSink

RULE_ALL = "forbidden"
RULE_SECRETS = "forbidden-secrets"
DETAILS = ("source_ips", "resources", "verbs")
KEEP_SECONDS = 24 * 3600  # a window's counter outlives any redelivery


class AlertError(RuntimeError):
    """Counting or publishing failed: the delivery must be retried."""


@dataclass
class Window:
    rule: str
    cluster: str
    identity: str
    minute: str  # 2026-11-21T10:05 (UTC, event time)
    ids: set[str] = field(default_factory=set)
    details: dict[str, set[str]] = field(default_factory=lambda: {name: set() for name in DETAILS})

    @property
    def key(self) -> str:
        return f"{self.rule}#{self.cluster}#{self.minute}#{self.identity}"

    @property
    def expires_at(self) -> int:
        return int(datetime.fromisoformat(f"{self.minute}:00+00:00").timestamp()) + KEEP_SECONDS


class Counter(Protocol):
    def add(self, window: Window) -> tuple[int, dict[str, set[str]]] | None:
        """Add the window's audit IDs and details; the distinct count and details so far, or None
        when the window has alerted already."""
        ...

    def claim(self, window: Window) -> bool:
        """Mark the window alerted; False when another delivery did first."""
        ...

    def unclaim(self, window: Window) -> None: ...


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
        windows: dict[tuple[str, str, str, str], Window] = {}
        for record in records:
            if not record.audit_id or not record.request_received_at:
                continue
            rules = [RULE_ALL]
            if self.thresholds[RULE_SECRETS] and record.object_resource == "secrets":
                rules.append(RULE_SECRETS)
            for rule in rules:
                slot = (rule, record.cluster, record.user_name or "(unknown)", record.request_received_at[:16])
                window = windows.get(slot) or windows.setdefault(slot, Window(*slot))
                window.ids.add(record.audit_id)
                window.details["source_ips"].update(record.source_ips or ())
                window.details["resources"].add(_resource(record))
                window.details["verbs"].add(record.verb or "?")
        return [alert for window in windows.values() if (alert := self._count(window)) is not None]

    def _count(self, window: Window) -> dict[str, Any] | None:
        counted = self.counter.add(window)
        if counted is None or counted[0] < self.thresholds[window.rule] or not self.counter.claim(window):
            return None
        count, details = counted
        start = datetime.fromisoformat(f"{window.minute}:00+00:00")
        alert = {
            "rule": window.rule,
            "cluster": window.cluster,
            "identity": window.identity,
            "count": count,
            "threshold": self.thresholds[window.rule],
            "window_start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "window_end": (start + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            **{name: sorted(values) for name, values in details.items()},
        }
        try:
            self.notify(alert)
        except Exception as exc:
            self.counter.unclaim(window)  # the retried delivery claims and publishes again
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
    def __init__(self, client: Any, table: str) -> None:
        self.client, self.table = client, table

    @staticmethod
    def _key(window: Window) -> dict[str, Any]:
        return {"pk": {"S": f"ALERT#{window.key}"}, "sk": {"S": "WINDOW"}}

    def add(self, window: Window) -> tuple[int, dict[str, set[str]]] | None:
        sets = {"ids": window.ids, **window.details}
        present = {name: values for name, values in sets.items() if values}  # DynamoDB has no empty sets
        answer = conditional_write(
            lambda: self.client.update_item(
                TableName=self.table,
                Key=self._key(window),
                UpdateExpression="ADD " + ", ".join(f"{n} :{n}" for n in present) + " SET #ttl = :ttl",
                ConditionExpression="attribute_not_exists(alerted)",
                ExpressionAttributeNames={"#ttl": "ttl"},
                ExpressionAttributeValues={
                    **{f":{n}": {"SS": sorted(v)} for n, v in present.items()},
                    ":ttl": {"N": str(window.expires_at)},
                },
                ReturnValues="ALL_NEW",
            ),
            AlertError,
            "count 403s",
        )
        if answer is None:  # the window has alerted already
            return None
        item = answer["Attributes"]
        return len(item["ids"]["SS"]), {name: set(item.get(name, {}).get("SS", ())) for name in DETAILS}

    def _mark(self, window: Window, expression: str, condition: str | None) -> bool:
        request: dict[str, Any] = {"TableName": self.table, "Key": self._key(window), "UpdateExpression": expression}
        if condition:
            now = {":now": {"N": str(int(time.time()))}}
            request |= {"ConditionExpression": condition, "ExpressionAttributeValues": now}
        return conditional_write(lambda: self.client.update_item(**request), AlertError, "mark the alert") is not None

    def claim(self, window: Window) -> bool:
        return self._mark(window, "SET alerted = :now", "attribute_not_exists(alerted)")

    def unclaim(self, window: Window) -> None:
        self._mark(window, "REMOVE alerted", None)


class LocalCounter:
    """The same counting in one JSON file of the local lake, under a file lock."""

    def __init__(self, path: str | os.PathLike[str], *, clock: Callable[[], float] = time.time) -> None:
        self.path, self.clock = Path(path), clock

    @contextmanager
    def _state(self) -> Iterator[dict[str, Any]]:
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
            yield state
            now = self.clock()
            state = {k: v for k, v in state.items() if v["expires_at"] > now}
            partial = self.path.with_suffix(".partial")
            partial.write_bytes(dumps(state))
            os.replace(partial, self.path)
        finally:
            os.close(fd)

    def add(self, window: Window) -> tuple[int, dict[str, set[str]]] | None:
        with self._state() as state:
            entry = state.setdefault(window.key, {"expires_at": window.expires_at, "alerted": False, "ids": []})
            if entry["alerted"]:
                return None
            entry["ids"] = sorted(set(entry["ids"]) | window.ids)
            for name in DETAILS:
                entry[name] = sorted(set(entry.get(name, ())) | window.details[name])
            return len(entry["ids"]), {name: set(entry[name]) for name in DETAILS}

    def _set(self, window: Window, alerted: bool) -> bool:
        with self._state() as state:
            entry = state.get(window.key)
            if entry is None or entry["alerted"] == alerted:
                return False
            entry["alerted"] = alerted
            return True

    def claim(self, window: Window) -> bool:
        return self._set(window, True)

    def unclaim(self, window: Window) -> None:
        self._set(window, False)


def sns_notifier(make_client: Callable[[], Any], topic_arn: str) -> Callable[[dict[str, Any]], None]:
    """Publish to SNS; the client is made at the first alert (alerts are rare; cold starts are not)."""
    clients: list[Any] = []

    def notify(alert: dict[str, Any]) -> None:
        if not clients:
            clients.append(make_client())
        clients[0].publish(TopicArn=topic_arn, Subject=subject(alert), Message=dumps_str(alert))

    return notify


Notify = Callable[[dict[str, Any]], None]


def local_notifier(lake: Path, also: Notify | None = None) -> Notify:
    """Alerts as JSON lines under ``<lake>/alerts/``; ``also`` is told too (serve prints them)."""

    def notify(alert: dict[str, Any]) -> None:
        folder = lake / "alerts"
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / f"{alert['window_start'][:10]}.jsonl").open("ab") as handle:
            handle.write(dumps(alert) + b"\n")
        if also is not None:
            also(alert)

    return notify


def local_bursts(lake: Path, threshold: int = 10, secrets_threshold: int = 0,
                 also: Callable[[dict[str, Any]], None] | None = None) -> ForbiddenBursts:  # fmt: skip
    return ForbiddenBursts(
        LocalCounter(lake / "state" / "alerts.json"), local_notifier(lake, also),
        threshold=threshold, secrets_threshold=secrets_threshold,
    )  # fmt: skip


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
