"""Send a JSON Lines audit log to a webhook the way kube-apiserver's batch backend does.

EventList batches of at most 400 items (items without kind/apiVersion) and at most the truncation
size in bytes; a failed batch is retried with a growing backoff; a 413 splits the batch in two.
"""

from __future__ import annotations

import http.client
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from auditlake.http_api import TRUNCATE_MAX_BATCH_BYTES
from auditlake.jsonio import JSONError, dumps, loads

MAX_EVENTS = 400
_HEAD = b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":['


class ReplayError(RuntimeError):
    pass


def eventlist(items: list[bytes]) -> bytes:
    return _HEAD + b",".join(items) + b"]}"


def batches(
    events: Iterable[dict[str, Any]], max_events: int = MAX_EVENTS, max_bytes: int = TRUNCATE_MAX_BATCH_BYTES
) -> Iterator[list[bytes]]:
    """Serialised items grouped as the API server would send them."""
    batch: list[bytes] = []
    size = len(_HEAD) + 2
    for event in events:
        item = dumps({k: v for k, v in event.items() if k not in ("kind", "apiVersion")})
        if batch and (len(batch) >= max_events or size + len(item) + 1 > max_bytes):
            yield batch
            batch, size = [], len(_HEAD) + 2
        batch.append(item)
        size += len(item) + 1
    if batch:
        yield batch


@dataclass
class ReplayStats:
    batches: int = 0
    events: int = 0
    retries: int = 0
    splits: int = 0
    rejected: int = 0
    totals: dict[str, int] = field(default_factory=dict)


class Replayer:
    def __init__(
        self,
        url: str,
        token: str,
        *,
        ca_file: str | None = None,
        attempts: int = 5,
        initial_backoff: float = 1.0,
        timeout: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ReplayError(f"URL must be http(s): {url}")
        self.url = url
        self.token = token
        self.context = ssl.create_default_context(cafile=ca_file)  # verification always on
        self.attempts = attempts
        self.initial_backoff = initial_backoff
        self.timeout = timeout
        self.sleep = sleep
        self.stats = ReplayStats()

    def _post(self, body: bytes) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(  # noqa: S310 - scheme checked in __init__
            self.url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self.context) as response:  # noqa: S310
                return response.status, _json(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, _json(exc.read())

    def send(self, items: list[bytes]) -> None:
        delay = self.initial_backoff
        for attempt in range(1, self.attempts + 1):
            try:
                status, reply = self._post(eventlist(items))
            except (OSError, http.client.HTTPException) as exc:
                status, reply = 0, {"message": str(exc)}
            if status == 200:
                self.stats.batches += 1
                self.stats.events += len(items)
                for key, value in reply.items():
                    if isinstance(value, int):
                        self.stats.totals[key] = self.stats.totals.get(key, 0) + value
                return
            if status == 401:
                raise ReplayError("401 Unauthorized: check the token file")
            if status == 413 and len(items) > 1:
                self.stats.splits += 1
                half = len(items) // 2
                self.send(items[:half])
                self.send(items[half:])
                return
            if status == 400:
                self.stats.rejected += 1  # quarantined by the receiver; retrying changes nothing
                return
            if attempt < self.attempts:
                self.stats.retries += 1
                self.sleep(delay)
                delay *= 1.5
        raise ReplayError(f"batch of {len(items)} events failed after {self.attempts} attempts: {status} {reply}")


def _json(data: bytes) -> dict[str, Any]:
    try:
        value = loads(data)
    except JSONError:
        return {"message": data[:200].decode("utf-8", "replace")}
    return value if isinstance(value, dict) else {"message": str(value)}
