"""``Content-Length: ²`` (a digit to str.isdigit(), not to HTTP): a 400, not a crash."""

from tests.attacks.serving import TOKEN, Address, answer, connect

ISSUE = "11.14"


def attack(address: Address) -> None:
    conn = connect(address)
    conn.sendall(
        b"POST /v1/audit HTTP/1.1\r\nHost: x\r\n"
        + f"Authorization: Bearer {TOKEN}\r\n".encode()
        + "Content-Length: \u00b2\r\n\r\n{}".encode()
    )
    status, _ = answer(conn)
    conn.close()
    assert status == 400
