"""Headers of 1 MB (a header bomb): refused once they pass 64 KiB, before they are all read."""

from tests.attacks.serving import Address, answer, connect

ISSUE = "11.14"


def attack(address: Address) -> None:
    conn = connect(address)
    try:
        conn.sendall(b"POST /v1/audit HTTP/1.1\r\nHost: x\r\nX-Bomb: " + b"b" * (1024 * 1024) + b"\r\n\r\n")
    except OSError:
        conn.close()
        return  # refused while it was still being sent
    try:
        status, _ = answer(conn)
    except ConnectionResetError:
        status = None  # refused before the rest was read: the unread bytes reset the connection
    conn.close()
    assert status in (None, 400, 431)
