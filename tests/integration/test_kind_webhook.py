"""The local-cluster recipe without docker: what `cluster add --kind-config` writes and prints works.

- The webhook kubeconfig it writes is read by the OFFICIAL Kubernetes client (as kube-apiserver's
  webhook client reads it: server, certificate-authority-data, token), which POSTs an audit EventList
  over TLS to `auditlake serve` started with the exact command `cluster add` printed; the events land
  and `compact` + `query` show them. Without the CA, or with another token, nothing lands.
- `auditlake poll --context kind-kind` with a kubeconfig shaped as kind writes it (client certificate
  and key, no token, another current-context) reads a cluster that accepts only that certificate.
"""

from __future__ import annotations

import base64
import json
import shlex
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
import urllib3
import yaml
from click.testing import CliRunner
from kubernetes import config as kube_config
from kubernetes.client.exceptions import ApiException

from auditlake.cli import main
from auditlake.query.named import LocalEngine
from tests.fakes.kube import FakeKube
from tests.helpers import corpus_kube_events, eventlist_body, forbidden_events


def run(*args: str) -> Any:
    return CliRunner(mix_stderr=False).invoke(main, list(args), catch_exceptions=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Serve:
    """`auditlake serve` run from the command line `cluster add` printed."""

    def __init__(self, printed: str) -> None:
        argv = shlex.split(printed)  # stdout: the serve command line alone, shell-quoted
        assert argv[:2] == ["auditlake", "serve"], printed
        self.process = subprocess.Popen(
            [sys.executable, "-m", "auditlake", *argv[1:]], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        first = self.process.stdout.readline().strip()
        assert first.startswith("listening on https://"), self.process.stderr.read() if self.process.stderr else first
        self.url = first.removeprefix("listening on ")

    def stop(self) -> str:
        self.process.terminate()
        # The official client keeps its TLS connection open: serve still stops at once (it drops idle ones).
        return self.process.communicate(timeout=10)[1]


@pytest.fixture
def connected(tmp_path: Path) -> Iterator[tuple[Path, Path, Serve]]:
    """A lake with cluster 'kind' added for a kind config (webhook host 127.0.0.1), and serve running."""
    lake = tmp_path / "lake with space"  # the printed command quotes its paths
    port = free_port()
    added = run("cluster", "add", "kind", "--lake", str(lake), "--kind-config", str(tmp_path / "kind.yaml"),
                "--webhook-host", "127.0.0.1", "--webhook-port", str(port))  # fmt: skip
    assert added.exit_code == 0, added.stderr
    serve = Serve(added.stdout)
    try:
        assert serve.url == f"https://127.0.0.1:{port}/v1/audit"
        yield lake, (lake / "clusters" / "kind" / "webhook.kubeconfig"), serve
    finally:
        serve.stop()


def post_eventlist(kubeconfig: Path, items: list[dict[str, Any]]) -> int:
    """POST an audit EventList with the official client configured from the webhook kubeconfig, as the
    API server's webhook backend does (its server URL is the endpoint; bearer token; CA from the file)."""
    client = kube_config.new_client_from_config(config_file=str(kubeconfig))
    client.configuration.retries = False
    # The client's own request path: the server URL, the bearer token from its auth settings, TLS from
    # the configuration (the CA file it wrote from certificate-authority-data).
    method, url, headers, body, _ = client.param_serialize(
        "POST", "", header_params={"Content-Type": "application/json", "Accept": "application/json"},
        body=json.loads(eventlist_body(items)), auth_settings=["BearerToken"],
    )  # fmt: skip
    assert headers["authorization"].startswith("Bearer alk_") or "alk_" not in str(headers)
    response = client.call_api(method, url, header_params=headers, body=body)
    response.read()
    if not 200 <= response.status < 300:
        raise ApiException(http_resp=response)
    return int(response.status)


def test_the_generated_kubeconfig_sends_audit_events_to_serve_over_tls(
    connected: tuple[Path, Path, Serve], tmp_path: Path
) -> None:
    lake, kubeconfig, _serve = connected
    assert post_eventlist(kubeconfig, forbidden_events(3)) == 200
    assert run("compact", "--lake", str(lake)).exit_code == 0
    rows = LocalEngine(lake / "archive").run("SELECT cluster, count(*) FROM audit GROUP BY cluster").rows
    assert rows == [("kind", 3)]

    # TLS is verified: the same kubeconfig without its CA is refused before anything is sent.
    document = yaml.safe_load(kubeconfig.read_text())
    del document["clusters"][0]["cluster"]["certificate-authority-data"]
    no_ca = tmp_path / "no-ca.kubeconfig"
    no_ca.write_text(yaml.safe_dump(document))
    with pytest.raises(urllib3.exceptions.MaxRetryError) as refused:
        post_eventlist(no_ca, forbidden_events(1))
    assert isinstance(refused.value.reason, urllib3.exceptions.SSLError)
    # Another CA (a man in the middle's) is refused too.
    document["clusters"][0]["cluster"]["certificate-authority-data"] = base64.b64encode(
        trustme.CA().cert_pem.bytes()
    ).decode()
    other_ca = tmp_path / "other-ca.kubeconfig"
    other_ca.write_text(yaml.safe_dump(document))
    with pytest.raises(urllib3.exceptions.MaxRetryError):
        post_eventlist(other_ca, forbidden_events(1))
    # And another cluster's token is 401.
    document = yaml.safe_load(kubeconfig.read_text())
    document["users"][0]["user"]["token"] = "alk_not-this-cluster"  # a wrong token on purpose
    wrong = tmp_path / "wrong-token.kubeconfig"
    wrong.write_text(yaml.safe_dump(document))
    with pytest.raises(ApiException) as unauthorised:
        post_eventlist(wrong, forbidden_events(1))
    assert unauthorised.value.status == 401
    assert run("compact", "--lake", str(lake)).exit_code == 0
    assert LocalEngine(lake / "archive").run("SELECT count(*) FROM audit").rows == [(3,)]


class ClientCertKube(FakeKube):
    """The fake API server, accepting only TLS clients with a certificate of its CA (as kind's admin
    kubeconfig authenticates), and then no bearer token needed."""

    client_certificates = True


def test_poll_context_kind_kind_uses_the_client_certificate_kind_writes(tmp_path: Path) -> None:
    ca = trustme.CA()
    kube = ClientCertKube(ca)
    kube.start()
    try:
        for event in corpus_kube_events()[:5]:
            kube.add(event)
        admin = ca.issue_cert("kubernetes-admin")

        def b64(data: bytes) -> str:
            return base64.b64encode(data).decode()

        kubeconfig = tmp_path / "config"
        kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "elsewhere",
            "clusters": [{"name": "kind-kind", "cluster": {"server": kube.url,
                                                           "certificate-authority-data": b64(ca.cert_pem.bytes())}},
                         {"name": "elsewhere", "cluster": {"server": "https://127.0.0.1:1"}}],
            "contexts": [{"name": "kind-kind", "context": {"cluster": "kind-kind", "user": "kind-kind"}},
                         {"name": "elsewhere", "context": {"cluster": "elsewhere", "user": "kind-kind"}}],
            "users": [{"name": "kind-kind", "user": {
                "client-certificate-data": b64(admin.cert_chain_pems[0].bytes()),
                "client-key-data": b64(admin.private_key_pem.bytes())}}],
        }))  # fmt: skip
        lake = tmp_path / "lake"
        result = run("poll", "--kubeconfig", str(kubeconfig), "--context", "kind-kind", "--cluster", "kind",
                     "--lake", str(lake), "--timeout", "3")  # fmt: skip
        assert result.exit_code == 0, result.stderr
        assert "listed 5" in result.stderr and "emitted 5" in result.stderr
        assert kube.unauthorized == 0
    finally:
        kube.stop()
