"""`auditlake serve` and `auditlake replay` as real processes talking real HTTP(S)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from auditlake.http_api import MAX_BODY_BYTES
from auditlake.landing import decode_lines
from auditlake.stores.local import LocalStore
from tests.helpers import as_row, corpus_path, eventlist_body, forbidden_events

LOG = corpus_path("audit/liggitt__audit2rbac__demo_v1beta1_original.jsonl")


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "auditlake", *args], check=False, capture_output=True, text=True, timeout=120
    )
    # On failure, the command's own stderr (a traceback, a fatal error) is the message.
    assert not check or result.returncode == 0, f"{args[0]} exited {result.returncode}:\n{result.stderr[-4000:]}"
    return result


class Server:
    def __init__(self, lake: Path, token_file: Path, *extra: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "auditlake", "serve", "--lake", str(lake), "--port", "0", "--cluster", "lab",
             "--token-file", str(token_file), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        assert line.startswith("listening on "), self.process.stderr.read() if self.process.stderr else line
        self.url = line.removeprefix("listening on ")
        host, port = self.url.split("://", 1)[1].split("/")[0].rsplit(":", 1)
        self.address = (host, int(port))

    def stop(self) -> str:
        self.process.terminate()
        _, err = self.process.communicate(timeout=30)
        return err


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    return tmp_path / "lake"


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text("alk_serve-test-token\n")
    return path


@pytest.fixture
def server(lake: Path, token_file: Path) -> Iterator[Server]:
    running = Server(lake, token_file)
    yield running
    running.stop()


def landed(lake: Path) -> list[dict[str, Any]]:
    store = LocalStore(lake)
    return [as_row(line) for key in store.list("raw/audit/") for line in decode_lines(store.get(key))]


def test_replay_into_serve_lands_every_event(server: Server, lake: Path, token_file: Path) -> None:
    result = cli("replay", str(LOG), "--url", server.url, "--token-file", str(token_file))
    assert "batches 2, events 757" in result.stderr and "accepted 757" in result.stderr
    records = landed(lake)
    assert len(records) == 757 and {r["cluster"] for r in records} == {"lab"}
    log = server.stop()
    assert log.count(" 200 ") == 2  # one line per batch, no bodies


def test_wrong_token_is_refused(server: Server, tmp_path: Path, lake: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("alk_nope")
    result = cli("replay", str(LOG), "--url", server.url, "--token-file", str(wrong), check=False)
    assert result.returncode == 1 and "401" in result.stderr
    assert landed(lake) == []


def post(url: str, body: bytes, token: str) -> tuple[int, dict[str, Any]]:
    """POST with Python's ordinary HTTP client (urllib): the status and JSON body it receives."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_a_7_mb_post_receives_the_413_and_its_advice(server: Server, token_file: Path, lake: Path) -> None:
    """The sender reads the status although it was still writing when the limit was passed: the
    server reads and discards the body first (no connection reset), and stores nothing."""
    body = eventlist_body(forbidden_events(1))[:-2] + b"," + b" " * (7 * 1024 * 1024) + b"]}"
    status, reply = post(server.url, body, token_file.read_text().strip())
    assert status == 413, reply
    assert f"exceeds the {MAX_BODY_BYTES}-byte limit" in reply["message"]
    assert "--audit-webhook-truncate-max-batch-size" in reply["fix"]
    # The connection was read to its end: the same server answers the next batch at once.
    assert post(server.url, eventlist_body(forbidden_events(2)), token_file.read_text().strip())[0] == 200
    assert len(landed(lake)) == 2


def raw_request(server: Server, head: bytes) -> str:
    with socket.create_connection(server.address, timeout=10) as conn:
        conn.sendall(head)
        chunks = []
        while chunk := conn.recv(65536):  # the server closes the connection after answering
            chunks.append(chunk)
    return b"".join(chunks).decode()


def test_a_body_too_large_to_read_is_refused_unread(server: Server, token_file: Path) -> None:
    token = token_file.read_text().strip().encode()
    reply = raw_request(server, b"POST /v1/audit HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token
                        + b"\r\nContent-Length: 100000000\r\n\r\n")  # fmt: skip
    assert reply.startswith("HTTP/1.1 413") and "audit-webhook-truncate-max-batch-size" in reply


