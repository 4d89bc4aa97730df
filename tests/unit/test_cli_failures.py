"""The CLI's one-line failures, piece by piece (no sockets): render.explain and its AWS, path, listen
and TLS lines; what marks a lake; the --lake option's variants and $AUDITLAKE_LAKE; replay's retry
rules and its URL checks; shell completion of query names and parameters; piped output unwrapped.
The walk through the real commands is tests/integration/test_cli_errors.py.
"""

from __future__ import annotations

import errno
import socket
import ssl
from pathlib import Path
from typing import Any

import click
import pytest
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ProfileNotFound,
)
from click.testing import CliRunner

from auditlake.cli import main
from auditlake.cli.options import complete_query_name, complete_query_param, lake_option
from auditlake.cli.render import explain, listen_failure, stdout_console, tls_failure
from auditlake.demo.replay import Replayer, ReplayError, shown, url_problem
from auditlake.local_lake import LocalLake


def refused(code: str, operation: str = "GetObject", message: str = "") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


# ------------------------------------------------------------------ explain


def test_aws_failures_name_their_fix() -> None:
    assert explain(NoRegionError()) == "no AWS region (pass --region or set AWS_REGION)"
    assert explain(NoCredentialsError()) == (
        "no AWS credentials (set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; "
        "or run aws configure / aws sso login)"
    )
    assert explain(ProfileNotFound(profile="prod")) == (
        "The config profile (prod) could not be found "
        "(aws configure list-profiles shows the profiles; check AWS_PROFILE or --profile)"
    )
    assert explain(EndpointConnectionError(endpoint_url="https://s3.eu-west-9.amazonaws.com/")) == (
        'cannot reach AWS: Could not connect to the endpoint URL: "https://s3.eu-west-9.amazonaws.com/" '
        "(check the network, a proxy, and --region)"
    )


def test_refused_aws_calls_say_what_to_do() -> None:
    missing = refused("ValidationError", "DescribeStacks", "Stack with id prod-lake does not exist")
    assert explain(missing) == "no stack prod-lake in this account and region (check --stack and --region)"
    assert (
        explain(refused("ExpiredToken"))
        == "the AWS credentials have expired (refresh them: aws sso login, or new keys)"
    )
    assert explain(refused("AccessDenied", message="not allowed")) == (
        "AWS GetObject refused: AccessDenied (the credentials in use lack this permission; "
        "see the README's deployer and reader IAM)"
    )
    assert explain(refused("SlowDown", message="Please\nreduce")) == "AWS GetObject failed: SlowDown: Please reduce"


def test_path_failures_name_the_path() -> None:
    denied = PermissionError(errno.EACCES, "Permission denied", "/srv/lake/raw")
    assert explain(denied) == "permission denied: /srv/lake/raw (pick a path you can write, or fix its permissions)"
    assert explain(OSError(errno.EROFS, "Read-only file system", "/mnt/ro")) == (
        "read-only file system: /mnt/ro (pick a writable path)"
    )
    assert explain(OSError(errno.ENOSPC, "No space left on device", "/srv/lake/archive/x.parquet")) == (
        "no space left on the device of /srv/lake/archive/x.parquet (free some, or pick another path)"
    )


def test_what_it_does_not_know_is_none() -> None:
    assert explain(RuntimeError("boom")) is None
    assert explain(KeyError("x")) is None


def test_listen_failures() -> None:
    in_use = OSError(errno.EADDRINUSE, "Address already in use")
    assert listen_failure("127.0.0.1", 8443, in_use) == (
        "port 8443 is in use on 127.0.0.1 (pick another with --port; 0 picks a free one)"
    )
    assert listen_failure("0.0.0.0", 443, OSError(errno.EACCES, "Permission denied")) == (
        "port 443 needs privileges on 0.0.0.0 (pick one above 1023 with --port)"
    )
    assert listen_failure("10.9.9.9", 8080, OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address")) == (
        "10.9.9.9 is not an address of this machine (use --host 127.0.0.1, or 0.0.0.0 for all)"
    )
    unresolved = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    assert listen_failure("no-such-host", 8080, unresolved) == (
        "cannot resolve --host no-such-host: Name or service not known (give an IP address or a resolvable name)"
    )


