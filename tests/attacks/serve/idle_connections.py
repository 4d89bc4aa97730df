"""80 connections opened and never written to (more than the connection cap): each is closed after
the header deadline, and the endpoint answers a real batch instead of 503."""

import time

from tests.attacks.serving import HEADER_SECONDS, Address, answer, connect, good_batch

ISSUE = "11.14"


def attack(address: Address) -> None:
    idle = [connect(address) for _ in range(80)]
    time.sleep(HEADER_SECONDS + 0.5)
    assert good_batch(address) == 200
    for conn in idle:
        assert answer(conn) == (None, b"")  # closed by the server, nothing sent
        conn.close()