def test_a_malformed_content_length_is_a_400_not_a_crash(server: Server, token_file: Path) -> None:
    reply = raw_request(server, "POST /v1/audit HTTP/1.1\r\nHost: x\r\nContent-Length: \u00b2\r\n\r\n".encode())
    assert reply.startswith("HTTP/1.1 400")
    assert post(server.url, eventlist_body(forbidden_events(1)), token_file.read_text().strip())[0] == 200


def test_sigterm_lets_a_request_in_flight_be_stored_and_answered(lake: Path, token_file: Path) -> None:
    """A batch half sent when serve is told to stop is still read, stored and answered 200; then
    serve exits cleanly."""
    server = Server(lake, token_file)
    body = eventlist_body(forbidden_events(3))
    token = token_file.read_text().strip().encode()
    with socket.create_connection(server.address, timeout=30) as conn:
        conn.sendall(b"POST /v1/audit HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token
                     + f"\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body[:50])  # fmt: skip
        time.sleep(0.5)  # the request is in flight
        server.process.terminate()
        time.sleep(0.5)
        conn.sendall(body[50:])
        reply = conn.recv(65536).decode()
    assert reply.startswith("HTTP/1.1 200"), reply
    assert server.process.wait(timeout=30) == 0
    assert len(landed(lake)) == 3


def test_tls_is_verified(tmp_path: Path, lake: Path, token_file: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file, ca_file = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    ca.cert_pem.write_to_path(str(ca_file))
    server = Server(lake, token_file, "--tls-cert", str(cert_file), "--tls-key", str(key_file))
    try:
        assert server.url.startswith("https://")
        untrusted = cli("replay", str(LOG), "--url", server.url, "--token-file", str(token_file),
                        "--attempts", "1", check=False)  # fmt: skip
        assert untrusted.returncode == 1 and "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr
        trusted = cli(
            "replay", str(LOG), "--url", server.url, "--token-file", str(token_file), "--ca-file", str(ca_file)
        )
        assert "accepted 757" in trusted.stderr
    finally:
        server.stop()


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    lake = tmp_path / "demo"
    result = cli("demo", "--lake", str(lake), "--minutes", "5", "--rate", "20")
    assert "planted secret values in the lake: none" in result.stdout
    assert "403 responses" in result.stdout and "quarantined items" in result.stdout
    # The planted burst (15 denials within a minute, across two clock minutes) pages once, as serve prints it.
    assert "ALERT auditlake: system:serviceaccount:default:build-robot denied" in " ".join(result.stdout.split())
    # The planted findings at or above --alert-level high page too, each once (the seed is fixed).
    assert "ALERT auditlake high: ConfigMap carrying credentials by system:serviceaccount:ci:deployer" in " ".join(
        result.stdout.split()
    )
    assert "pages: 7, kept in alerts/" in result.stdout
    kept = [json.loads(line) for day in (lake / "alerts").iterdir() for line in day.read_text().splitlines()]
    [burst] = [alert for alert in kept if alert["rule"] == "forbidden"]
    assert burst["identity"] == "system:serviceaccount:default:build-robot" and burst["count"] >= 10
    assert sorted(alert["level"] for alert in kept if alert is not burst) == ["high"] * 6
    # The named queries answer the planted incidents from the compacted archive.
    answers = result.stdout.split("$ auditlake query ")[1:]
    assert [a.split()[0] for a in answers] == ["secret_changes", "forbidden_bursts", "pod_exec",
                                              "pod_evictions_deletions", "node_membership"]  # fmt: skip
    assert "mallory@example.com" in answers[0] and "delete" in answers[0]
    assert "build-robot" in answers[1] and "bob@example.com" in answers[2] and "carol@example.com" in answers[3]
    assert "RegisteredNode" in answers[4] and list((lake / "archive" / "audit").glob("dt=*/hour=*/*.parquet"))
    records = landed(lake)
    assert any(r["verb"] == "delete" and r["object_name"] == "db-pass" for r in records)
    # The built-in rules, evaluated by serve as events arrived, found what only they see: the demo
    # shows them by rule, and the planted AWS key (in a ConfigMap body never stored) is in no object.
    shown = " ".join(result.stdout.split("$ auditlake findings ")[1].split())
    assert shown.startswith("--lake") and "findings: " in shown
    for planted in ("default/debug-root", "dave-admin", "prod/billing-env", "bob@example.com"):
        assert planted in shown, planted
    # A second run replaces the demo lake; a directory that is not a demo lake is never deleted.
    cli("demo", "--lake", str(lake), "--minutes", "1")
    other = tmp_path / "precious"
    other.mkdir()
    (other / "keep").write_text("x")
    refused = cli("demo", "--lake", str(other), check=False)
    assert refused.returncode != 0 and (other / "keep").exists()


def test_serve_prints_403_bursts_and_keeps_them_in_the_lake(tmp_path: Path, lake: Path, token_file: Path) -> None:
    burst = tmp_path / "burst.jsonl"
    burst.write_text("".join(json.dumps(e) + "\n" for e in forbidden_events(12)))
    server = Server(lake, token_file, "--alert-threshold", "10")
    try:
        cli("replay", str(burst), "--url", server.url, "--token-file", str(token_file))
    finally:
        log = server.stop()
    assert log.count("ALERT") == 1 and "mallory@example.com denied 12x" in log
    [day] = (lake / "alerts").iterdir()
    [alert] = [json.loads(line) for line in day.read_text().splitlines()]
    assert (alert["cluster"], alert["count"], alert["window_start"]) == ("lab", 12, "2026-11-21T10:05:00Z")


def test_a_port_in_use_out_of_range_or_a_bad_certificate_is_one_line_not_a_traceback(
    tmp_path: Path, lake: Path, token_file: Path
) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = str(taken.getsockname()[1])
        for extra, code, message in (
            (["--port", port], 1,
             f"error: port {port} is in use on 127.0.0.1 (pick another with --port; 0 picks a free one)"),
            (["--port", "70000"], 2,
             "error: Invalid value for '--port': 70000 is not in the range 0<=x<=65535. (see auditlake serve --help)"),
            (["--port", "0", "--tls-cert", str(bad), "--tls-key", str(bad)], 1,
             f"error: --tls-cert {bad} is not a PEM certificate (give a PEM certificate and its unencrypted PEM key, "
             "e.g. from mkcert or openssl req -x509 -nodes)"),
            (["--host", "0.0.0.0"], 1,
             "error: --host 0.0.0.0 without TLS sends the cluster's token in clear (add --tls-cert/--tls-key: "
             "auditlake cluster add NAME --lake L --kind-config FILE writes them)"),
        ):  # fmt: skip
            result = cli("serve", "--lake", str(lake), "--cluster", "lab", "--token-file", str(token_file), *extra,
                         check=False)  # fmt: skip
            assert result.returncode == code and "Traceback" not in result.stderr
            assert result.stderr.strip().splitlines()[-1] == message


def test_serve_over_tls_stops_at_once_with_an_idle_keep_alive_connection(
    tmp_path: Path, lake: Path, token_file: Path
) -> None:
    """kube-apiserver keeps its webhook connection: over TLS, closing it politely waited 30 s for the
    client's close_notify before serve could exit (found by helper "kind"; measured 30.2 s)."""
    import time

    import urllib3

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file, ca_file = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    ca.cert_pem.write_to_path(str(ca_file))
    server = Server(lake, token_file, "--tls-cert", str(cert_file), "--tls-key", str(key_file))
    pool = urllib3.PoolManager(ca_certs=str(ca_file))
    try:
        body = b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[]}'
        answer = pool.request("POST", server.url, body=body,
                              headers={"Authorization": f"Bearer {token_file.read_text().strip()}"})  # fmt: skip
        assert answer.status == 200
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 10
    finally:
        pool.clear()
        if server.process.poll() is None:
            server.process.kill()
