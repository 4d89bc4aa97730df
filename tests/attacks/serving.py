"""A local webhook endpoint (``auditlake serve``'s uvicorn server, in a thread) for the serve attacks,
with short deadlines so an attack's effect shows in seconds, and the raw-socket moves they use."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from auditlake.cli.options import build_pipeline
from auditlake.clusters.registry import StaticTokens, token_hash
from auditlake.ingest import serve
from auditlake.ingest.webhook import AuditWebhook
from auditlake.landing import Landing
from auditlake.stores.local import LocalStore
from tests.helpers import eventlist_body, forbidden_events

TOKEN = "attack-serve-token"
HEADER_SECONDS = 1.0
BODY_SECONDS = 2.0
Address = tuple[str, int]


@contextmanager
def running(lake: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Address]:
    monkeypatch.setattr(serve, "HEADER_SECONDS", HEADER_SECONDS)
    monkeypatch.setattr(serve, "BODY_SECONDS", BODY_SECONDS)
    webhook = AuditWebhook(
        StaticTokens({token_hash(TOKEN): "lab"}), build_pipeline(None, True, ()), Landing(LocalStore(lake))
    )
    server = serve.make_server(webhook)
    sock = serve.listen("127.0.0.1", 0)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield sock.getsockname()[:2]
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def good_batch(address: Address) -> int:
    """POST one audit event as kube-apiserver would; the status (within 5 seconds)."""
    request = urllib.request.Request(
        f"http://{address[0]}:{address[1]}{serve.PATH}",
        data=eventlist_body(forbidden_events(1)),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def connect(address: Address) -> socket.socket:
    conn = socket.create_connection(address, timeout=10)
    return conn


def answer(conn: socket.socket) -> tuple[int | None, bytes]:
    """Read until the server closes: the status line's code (None when it closed without one), the body."""
    chunks = []
    while chunk := conn.recv(65536):
        chunks.append(chunk)
    data = b"".join(chunks)
    if not data:
        return None, b""
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def json_body(body: bytes) -> dict[str, object]:
    return dict(json.loads(body))
