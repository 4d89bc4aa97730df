"""Send a JSON Lines audit log to a webhook the way kube-apiserver's batch backend does.

EventList batches of at most 400 items (items without kind/apiVersion) and at most the truncation
size in bytes; a failed batch is retried with a growing backoff; a 413 splits the batch in two.
A 400 is counted as rejected (the receiver quarantined it). Other 4xx answers (a wrong path, a
token refused) are not retried, except 408 and 429; neither is a certificate that does not verify.
A ``ReplayError`` is one line saying the cause (connection refused, a name that does not resolve,
the status and the server's message) and what to check; never the URL's userinfo or the token.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from auditlake.http_api import TRUNCATE_MAX_BATCH_BYTES
from auditlake.jsonio import JSONError, dumps, loads

MAX_EVENTS = 400
RETRIED_4XX = (408, 429)  # timeouts and throttling: worth another attempt, as the API server makes one
_HEAD = b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":['


class ReplayError(RuntimeError):
    """The replay cannot go on; the message is one line with the cause and what to check."""


class _Unreachable(Exception):
    """A connection that failed before any answer; ``final`` when another attempt cannot help."""

    def __init__(self, cause: str, *, final: bool = False) -> None:
        super().__init__(cause)
        self.cause, self.final = cause, final


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a webhook URL (no http(s) scheme, no host), or None."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        example = url if "://" in url else f"http://{url}"
        return f"{url} is not an http(s) URL (give the scheme, e.g. {example})"
    return None


def shown(url: str) -> str:
    """``url`` without user:password@ (the only secret a URL may carry here)."""
    parts = urllib.parse.urlsplit(url)
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


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
        problem = url_problem(url)
        if problem is not None:
            raise ReplayError(problem)
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
        except (OSError, http.client.HTTPException) as exc:
            cause, final = self._cause(exc)
            raise _Unreachable(cause, final=final) from exc

    def _cause(self, exc: BaseException) -> tuple[str, bool]:
        """A failed connection as a few words, and whether retrying is pointless."""
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        if isinstance(reason, ssl.SSLCertVerificationError):
            # OpenSSL's code too: what a search for the failure finds.
            verdict = f"{reason.reason or 'CERTIFICATE_VERIFY_FAILED'}: {reason.verify_message}"
            return f"its certificate does not verify ({verdict}; pass --ca-file with the CA that signed it)", True
        if isinstance(reason, ssl.SSLError):
            return f"TLS handshake failed: {reason.reason or reason} (an https:// URL for a plain http server?)", True
        if isinstance(reason, ConnectionRefusedError):
            return "connection refused", False
        if isinstance(reason, socket.gaierror):
            return f"cannot resolve {urllib.parse.urlsplit(self.url).hostname} (check the host in --url)", True
        if isinstance(reason, TimeoutError):
            return f"no answer within {self.timeout:g}s", False
        if isinstance(reason, ConnectionResetError | http.client.RemoteDisconnected):
            return "the server closed the connection (an http:// URL for an https server?)", False
        text = getattr(reason, "strerror", None) or str(reason)
        return " ".join(str(text).split()), False

    def send(self, items: list[bytes]) -> None:
        delay = self.initial_backoff
        where = shown(self.url)
        problem = ""
        for attempt in range(1, self.attempts + 1):
            try:
                status, reply = self._post(eventlist(items))
            except _Unreachable as exc:
                if exc.final:
                    raise ReplayError(f"cannot connect to {where}: {exc.cause}") from None
                status, reply, problem = 0, {}, exc.cause
            if status == 200:
                self.stats.batches += 1
                self.stats.events += len(items)
                for key, value in reply.items():
                    if isinstance(value, int):
                        self.stats.totals[key] = self.stats.totals.get(key, 0) + value
                return
            if status == 401:
                raise ReplayError(f"{where} answered 401 Unauthorized (check the token file)")
            if status == 413 and len(items) > 1:
                self.stats.splits += 1
                half = len(items) // 2
                self.send(items[:half])
                self.send(items[half:])
                return
            if status == 400:
                self.stats.rejected += 1  # quarantined by the receiver; retrying changes nothing
                return
            if 400 <= status < 500 and status not in RETRIED_4XX:  # the request is wrong: it stays wrong
                raise ReplayError(f"{where} answered {_status(status, reply)} ({_hint(status)})")
            if status:
                problem = f"answered {_status(status, reply)}"
            if attempt < self.attempts:
                self.stats.retries += 1
                self.sleep(delay)
                delay *= 1.5
        tries = f"{self.attempts} attempts" if self.attempts > 1 else "1 attempt"
        if status == 0:
            raise ReplayError(f"cannot connect to {where}: {problem} after {tries} (is auditlake serve running there?)")
        raise ReplayError(f"{where} {problem} to a batch of {len(items)} events after {tries} (see the server's log)")


def _status(status: int, reply: dict[str, Any]) -> str:
    """``404 Not Found: <the server's message>``, one line, the message cut at 200 characters."""
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    message = " ".join(str(reply.get("message") or reply.get("error") or "").split())[:200]
    return f"{status} {phrase}".strip() + (f": {message}" if message else "")


def _hint(status: int) -> str:
    if status == 404:
        return "check the path in --url: auditlake serve takes POST /v1/audit"
    if status == 403:
        return "the token is not allowed to post here: check the token file and the cluster it maps to"
    if status == 413:
        return "one event is larger than the server accepts"
    if status == 405:
        return "the URL does not take POST: check --url"
    return "the server refused the request: see its log"


def _json(data: bytes) -> dict[str, Any]:
    try:
        value = loads(data)
    except JSONError:
        return {"message": data[:200].decode("utf-8", "replace")}
    return value if isinstance(value, dict) else {"message": str(value)}
