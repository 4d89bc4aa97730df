"""``auditlake serve``: a real local audit webhook, same core and same answers as the Lambda.

HTTP is uvicorn's (h11): strict request parsing, a listen backlog, a cap on connections (503 past
it), idle keep-alive timeouts, a deadline for the request line and headers (``HEADER_SECONDS``:
uvicorn has none, so a client that connects and sends nothing, or trickles its headers, would hold a
connection, and with ``MAX_CONNECTIONS`` of them every sender would get 503), and on SIGTERM or
Ctrl-C a graceful shutdown that stops accepting and lets requests in flight finish (their 2xx
means stored). The ASGI app below only adapts a request to ``AuditWebhook``, whose work (parse,
store) runs in a worker thread.

Every body is read before the answer, the 413 included: an HTTP client that is still writing when
the server answers and closes sees a connection reset instead of the status (kube-apiserver then
retries five times and drops the batch, never seeing why). So a body over the webhook's limit is
read and discarded, up to ``DRAIN_BYTES`` and within ``BODY_SECONDS``, and then answered 413 with
the truncation advice; only a body declared larger than ``DRAIN_BYTES`` is refused unread.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from auditlake.ingest.webhook import AuditWebhook, Reply
from auditlake.jsonio import dumps

PATH = "/v1/audit"
DRAIN_BYTES = 64 * 1024 * 1024  # read and discard up to this much to deliver a 413 (API Gateway stops at 10 MB)
BODY_SECONDS = 60.0  # a body still arriving after this is answered 408 (a trickling client holds nothing longer)
MAX_CONNECTIONS = 64  # more at once are answered 503 by uvicorn; kube-apiserver sends one batch at a time
BACKLOG = 512
HEADER_SECONDS = 10.0  # from connecting (or the first byte of the next request) to the end of its headers
GRACE_SECONDS = 30  # on shutdown, requests in flight get this long to be stored and answered

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class _Disconnected(Exception):
    pass


class WebhookApp:
    """The ASGI adapter: one POST path, every body read (bounded), the webhook's answer as JSON."""

    def __init__(self, webhook: AuditWebhook, on_reply: Callable[[Reply], None] | None = None) -> None:
        self.webhook, self.on_reply = webhook, on_reply

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        authorization = headers.get("authorization")
        declared = headers.get("content-length")  # h11 has checked it is digits and agrees with the body
        if declared is not None and int(declared) > DRAIN_BYTES:  # larger than any API server batch: unread
            await self._answer(send, self.webhook.handle_oversize(authorization, int(declared)), close=True)
            return
        try:
            body, size = await asyncio.wait_for(self._read(receive), BODY_SECONDS)
        except TimeoutError:
            await self._answer(
                send, Reply(408, {"message": f"body not received within {BODY_SECONDS:g} s"}), close=True
            )
            return
        except _Disconnected:
            return
        if scope["path"] != PATH:
            reply = Reply(404, {"message": f"not found; POST to {PATH}"})
        elif scope["method"] != "POST":
            reply = Reply(405, {"message": f"POST audit EventLists to {PATH}"})
        elif body is None:
            reply = self.webhook.handle_oversize(authorization, size)
        else:
            reply = await asyncio.to_thread(self.webhook.handle, authorization, body)
        await self._answer(send, reply)

    async def _read(self, receive: Receive) -> tuple[bytes | None, int]:
        """The body, or None (with its size) when it is over the webhook's limit and was discarded."""
        limit, chunks, size = self.webhook.max_body_bytes, [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size <= limit:
                chunks.append(chunk)
            elif chunks:
                chunks.clear()  # over the limit: count the rest, keep none of it
            if not message.get("more_body", False):
                return (b"".join(chunks) if size <= limit else None), size

    async def _answer(self, send: Send, reply: Reply, *, close: bool = False) -> None:
        data = dumps(reply.body)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
        if close:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": data})
        if self.on_reply is not None:
            self.on_reply(reply)


def _header_deadline_protocol() -> type:
    """uvicorn's h11 protocol with a deadline on the request line and headers: armed when a connection
    opens and when the next request starts arriving, cleared once a request is being answered."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderDeadline(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._answering():
                self._disarm()
            elif self._deadline is None:
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def shutdown(self) -> None:
            # An idle keep-alive connection is dropped at once: over TLS, close() would wait up to 30 s
            # for the peer's close_notify (asyncio's ssl_shutdown_timeout), and the server exits only
            # after every connection is lost. A request being answered finishes first (keep_alive off).
            idle = not self._answering()
            super().shutdown()
            if idle:
                self.transport.abort()

        def _answering(self) -> bool:
            return self.cycle is not None and not self.cycle.response_complete

        def _arm(self) -> None:
            self._deadline = self.loop.call_later(HEADER_SECONDS, self._expire)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expire(self) -> None:
            self._deadline = None
            if not self._answering() and not self.transport.is_closing():
                self.transport.close()

    return HeaderDeadline


def listen(host: str, port: int) -> socket.socket:
    """Bind and listen (port 0: any free one) before serving, so the address can be printed first."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=BACKLOG)


def make_server(
    webhook: AuditWebhook,
    *,
    on_reply: Callable[[Reply], None] | None = None,
    tls: tuple[str, str] | None = None,
) -> Any:
    """A uvicorn server for ``webhook``; ``run(sockets=[listen(...)])`` serves until SIGTERM or
    SIGINT. Raises ``ssl.SSLError``/``OSError`` here for a certificate or key that does not load."""
    import uvicorn

    config = uvicorn.Config(
        WebhookApp(webhook, on_reply),
        http=_header_deadline_protocol(),
        lifespan="off",
        log_config=None,
        access_log=False,
        server_header=False,
        limit_concurrency=MAX_CONNECTIONS,
        backlog=BACKLOG,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=GRACE_SECONDS,
        h11_max_incomplete_event_size=64 * 1024,  # request line and headers
        ssl_certfile=tls[0] if tls else None,
        ssl_keyfile=tls[1] if tls else None,
    )
    config.load()  # loads the TLS certificate and key now, so a bad one fails before "listening on"
    return uvicorn.Server(config)
