"""A fake Kubernetes API server over HTTPS, faithful to what the Events poller relies on.

* ``GET /apis/events.k8s.io/v1`` (discovery; 404 when that API is switched off),
  ``GET /api/v1/events`` and ``GET /apis/events.k8s.io/v1/events``: lists with ``limit`` and
  ``continue`` (every page from one snapshot, the list's ``metadata.resourceVersion``), items
  without kind/apiVersion, as real servers send them;
* ``?watch=1&resourceVersion=R``: every change after R as ``{"type", "object"}`` lines (ADDED,
  MODIFIED, DELETED), a BOOKMARK at the end when ``allowWatchBookmarks``, closed at
  ``timeoutSeconds`` (or once the history is drained and ``linger`` has passed, to keep tests fast);
* 410 Gone for versions older than the compacted history (an ERROR event in the stream, as the
  watch cache does, or an HTTP 410 answer), also in the middle of a watch (``gone_after``);
* 401 for a missing or unknown bearer token; EKS tokens (``k8s-aws-v1.``) are checked for the
  presigned STS shape;
* faults on purpose (``faults``, a seeded ``KubeFaults``), as API servers and the proxies in front
  of them fail: per request (discovery, list page or watch) 429 TooManyRequests with
  ``Retry-After: 1`` (API priority and fairness), 500 InternalError, 410 (a watch's ERROR event
  although the version is not old, as a freshly started API server's watch cache answers; HTTP 410
  Expired for a list page with ``continue``), the connection closed before any answer; per watch
  line, the stream cut (socket closed mid-chunk, no terminating chunk) or the line delayed
  (at most 0.2 s). Every injected kind is logged, in order.

Objects are kept in core/v1 form (as the corpus has them) and converted for events.k8s.io/v1.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import orjson
import trustme

# core/v1 field -> events.k8s.io/v1 field (corpus events/NOTES.md)
_TO_EVENTS_V1 = {
    "message": "note",
    "involvedObject": "regarding",
    "reportingComponent": "reportingController",
    "source": "deprecatedSource",
    "firstTimestamp": "deprecatedFirstTimestamp",
    "lastTimestamp": "deprecatedLastTimestamp",
    "count": "deprecatedCount",
}


KUBE_KINDS: tuple[str, ...] = ("429", "500", "410", "reset-mid-watch", "slow-stream", "reset-before")
_REQUEST_KINDS = ("429", "500", "410", "reset-before")  # drawn once per request
_LINE_KINDS = ("reset-mid-watch", "slow-stream")  # drawn once per watch line
SLOW_LINE_SECONDS = 0.2


@dataclass
class KubeFaults:
    """Which faults the fake injects, drawn from ``rnd`` (seeded: a run is reproducible): each
    request, then each watch line, fails with probability ``rate``, as one of ``kinds`` that applies."""

    rnd: random.Random
    rate: float
    kinds: tuple[str, ...] = KUBE_KINDS
    log: list[str] = field(default_factory=list)  # kinds injected, in order
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def draw(self, applicable: tuple[str, ...]) -> str | None:
        """A kind among ``applicable`` (and ``kinds``) with probability ``rate``, else None; logged."""
        with self._lock:  # the server's threads share the generator: one draw at a time
            choices = [kind for kind in self.kinds if kind in applicable]
            if not choices or self.rnd.random() >= self.rate:
                return None
            kind = self.rnd.choice(choices)
            self.log.append(kind)
            return kind

    def uniform(self, low: float, high: float) -> float:
        with self._lock:
            return self.rnd.uniform(low, high)

    def counts(self) -> dict[str, int]:
        with self._lock:
            counts = dict.fromkeys(self.kinds, 0)
            for kind in self.log:
                counts[kind] = counts.get(kind, 0) + 1
            return counts


class _Cut(Exception):
    """The connection was closed on purpose: no terminating chunk, nothing more on it."""


def as_events_v1(obj: dict[str, Any]) -> dict[str, Any]:
    out = {_TO_EVENTS_V1.get(key, key): value for key, value in obj.items()}
    out["apiVersion"] = "events.k8s.io/v1"
    return out


class FakeKube:
    faults: KubeFaults | None = None  # consulted by every request while set
    # True: only TLS clients with a certificate of its CA get in (kind's admin kubeconfig), no token needed.
    client_certificates = False

    def __init__(self, ca: trustme.CA, *, tokens: tuple[str, ...] = ("reader-token",), events_v1: bool = True) -> None:
        self.ca = ca
        self.tokens = set(tokens)
        self.events_v1 = events_v1
        self.accept_eks_for: str | None = None  # an EKS cluster name: accept its k8s-aws-v1 tokens
        self.version = 1000
        self.history: list[tuple[int, str, dict[str, Any]]] = []  # (rv, type, core/v1 object)
        self.compacted = 0  # versions below this are gone (410)
        self.gone_as_http = False
        self.gone_after: int | None = None  # the next watch sends 410 after this many events
        self.linger = 0.2
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.unauthorized = 0
        self.changed = threading.Condition()
        self._server: ThreadingHTTPServer | None = None

    # ---------------------------------------------------------------- the cluster's side

    def _record(self, kind: str, obj: dict[str, Any]) -> int:
        with self.changed:
            self.version += 1
            obj = copy.deepcopy(obj)
            obj["metadata"]["resourceVersion"] = str(self.version)
            self.history.append((self.version, kind, obj))
            self.changed.notify_all()
            return self.version

    def add(self, obj: dict[str, Any]) -> int:
        return self._record("ADDED", obj)

    def current(self, uid: str) -> dict[str, Any]:
        return copy.deepcopy(self.objects_at(self.version)[uid])

    def recur(self, uid: str, at: str = "2026-11-21T10:00:00Z") -> int:
        """The event happened again: count (or series.count) + 1, a new resourceVersion."""
        obj = self.current(uid)
        if obj.get("series"):
            obj["series"]["count"] = obj["series"].get("count", 1) + 1
            # series.lastObservedTime is a MicroTime; `at` may be a Time (seconds) or already one
            obj["series"]["lastObservedTime"] = at if "." in at else at.replace("Z", ".000000Z")
        else:
            obj["count"] = (obj.get("count") or 1) + 1
            obj["lastTimestamp"] = at
        return self._record("MODIFIED", obj)

    def delete(self, uid: str) -> int:
        return self._record("DELETED", self.current(uid))

    def compact(self) -> None:
        """Forget the history up to now, as etcd compaction does: older versions answer 410."""
        self.compacted = self.version + 1

    def objects_at(self, version: int) -> dict[str, dict[str, Any]]:
        objects: dict[str, dict[str, Any]] = {}
        for rv, kind, obj in self.history:
            if rv > version:
                break
            if kind == "DELETED":
                objects.pop(obj["metadata"]["uid"], None)
            else:
                objects[obj["metadata"]["uid"]] = obj
        return objects

    def versions(self) -> set[tuple[str, str]]:
        """Every (uid, resourceVersion) ever ADDED or MODIFIED: what the archive must hold."""
        return {(o["metadata"]["uid"], str(rv)) for rv, kind, o in self.history if kind != "DELETED"}

    # ---------------------------------------------------------------- the server

    def start(self) -> str:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: Any) -> None:
                return None

            def do_GET(self) -> None:
                fake.handle(self)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        if self.client_certificates:
            context.verify_mode = ssl.CERT_REQUIRED
            self.ca.configure_trust(context)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        # A short poll interval: stop() (every test's teardown) waits at most this long.
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self.url

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def kubeconfig(self, token: str) -> str:
        ca = base64.b64encode(self.ca.cert_pem.bytes()).decode()
        return (
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\n"
            f"clusters:\n- name: fake\n  cluster:\n    server: {self.url}\n    certificate-authority-data: {ca}\n"
            "contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: reader\n"
            f"users:\n- name: reader\n  user:\n    token: {token}\n"
        )

    # ---------------------------------------------------------------- requests

    def _authorised(self, header: str | None) -> bool:
        if self.client_certificates and header is None:
            return True  # the TLS handshake checked the client's certificate
        token = (header or "").removeprefix("Bearer ").strip()
        if token in self.tokens:
            return True
        if self.accept_eks_for and token.startswith("k8s-aws-v1."):
            url = unquote(base64.urlsafe_b64decode(token[11:] + "=" * (-len(token[11:]) % 4)).decode())
            return (
                "Action=GetCallerIdentity" in url
                and "x-k8s-aws-id" in url.split("X-Amz-SignedHeaders=")[1].split("&")[0]
                and url.startswith("https://sts.")
            )
        return False

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        parsed = urlparse(request.path)
        query = {k: v[0] for k, v in parse_qs(parsed.query).items()}
        self.requests.append((parsed.path, query))
        if not self._authorised(request.headers.get("Authorization")):
            self.unauthorized += 1
            return self._status(request, 401, "Unauthorized", "Unauthorized")
        watch = query.get("watch") in ("1", "true")
        faults = self.faults
        applicable = _REQUEST_KINDS if watch or "continue" in query else tuple(k for k in _REQUEST_KINDS if k != "410")
        fault = faults.draw(applicable) if faults is not None else None
        if fault == "reset-before":
            return self._cut(request)
        if fault == "429":
            message = "too many requests, please try again later"
            return self._status(request, 429, "TooManyRequests", message, headers={"Retry-After": "1"})
        if fault == "500":
            return self._status(request, 500, "InternalError", "Internal error occurred: etcdserver: leader changed")
        if parsed.path == "/apis/events.k8s.io/v1" and self.events_v1:
            return self._json(request, 200, {"kind": "APIResourceList", "groupVersion": "events.k8s.io/v1"})
        if parsed.path == "/api/v1/events" or (parsed.path == "/apis/events.k8s.io/v1/events" and self.events_v1):
            events_v1 = parsed.path.startswith("/apis/")
            if watch:
                return self._watch(request, query, events_v1, gone=fault == "410")
            return self._list(request, query, events_v1, gone=fault == "410")
        return self._status(request, 404, "NotFound", "the server could not find the requested resource")

    @staticmethod
    def _cut(request: BaseHTTPRequestHandler) -> None:
        """Close the connection at once: no TLS close_notify, no terminating chunk (a proxy's reset)."""
        request.close_connection = True
        with contextlib.suppress(OSError):  # the client may have gone already
            request.connection.shutdown(socket.SHUT_RDWR)

    def _shape(self, obj: dict[str, Any], events_v1: bool, *, in_list: bool) -> dict[str, Any]:
        out = as_events_v1(obj) if events_v1 else {**obj, "apiVersion": "v1"}
        if in_list:
            out.pop("kind", None)
            out.pop("apiVersion", None)
        else:
            out["kind"] = "Event"
        return out

    def _list(self, request: BaseHTTPRequestHandler, query: dict[str, str], events_v1: bool, *,
              gone: bool = False) -> None:  # fmt: skip
        limit = int(query.get("limit", "0")) or None
        if "continue" in query:
            token = orjson.loads(base64.b64decode(query["continue"]))
            snapshot, start = token["rv"], token["start"]
            if snapshot < self.compacted or gone:
                return self._status(request, 410, "Expired", "The provided continue parameter is too old")
        else:
            snapshot, start = self.version, 0
        objects = sorted(self.objects_at(snapshot).values(),
                         key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))  # fmt: skip
        page = objects[start : start + limit] if limit else objects[start:]
        metadata: dict[str, Any] = {"resourceVersion": str(snapshot)}
        if limit and start + limit < len(objects):
            metadata["continue"] = base64.b64encode(orjson.dumps({"rv": snapshot, "start": start + limit})).decode()
            metadata["remainingItemCount"] = len(objects) - start - limit
        kind = {"kind": "EventList", "apiVersion": "events.k8s.io/v1" if events_v1 else "v1"}
        items = [self._shape(o, events_v1, in_list=True) for o in page]
        self._json(request, 200, {**kind, "metadata": metadata, "items": items})

    def _watch(self, request: BaseHTTPRequestHandler, query: dict[str, str], events_v1: bool, *,
               gone: bool = False) -> None:  # fmt: skip
        since = int(query.get("resourceVersion") or self.version)
        timeout = float(query.get("timeoutSeconds", "1800"))
        if since < self.compacted - 1 and self.gone_as_http:
            return self._status(request, 410, "Expired", f"too old resource version: {since} ({self.compacted})")
        request.send_response(200)
        request.send_header("Content-Type", "application/json")
        request.send_header("Transfer-Encoding", "chunked")
        request.end_headers()
        faults = self.faults

        def send(doc: dict[str, Any]) -> None:
            data = orjson.dumps(doc) + b"\n"
            chunk = f"{len(data):x}\r\n".encode() + data + b"\r\n"
            fault = faults.draw(_LINE_KINDS) if faults is not None else None
            if fault == "slow-stream":
                time.sleep(faults.uniform(0, SLOW_LINE_SECONDS))  # type: ignore[union-attr]
            elif fault == "reset-mid-watch":
                request.wfile.write(chunk[: int(faults.uniform(0, len(chunk)))])  # type: ignore[union-attr]
                request.wfile.flush()
                self._cut(request)
                raise _Cut
            request.wfile.write(chunk)
            request.wfile.flush()

        try:
            if since < self.compacted - 1 or gone:
                send(self._error_event(since))
            else:
                self._stream(request, query, events_v1, since, timeout, send)
        except _Cut:
            return
        request.wfile.write(b"0\r\n\r\n")
        request.wfile.flush()

    def _stream(self, request: BaseHTTPRequestHandler, query: dict[str, str], events_v1: bool, since: int,
                timeout: float, send: Callable[[dict[str, Any]], None]) -> None:  # fmt: skip
        """Every change after ``since`` until ``timeoutSeconds`` (or ``linger`` without one), then a bookmark."""
        ends = time.monotonic() + timeout
        sent, quiet_since, position = 0, time.monotonic(), since
        while time.monotonic() < ends:
            with self.changed:
                pending = [entry for entry in self.history if entry[0] > position]
                if not pending:
                    if time.monotonic() - quiet_since >= self.linger:
                        break
                    self.changed.wait(0.05)
                    continue
            for rv, kind, obj in pending:
                if self.gone_after is not None and sent >= self.gone_after:
                    self.gone_after = None
                    send(self._error_event(position))
                    return
                send({"type": kind, "object": self._shape(obj, events_v1, in_list=False)})
                sent, position = sent + 1, rv
            quiet_since = time.monotonic()
        if query.get("allowWatchBookmarks") in ("true", "1"):
            head = {"kind": "Event", "apiVersion": "events.k8s.io/v1" if events_v1 else "v1"}
            bookmark = {**head, "metadata": {"resourceVersion": str(max(position, since))}}
            send({"type": "BOOKMARK", "object": bookmark})

    @staticmethod
    def _error_event(since: int) -> dict[str, Any]:
        status = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Expired", "code": 410}
        return {"type": "ERROR", "object": {**status, "message": f"too old resource version: {since}"}}

    def _status(self, request: BaseHTTPRequestHandler, code: int, reason: str, message: str, *,
                headers: dict[str, str] | None = None) -> None:  # fmt: skip
        doc = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "message": message}
        self._json(request, code, {**doc, "code": code}, headers=headers)

    @staticmethod
    def _json(request: BaseHTTPRequestHandler, code: int, doc: dict[str, Any], *,
              headers: dict[str, str] | None = None) -> None:  # fmt: skip
        data = orjson.dumps(doc)
        request.send_response(code)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            request.send_header(name, value)
        request.end_headers()
        request.wfile.write(data)
