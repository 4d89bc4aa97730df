"""``auditlake serve``: a real local audit webhook, same core and same answers as the Lambda."""

from __future__ import annotations

import http.server
import logging
import ssl
from collections.abc import Callable
from typing import Any

from .jsonio import dumps
from .webhook import AuditWebhook, Reply

PATH = "/v1/audit"
logger = logging.getLogger(__name__)


def make_server(
    webhook: AuditWebhook,
    host: str,
    port: int,
    *,
    on_reply: Callable[[Reply], None] | None = None,
    tls: tuple[str, str] | None = None,
) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "auditlake"

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug(format, *args)

        def _answer(self, reply: Reply, close: bool = False) -> None:
            data = dumps(reply.body)
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if close:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(data)
            if on_reply is not None:
                on_reply(reply)

        def do_POST(self) -> None:
            if self.path.split("?", 1)[0] != PATH:
                self._answer(Reply(404, {"message": f"not found; POST to {PATH}"}))
                return
            length = self.headers.get("Content-Length")
            if length is None or not length.isdigit():
                self._answer(Reply(411, {"message": "Content-Length required"}), close=True)
                return
            size = int(length)
            if size > webhook.max_body_bytes:
                # Answer from the header alone, as Lambda would: the body is never read.
                self._answer(webhook.handle_oversize(self.headers.get("Authorization"), size), close=True)
                return
            body = self.rfile.read(size)
            self._answer(webhook.handle(self.headers.get("Authorization"), body))

        def do_GET(self) -> None:
            self._answer(Reply(405, {"message": f"POST audit EventLists to {PATH}"}))

    server = http.server.ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    if tls is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    return server
