"""Every failure issue 17 names ends in ONE line, ``error: <what> (<the fix>)``, a non-zero exit and no
traceback: AWS without a region or credentials, read commands on a path that is not a lake, a lake
that cannot be made or written, ``replay`` without a scheme / with nothing listening / answered 404,
``serve`` on a port in use, out of range, or with a bad TLS file; an unknown failure still one line
(AUDITLAKE_DEBUG=1 shows the traceback). Integration: replay and serve use real sockets, and the
permission case runs ``auditlake`` as an unprivileged user when the tests run as root.
"""

from __future__ import annotations

import gzip
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from click.testing import CliRunner, Result

from auditlake.cli import main
from auditlake.local_lake import LocalLake

AUDIT_LOG = Path(__file__).parents[1] / "fixtures" / "hunt" / "audit.jsonl"  # 13 audit events
NO_LAKE_FIX = "(create one with auditlake ingest, serve or demo, or check the path)"
NO_REGION = "error: no AWS region (pass --region or set AWS_REGION)"
NO_CREDENTIALS = (
    "error: no AWS credentials (set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; "
    "or run aws configure / aws sso login)"
)
# Nothing of the machine's AWS setup reaches the SDK: no region, no keys, no profile, no instance role.
NO_AWS: dict[str, str | None] = {
    name: None
    for name in (
        "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_ENDPOINT_URL",
        "AUDITLAKE_LAKE", "AUDITLAKE_DEBUG",
    )
} | {"AWS_CONFIG_FILE": "/nonexistent/aws-config", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
     "AWS_EC2_METADATA_DISABLED": "true"}  # fmt: skip


def run(*args: str, env: dict[str, str | None] | None = None) -> Result:
    return CliRunner(mix_stderr=False).invoke(main, list(args), env={"AUDITLAKE_DEBUG": None, **(env or {})})


def one_line_error(result: Result) -> str:
    """The failure's single stderr line; asserts the exit, the one line and that no traceback shows."""
    assert result.exit_code not in (0, None), result.output
    assert "Traceback" not in result.stderr + result.stdout
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


# ------------------------------------------------------------------ AWS without a region or credentials

AWS_COMMANDS = [
    ["verify", "--stack", "s"],
    ["findings", "--stack", "s"],
    ["hunt", "--stack", "s"],
    ["rules", "push", "--remove", "--stack", "s"],
    ["doctor", "--stack", "s"],
    ["query", "pod_exec", "--athena", "--stack", "s"],
    ["backfill", "--eks-cluster", "e", "--since", "1d", "--stack", "s"],
    ["quarantine", "list", "--stack", "s"],
    ["cluster", "add", "c1", "--stack", "s"],
]


