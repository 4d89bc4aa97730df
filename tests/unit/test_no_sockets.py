"""The unit tier's socket block (tests/unit/conftest.py) holds: no connection, no Unix socket."""

from __future__ import annotations

import socket
import urllib.request

import pytest
from pytest_socket import SocketBlockedError

# pytest-socket warns as it blocks; here the block is the expected outcome.
pytestmark = pytest.mark.filterwarnings("ignore:A test tried to use socket")


def test_a_tcp_connection_raises() -> None:
    with pytest.raises(SocketBlockedError):
        socket.create_connection(("127.0.0.1", 9), timeout=1)


def test_an_http_request_raises() -> None:
    with pytest.raises(SocketBlockedError):
        urllib.request.urlopen("http://127.0.0.1:9/", timeout=1)


def test_a_unix_socket_raises() -> None:
    with pytest.raises(SocketBlockedError):
        socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
