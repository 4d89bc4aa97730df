"""Headers at once, then a body trickled a byte at a time: answered 408 at the body deadline, nothing stored."""

import time

from tests.attacks.serving import BODY_SECONDS, TOKEN, Address, answer, connect, json_body

ISSUE = "11.14"


def attack(address: Address) -> None:
    conn = connect(address)
    conn.sendall(
        b"POST /v1/audit HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {TOKEN}\r\nContent-Length: 1000\r\n\r\n".encode()
    )
    started = time.monotonic()
    try:
        while time.monotonic() - started < BODY_SECONDS + 1:
            conn.sendall(b" ")
            time.sleep(0.2)
    except OSError:
        pass
    status, body = answer(conn)
    conn.close()
    assert status == 408, body
    assert "not received within" in str(json_body(body)["message"])