@pytest.mark.parametrize("command", AWS_COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_an_aws_command_without_a_region_says_how_to_give_one(command: list[str]) -> None:
    assert one_line_error(run(*command, env=NO_AWS)) == NO_REGION


@pytest.mark.parametrize("command", AWS_COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_an_aws_command_without_credentials_says_where_they_come_from(command: list[str]) -> None:
    assert one_line_error(run(*command, "--region", "eu-west-1", env=NO_AWS)) == NO_CREDENTIALS


@pytest.mark.parametrize(
    "command",
    [["verify"], ["findings"], ["hunt"], ["quarantine", "list"], ["query", "pod_exec", "--athena"]],
    ids=" ".join,
)
def test_an_aws_command_on_a_stack_that_does_not_exist_says_so(command: list[str], moto_endpoint: str) -> None:
    result = run(*command, "--stack", "no-such-stack", "--region", "us-east-1")
    assert one_line_error(result) == (
        "error: no stack no-such-stack in this account and region (check --stack and --region)"
    )


# ------------------------------------------------------------------ lakes: read commands never make one

READ_COMMANDS = [["compact"], ["digest"], ["verify"], ["findings"], ["hunt"], ["query", "pod_exec"], ["summary"],
                 ["quarantine", "list"]]  # fmt: skip


@pytest.mark.parametrize("command", READ_COMMANDS, ids=" ".join)
def test_a_read_command_on_a_typo_says_no_lake_and_creates_nothing(command: list[str], tmp_path: Path) -> None:
    typo = tmp_path / "lkae"
    assert one_line_error(run(*command, "--lake", str(typo))) == f"error: no lake at {typo} {NO_LAKE_FIX}"
    assert not typo.exists()
    empty = tmp_path / "empty"  # an existing directory that is not a lake is no lake either
    empty.mkdir()
    assert one_line_error(run(*command, "--lake", str(empty))) == f"error: no lake at {empty} {NO_LAKE_FIX}"
    assert list(empty.iterdir()) == []  # digest made no signing key there


def test_report_on_a_typo_says_no_lake_and_writes_nothing(tmp_path: Path) -> None:
    typo, out = tmp_path / "lkae", tmp_path / "report.html"
    result = run("report", "--lake", str(typo), "--out", str(out))
    assert one_line_error(result) == f"error: no lake at {typo} {NO_LAKE_FIX}"
    assert not typo.exists() and not out.exists()


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    lake = tmp_path / "lake"
    assert run("ingest", str(AUDIT_LOG), "--cluster", "c1", "--lake", str(lake)).exit_code == 0
    return lake


def test_ingest_marks_the_lake_it_makes_and_reads_accept_it(lake: Path) -> None:
    assert LocalLake(lake).marker_file.is_file()
    compacted = run("compact", "--lake", str(lake))
    assert compacted.exit_code == 0 and "rows archived " in compacted.stderr
    again = run("compact", "--lake", str(lake))
    assert again.exit_code == 0 and again.stderr.startswith("nothing new: all ")


def test_a_lake_made_before_the_marker_is_recognised_by_its_layout(lake: Path) -> None:
    LocalLake(lake).marker_file.unlink()  # as an earlier version left it: raw/, state/, alerts/
    assert run("compact", "--lake", str(lake)).exit_code == 0


def test_auditlake_lake_is_every_lake_options_default(lake: Path, tmp_path: Path) -> None:
    assert "AUDITLAKE_LAKE" in run("compact", "--help").stdout
    assert run("compact", env={"AUDITLAKE_LAKE": str(lake)}).exit_code == 0
    typo = tmp_path / "nope"
    assert (
        one_line_error(run("compact", env={"AUDITLAKE_LAKE": str(typo)})) == f"error: no lake at {typo} {NO_LAKE_FIX}"
    )
    # With --stack, a lake that only comes from the environment is not "both --lake and --stack".
    stacked = run("verify", "--stack", "s", env={**NO_AWS, "AUDITLAKE_LAKE": str(lake)})
    assert one_line_error(stacked) == NO_REGION
    both = run("verify", "--stack", "s", "--lake", str(lake), env=NO_AWS)
    assert one_line_error(both) == "error: give exactly one of --lake, --stack (see auditlake verify --help)"


# ------------------------------------------------------------------ a lake that cannot be made or written


def test_ingest_into_a_path_under_a_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    target = tmp_path / "file" / "lake"
    result = run("ingest", str(AUDIT_LOG), "--cluster", "c1", "--lake", str(target))
    assert one_line_error(result) == (
        f"error: cannot make or write the lake at {target}: not a directory "
        "(pick a directory you can write, or fix its permissions)"
    )


@pytest.fixture
def unwritable() -> Iterator[Path]:
    """A directory others can enter but nobody but root can write (the test then runs as nobody)."""
    base = Path(tempfile.mkdtemp(prefix="auditlake-ro-"))
    base.chmod(0o755)
    shutil.copy(AUDIT_LOG, base / "audit.jsonl")
    (base / "audit.jsonl").chmod(0o644)
    (base / "ro").mkdir()
    LocalLake(base / "ro" / "lake").create()
    (base / "ro" / "lake").chmod(0o555)
    (base / "ro").chmod(0o555)
    yield base
    (base / "ro").chmod(0o755)
    (base / "ro" / "lake").chmod(0o755)
    shutil.rmtree(base)


@pytest.mark.parametrize("name", ["new", "lake"], ids=["a new lake", "an existing lake"])
def test_ingest_where_it_may_not_write_is_one_line(unwritable: Path, name: str) -> None:
    target = unwritable / "ro" / name
    # Root writes anywhere: run as nobody then (setpriv, util-linux: drops every capability).
    unprivileged = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []
    done = subprocess.run(
        [*unprivileged, sys.executable, "-m", "auditlake", "ingest", str(unwritable / "audit.jsonl"),
         "--cluster", "c1", "--lake", str(target)],
        capture_output=True, text=True, timeout=120, check=False, env={**os.environ, "AUDITLAKE_DEBUG": ""},
    )  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [
        f"error: cannot make or write the lake at {target}: permission denied "
        "(pick a directory you can write, or fix its permissions)"
    ]


# ------------------------------------------------------------------ replay


@pytest.fixture
def token(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text("s3cr3t-token\n")
    return path


def test_replay_url_without_a_scheme(token: Path) -> None:
    result = run("replay", str(AUDIT_LOG), "--url", "127.0.0.1:8098", "--token-file", str(token))
    assert result.exit_code == 2
    assert one_line_error(result) == (
        "error: Invalid value for '--url': 127.0.0.1:8098 is not an http(s) URL "
        "(give the scheme, e.g. http://127.0.0.1:8098) (see auditlake replay --help)"
    )


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_replay_to_nothing_listening_names_the_cause(token: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1/audit"
    result = run("replay", str(AUDIT_LOG), "--url", url, "--token-file", str(token), "--initial-backoff", "0.01")
    assert one_line_error(result) == (
        f"error: cannot connect to {url}: connection refused after 5 attempts (is auditlake serve running there?)"
    )


class Recorder(http.server.BaseHTTPRequestHandler):
    """Answers every POST with the server's ``status`` and records what it got."""

    def do_POST(self) -> None:  # http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        server: Any = self.server
        server.posts.append(json.loads(body))
        status = server.status
        reply = json.dumps(
            {"accepted": len(server.posts[-1]["items"])} if status == 200 else {"message": "no such path"}
        )
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(reply.encode())

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[Any]:
    server: Any = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    server.posts, server.status = [], 200
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_replay_answered_404_says_so_once_without_retrying(webhook: Any, token: Path) -> None:
    webhook.status = 404
    url = f"http://127.0.0.1:{webhook.server_address[1]}/wrong"
    result = run("replay", str(AUDIT_LOG), "--url", url, "--token-file", str(token), "--initial-backoff", "0.01")
    assert one_line_error(result) == (
        f"error: {url} answered 404 Not Found: no such path "
        "(check the path in --url: auditlake serve takes POST /v1/audit)"
    )
    assert len(webhook.posts) == 1  # not retried


def test_replay_reads_a_gzip_audit_log(webhook: Any, token: Path, tmp_path: Path) -> None:
    packed = tmp_path / "audit.log.gz"  # as kube-apiserver --audit-log-compress writes them
    packed.write_bytes(gzip.compress(AUDIT_LOG.read_bytes()))
    url = f"http://127.0.0.1:{webhook.server_address[1]}/v1/audit"
    result = run("replay", str(packed), "--url", url, "--token-file", str(token))
    assert result.exit_code == 0, result.stderr
    assert sum(len(post["items"]) for post in webhook.posts) == 13 and "events 13" in result.stderr


# ------------------------------------------------------------------ serve


def serve(lake: Path, token: Path, *args: str) -> Result:
    return run("serve", "--lake", str(lake), "--cluster", "c1", "--token-file", str(token), *args)


def test_serve_on_a_port_in_use_is_one_line(tmp_path: Path, token: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = one_line_error(serve(tmp_path / "lake", token, "--port", str(port)))
    assert line == f"error: port {port} is in use on 127.0.0.1 (pick another with --port; 0 picks a free one)"


def test_serve_on_a_port_out_of_range_is_one_line(tmp_path: Path, token: Path) -> None:
    assert one_line_error(serve(tmp_path / "lake", token, "--port", "99999")) == (
        "error: Invalid value for '--port': 99999 is not in the range 0<=x<=65535. (see auditlake serve --help)"
    )


def test_serve_on_every_address_without_tls_is_refused(tmp_path: Path, token: Path) -> None:
    assert one_line_error(serve(tmp_path / "lake", token, "--host", "0.0.0.0")) == (
        "error: --host 0.0.0.0 without TLS sends the cluster's token in clear (add --tls-cert/--tls-key: "
        "auditlake cluster add NAME --lake L --kind-config FILE writes them)"
    )


@pytest.fixture
def tls_files(tmp_path: Path) -> dict[str, Path]:
    ca = trustme.CA()
    cert, other = ca.issue_cert("127.0.0.1"), ca.issue_cert("127.0.0.1")
    files = {name: tmp_path / f"{name}.pem" for name in ("cert", "key", "other_key", "garbage")}
    cert.cert_chain_pems[0].write_to_path(str(files["cert"]))
    cert.private_key_pem.write_to_path(str(files["key"]))
    other.private_key_pem.write_to_path(str(files["other_key"]))
    files["garbage"].write_text("not a certificate\n")
    return files


PEM_FIX = "(give a PEM certificate and its unencrypted PEM key, e.g. from mkcert or openssl req -x509 -nodes)"


@pytest.mark.parametrize(
    ("cert", "key", "message"),
    [
        ("garbage", "key", "error: --tls-cert {garbage} is not a PEM certificate " + PEM_FIX),
        ("cert", "garbage", "error: --tls-key {garbage} is not a PEM private key " + PEM_FIX),
        ("cert", "other_key", "error: --tls-key {other_key} does not belong to --tls-cert {cert} "
                              "(give the key the certificate was made for)"),
    ],
    ids=["cert not PEM", "key not PEM", "key of another cert"],
)  # fmt: skip
def test_serve_with_a_bad_tls_cert_or_key_is_one_line(
    tmp_path: Path, token: Path, tls_files: dict[str, Path], cert: str, key: str, message: str
) -> None:
    result = serve(tmp_path / "lake", token, "--port", "0", "--tls-cert", str(tls_files[cert]),
                   "--tls-key", str(tls_files[key]))  # fmt: skip
    assert one_line_error(result) == message.format(**{name: str(path) for name, path in tls_files.items()})


# ------------------------------------------------------------------ queries, quarantine, demo (other helpers' lines)


def test_query_failures_are_one_line(lake: Path) -> None:
    assert run("compact", "--lake", str(lake)).exit_code == 0
    reversed_window = run("query", "pod_exec", "--lake", str(lake), "--param", "since=2021-01-01",
                          "--param", "until=2020-01-01")  # fmt: skip
    assert one_line_error(reversed_window) == (
        "error: since 2021-01-01T00:00:00.000Z is after until 2020-01-01T00:00:00.000Z "
        "(swap them, or give since=7d for the last 7 days)"
    )
    unknown_param = run("query", "pod_exec", "--lake", str(lake), "--param", "sinc=1d")
    assert one_line_error(unknown_param) == (
        "error: pod_exec has no parameter 'sinc' (did you mean since? it takes: since, until, cluster)"
    )
    unknown_column = one_line_error(run("query", "--sql", "SELECT usr FROM audit", "--lake", str(lake)))
    assert unknown_column.startswith("error: ") and '"usr"' in unknown_column
    assert unknown_column.endswith("(see the columns: auditlake query --sql 'DESCRIBE audit', or events, findings)")


def test_quarantine_show_of_an_unknown_id_is_one_line(lake: Path) -> None:
    assert one_line_error(run("quarantine", "show", "abcd", "--lake", str(lake))) == (
        "error: no quarantine entry abcd (auditlake quarantine list --all shows the ids)"
    )


def test_demo_refuses_a_lake_it_did_not_make(lake: Path) -> None:
    assert one_line_error(run("demo", "--lake", str(lake))) == (
        f"error: {lake} exists and is not a demo lake (choose another --lake)"
    )


# ------------------------------------------------------------------ poll


def kubeconfig(path: Path, server: str) -> Path:
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: k\n"
        f"clusters: [{{name: k, cluster: {{server: '{server}'}}}}]\n"
        "users: [{name: u, user: {token: abc}}]\ncontexts: [{name: k, context: {cluster: k, user: u}}]\n"
    )
    return path


def test_poll_with_a_kubeconfig_that_does_not_load_leaves_no_lease_held(tmp_path: Path) -> None:
    broken = tmp_path / "kubeconfig"
    broken.write_text("clusters: [\n")
    for _ in range(2):  # the second run is told the same, not "another auditlake poll is running"
        result = run("poll", "--kubeconfig", str(broken), "--cluster", "c1", "--lake", str(tmp_path / "lake"))
        assert one_line_error(result) == (
            f"error: {broken}, line 2: not valid YAML: expected the node content, but found '<stream end>' "
            "(fix the file, or pass another)"
        )
    config = kubeconfig(tmp_path / "good", "https://127.0.0.1:9")
    no_context = run("poll", "--kubeconfig", str(config), "--context", "nosuch", "--cluster", "c1",
                     "--lake", str(tmp_path / "lake"))  # fmt: skip
    assert one_line_error(no_context) == (
        f"error: kubeconfig {config}: Invalid kube-config file. Expected object with name nosuch in {config}/contexts "
        f"list (kubectl config get-contexts --kubeconfig {config} lists its contexts)"
    )


def test_poll_of_a_cluster_not_running_says_so(tmp_path: Path) -> None:
    server = f"https://127.0.0.1:{closed_port()}"
    config = kubeconfig(tmp_path / "kubeconfig", server)
    result = run("poll", "--kubeconfig", str(config), "--cluster", "c1", "--lake", str(tmp_path / "lake"))
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"error: cannot reach the cluster's API server {server}: connection refused (is the cluster running? "
        "kubectl cluster-info)"
    )


# ------------------------------------------------------------------ usage errors, unknown failures, --debug


def test_a_usage_error_is_one_line_naming_help(lake: Path) -> None:
    result = run("hunt", "--lake", str(lake), "--since", "tomorrow-ish")
    assert result.exit_code == 2
    assert one_line_error(result) == (
        "error: Invalid value for --since: not an ISO 8601 time or a duration like 90d: 'tomorrow-ish' "
        "(see auditlake hunt --help)"
    )


def test_an_unknown_failure_is_one_line_and_debug_shows_the_traceback(
    lake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("disk\nexploded")

    monkeypatch.setattr("auditlake.archive.hourly.compact_pending", broken)
    assert one_line_error(run("compact", "--lake", str(lake))) == (
        "error: RuntimeError: disk exploded (run with AUDITLAKE_DEBUG=1 for the traceback, and please report it)"
    )
    for debug in (run("--debug", "compact", "--lake", str(lake)), run("compact", "--lake", str(lake),
                                                                      env={"AUDITLAKE_DEBUG": "1"})):  # fmt: skip
        assert isinstance(debug.exception, RuntimeError)  # let through: click's runner holds its traceback
