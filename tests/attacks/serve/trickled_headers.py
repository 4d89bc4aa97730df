"""A request line and headers sent one byte every 0.2 s (slowloris): the connection is closed at the
header deadline, not held for as long as the client keeps trickling."""

import time

from tests.attacks.serving import HEADER_SECONDS, Address, connect

ISSUE = "11.14"


def attack(address: Address) -> None:
    conn = connect(address)
    head = b"POST /v1/audit HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 100
    started = time.monotonic()
    try:
        for byte in head:
            conn.sendall(bytes([byte]))
            time.sleep(0.2)
    except OSError:
        pass  # reset or broken pipe: the server closed it
    else:
        raise AssertionError("the server kept reading a trickled header past its deadline")
    finally:
        conn.close()
    assert time.monotonic() - started < HEADER_SECONDS + 3
