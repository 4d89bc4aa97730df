"""``auditlake serve``: a real local audit webhook, same core and same answers as the Lambda.

HTTP is uvicorn's (h11): strict request parsing, a listen backlog, a cap on connections (503 past
it), idle keep-alive timeouts, and on SIGTERM or Ctrl-C a graceful shutdown that stops accepting and
lets requests in flight finish (their 2xx means stored). The ASGI app below only adapts a request to
``AuditWebhook``, whose work (parse, store) runs in a worker thread.

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

from .jsonio import dumps
from .webhook import AuditWebhook, Reply

PATH = "/v1/audit"
DRAIN_BYTES = 64 * 1024 * 1024  # read and discard up to this much to deliver a 413 (API Gateway stops at 10 MB)
BODY_SECONDS = 60.0  # a body still arriving after this is answered 408 (a trickling client holds nothing longer)
MAX_CONNECTIONS = 64  # more at once are answered 503 by uvicorn; kube-apiserver sends one batch at a time
BACKLOG = 512
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
        http="h11",
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