def test_an_encrypted_tls_key_is_named(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    key.write_text("-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n")
    problem = ssl.SSLError(9, "[SSL] PEM lib (_ssl.c:3905)")
    assert tls_failure(problem, str(cert), str(key)) == (
        f"--tls-key {key} is encrypted (decrypt it: openssl pkey -in KEY -out KEY.plain)"
    )


# ------------------------------------------------------------------ lakes


def test_what_marks_a_lake(tmp_path: Path) -> None:
    assert not LocalLake(tmp_path / "missing").is_lake()
    assert not LocalLake(tmp_path).is_lake()  # an empty directory
    (tmp_path / "notes.txt").write_text("x")
    assert not LocalLake(tmp_path).is_lake()  # a directory of something else
    made = LocalLake(tmp_path / "a" / "b")
    made.create()
    made.create()  # idempotent
    assert made.is_lake() and made.marker_file.is_file() and list(made.root.iterdir()) == [made.marker_file]
    old = tmp_path / "old"
    (old / "archive").mkdir(parents=True)  # an earlier version's lake: recognised by its layout
    assert LocalLake(old).is_lake()


@click.command()
@lake_option(create=False, required=False)
@click.option("--stack")
def reader(lake: Path | None, stack: str | None) -> None:
    click.echo(f"lake={lake} stack={stack}")


@click.command()
@lake_option
def maker(lake: Path) -> None:
    click.echo(f"made={LocalLake(lake).is_lake()}")


def test_a_read_option_refuses_what_is_not_a_lake_and_creates_nothing(tmp_path: Path) -> None:
    result = CliRunner(mix_stderr=False).invoke(reader, ["--lake", str(tmp_path / "typo")])
    assert result.exit_code == 1 and not (tmp_path / "typo").exists()
    assert result.stderr == (
        f"error: no lake at {tmp_path / 'typo'} (create one with auditlake ingest, serve or demo, or check the path)\n"
    )


def test_a_creating_option_makes_the_lake_only_once_the_command_line_parsed(tmp_path: Path) -> None:
    target = tmp_path / "new"
    bad = CliRunner(mix_stderr=False).invoke(maker, ["--lake", str(target), "--nope"])
    assert bad.exit_code == 2 and not target.exists()
    good = CliRunner(mix_stderr=False).invoke(maker, ["--lake", str(target)])
    assert good.exit_code == 0 and good.stdout == "made=True\n"


def test_auditlake_lake_is_the_default_and_yields_to_stack(tmp_path: Path) -> None:
    LocalLake(tmp_path).create()
    runner = CliRunner(mix_stderr=False, env={"AUDITLAKE_LAKE": str(tmp_path)})
    assert runner.invoke(reader, []).stdout == f"lake={tmp_path} stack=None\n"
    assert runner.invoke(reader, ["--stack", "s"]).stdout == "lake=None stack=s\n"  # the env var is only a default
    both = CliRunner(mix_stderr=False).invoke(reader, ["--lake", str(tmp_path), "--stack", "s"])
    assert both.stdout == f"lake={tmp_path} stack=s\n"  # given both on the command line: the command decides


# ------------------------------------------------------------------ replay


def fake(replies: list[int]) -> tuple[Replayer, list[bytes]]:
    sent: list[bytes] = []
    replayer = Replayer("http://user:pw@127.0.0.1:1/v1/audit", "t", initial_backoff=0, sleep=lambda _s: None)

    def post(body: bytes) -> tuple[int, dict[str, Any]]:
        sent.append(body)
        status = replies.pop(0)
        return status, {"accepted": 1} if status == 200 else {"message": "nope"}

    replayer._post = post  # type: ignore[method-assign]
    return replayer, sent


@pytest.mark.parametrize("status", [403, 404, 405, 422])
def test_a_4xx_is_not_retried(status: int) -> None:
    replayer, sent = fake([status, 200])
    with pytest.raises(ReplayError, match=f"^http://127.0.0.1:1/v1/audit answered {status} ") as raised:
        replayer.send([b"{}"])
    assert len(sent) == 1 and "user:pw" not in str(raised.value)


@pytest.mark.parametrize("status", [408, 429, 500, 503])
def test_timeouts_throttling_and_5xx_are_retried(status: int) -> None:
    replayer, sent = fake([status, 200])
    replayer.send([b"{}"])
    assert len(sent) == 2 and replayer.stats.retries == 1


def test_a_5xx_to_the_end_says_the_status_and_the_attempts() -> None:
    replayer, _ = fake([503] * 5)
    with pytest.raises(ReplayError) as raised:
        replayer.send([b"{}"])
    assert str(raised.value) == (
        "http://127.0.0.1:1/v1/audit answered 503 Service Unavailable: nope to a batch of 1 events after 5 attempts "
        "(see the server's log)"
    )


def test_urls() -> None:
    assert (
        url_problem("127.0.0.1:8098")
        == "127.0.0.1:8098 is not an http(s) URL (give the scheme, e.g. http://127.0.0.1:8098)"
    )
    assert url_problem("ftp://host/x") == "ftp://host/x is not an http(s) URL (give the scheme, e.g. ftp://host/x)"
    assert url_problem("https://host:8443/v1/audit") is None
    assert shown("https://me:secret@host/v1/audit") == "https://host/v1/audit"


# ------------------------------------------------------------------ completion, piped output


def test_query_names_complete_with_their_descriptions() -> None:
    ctx = click.Context(click.Command("query"))
    items = complete_query_name(ctx, click.Argument(["name"]), "forb")
    assert [item.value for item in items] == ["forbidden_bursts"] and "403" in (items[0].help or "")


def test_query_parameters_complete_from_the_name_on_the_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = click.Context(click.Command("query"))
    monkeypatch.setenv("COMP_WORDS", "auditlake query forbidden_bursts --param ")
    items = complete_query_param(ctx, click.Option(["--param"]), "")
    assert [(i.value, i.help) for i in items] == [
        ("threshold=", "default 10"), ("since=", None), ("until=", None), ("cluster=", None)
    ]  # fmt: skip
    monkeypatch.setenv("COMP_WORDS", "auditlake query no_such_query --param ")
    assert [i.value for i in complete_query_param(ctx, click.Option(["--param"]), "s")] == ["since="]


def test_the_shell_asks_and_gets_query_names() -> None:
    env = {"_AUDITLAKE_COMPLETE": "bash_complete", "COMP_WORDS": "auditlake query forb", "COMP_CWORD": "2"}
    result = CliRunner().invoke(main, [], prog_name="auditlake", env=env)
    assert result.exit_code == 0 and result.output == "plain,forbidden_bursts\n"
    script = CliRunner().invoke(main, [], prog_name="auditlake", env={"_AUDITLAKE_COMPLETE": "bash_source"})
    assert "_AUDITLAKE_COMPLETE=bash_complete" in script.output


def test_piped_output_never_wraps_a_line() -> None:
    command = "auditlake query identity_timeline --lake /tmp/a/very/long/path/to/the/lake --param identity=" + "m" * 80

    @click.command()
    def show() -> None:
        stdout_console().print(f"lake: /tmp/lake  (try: {command})", highlight=False)

    result = CliRunner(env={"COLUMNS": "60"}).invoke(show, [])
    assert result.output == f"lake: /tmp/lake  (try: {command})\n"


def test_usage_errors_of_the_group_and_its_commands_are_one_line() -> None:
    runner = CliRunner(mix_stderr=False, env={"AUDITLAKE_DEBUG": None})
    bogus = runner.invoke(main, ["--bogus"], prog_name="auditlake")
    assert bogus.exit_code == 2 and bogus.stderr == "error: No such option: --bogus (see auditlake --help)\n"
    unknown = runner.invoke(main, ["summry"], prog_name="auditlake")
    assert unknown.exit_code == 2
    assert unknown.stderr == "error: no command 'summry': did you mean summary? (see auditlake --help)\n"
    typo = runner.invoke(main, ["compact", "--lak", "x"], prog_name="auditlake")
    assert typo.exit_code == 2
    assert typo.stderr == "error: No such option: --lak Did you mean --lake? (see auditlake compact --help)\n"


def test_the_group_makes_every_failure_one_line() -> None:
    from auditlake.cli import AuditlakeGroup

    group = AuditlakeGroup("auditlake")

    @group.command()
    @click.argument("what")
    def fails(what: str) -> None:
        if what == "click":
            raise click.ClickException("the [file] is gone")
        if what == "aws":
            raise NoRegionError()
        raise ValueError("odd\nvalue")

    runner = CliRunner(mix_stderr=False, env={"AUDITLAKE_DEBUG": None})
    shown = {what: runner.invoke(group, ["fails", what]) for what in ("click", "aws", "other")}
    assert {what: (r.exit_code, r.stderr) for what, r in shown.items()} == {
        "click": (1, "error: the [file] is gone\n"),
        "aws": (1, "error: no AWS region (pass --region or set AWS_REGION)\n"),
        "other": (
            1,
            "error: ValueError: odd value (run with AUDITLAKE_DEBUG=1 for the traceback, and please report it)\n",
        ),
    }
    debug = CliRunner(mix_stderr=False, env={"AUDITLAKE_DEBUG": "1"}).invoke(group, ["fails", "other"])
    assert isinstance(debug.exception, ValueError)


def test_a_yaml_error_that_is_not_a_files_never_echoes_the_value() -> None:
    """PyYAML's RepresenterError carries the object it could not write (a kubeconfig: its token and CA);
    the one-line error says only its kind. It once printed a cluster's bearer token."""
    import yaml

    from auditlake.cli.render import explain

    exc = yaml.representer.RepresenterError("cannot represent an object", {"token": "alk_secret-token"})
    message = explain(exc)
    assert message is not None and "RepresenterError" in message and "alk_secret" not in message
    with pytest.raises(yaml.YAMLError) as parse:
        yaml.safe_load("a: [1, 2\nb: 3\n")
    assert "line" in (explain(parse.value) or "")
