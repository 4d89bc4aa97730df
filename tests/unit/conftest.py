"""The unit tier runs without a network: every socket a unit test opens (TCP, UDP, and Unix sockets
too) raises pytest_socket.SocketBlockedError. A test that needs a socket (moto in server mode, the
fake Kubernetes API, a served webhook) belongs in tests/integration.

Per directory, not `--disable-socket`: `make test` runs every tier in one pytest session, and the
integration tier talks to local servers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pytest_socket import disable_socket, enable_socket


@pytest.fixture(autouse=True)
def _no_sockets() -> Iterator[None]:
    disable_socket(allow_unix_socket=False)
    yield
    enable_socket()
