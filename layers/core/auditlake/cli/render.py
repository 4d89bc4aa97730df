"""How the CLI prints: diagnostics on stderr (one line each), results (tables, CSV, JSON lines) on stdout.

Failures are one line, ``error: <what> (<the fix>)``, and a non-zero exit: ``fail`` prints one a
command decided on; ``explain`` turns the exceptions the CLI knows (AWS without a region or
credentials or refusing a call, a path that cannot be written, a port in use, a TLS file that does
not load) into one, for the group's handler (cli/__init__.py) and for commands that catch them
themselves (``listen_failure``, ``tls_failure`` for ``serve``). An exception it does not know is
still one line there, naming its type and how to see the traceback (AUDITLAKE_DEBUG=1).
Messages never carry a request body or a credential: only codes, paths and what the SDK says.
"""

from __future__ import annotations

import csv
import errno
import re
import ssl
import sys
from datetime import UTC, datetime
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from auditlake.jsonio import dumps_str
from auditlake.timestamps import format_millis

err = Console(stderr=True, soft_wrap=True)  # diagnostics stay one line each, whatever the path length


def stdout_console() -> Console:
    """The results' console (stdout): wrapped to a terminal's width, but piped or redirected a line
    is printed whole, so a command in it can be copied (tables still fit the width they are given)."""
    return Console(soft_wrap=not sys.stdout.isatty())


def fail(message: str, code: int = 1) -> NoReturn:
    """One ``error:`` line on stderr, then exit ``code``; the message is text, never markup."""
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    raise SystemExit(code)


DEBUG_HINT = "run with AUDITLAKE_DEBUG=1 for the traceback"


def explain(exc: BaseException) -> str | None:
    """The one line (without ``error:``) for a failure the CLI knows, or None for any other."""
    aws = _aws(exc)
    if aws is not None:
        return aws
    if isinstance(exc, ssl.SSLCertVerificationError):
        fix = "pass --ca-file with the CA that signed the server's certificate"
        return f"TLS verification failed: {exc.verify_message} ({fix})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {' '.join(str(exc).split())}"
    if isinstance(exc, OSError):
        return _os(exc)
    return _yaml(exc)


def _yaml(exc: BaseException) -> str | None:
    """A YAML file that does not parse (a kubeconfig, a policy): the file, the line, the problem."""
    import yaml  # PyYAML: already loaded by whatever raised its error

    if not isinstance(exc, yaml.YAMLError):
        return None
    if not isinstance(exc, yaml.MarkedYAMLError):
        # Not a file that does not parse (a value that could not be written, ...): its text may
        # carry the value itself, a token or a key, so only its kind is said.
        return f"YAML: {type(exc).__name__} (run with AUDITLAKE_DEBUG=1 for the traceback, and please report it)"
    mark = exc.problem_mark
    where = f"{mark.name}, line {mark.line + 1}" if mark is not None else "a YAML file"
    problem = exc.problem or type(exc).__name__
    return f"{where}: not valid YAML: {' '.join(str(problem).split())} (fix the file, or pass another)"


def _aws(exc: BaseException) -> str | None:
    try:
        from botocore import exceptions as aws
    except ImportError:  # pragma: no cover - botocore is a dependency; a light install may drop it one day
        return None
    if isinstance(exc, aws.NoRegionError):
        return "no AWS region (pass --region or set AWS_REGION)"
    if isinstance(exc, aws.NoCredentialsError | aws.PartialCredentialsError):
        return ("no AWS credentials (set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; "
                "or run aws configure / aws sso login)")  # fmt: skip
    if isinstance(exc, aws.ProfileNotFound):
        return f"{exc} (aws configure list-profiles shows the profiles; check AWS_PROFILE or --profile)"
    if isinstance(exc, aws.TokenRetrievalError | aws.SSOError):
        return "the AWS SSO session has expired or was never started (run aws sso login)"
    if isinstance(exc, aws.EndpointConnectionError | aws.ConnectTimeoutError | aws.ReadTimeoutError):
        return f"cannot reach AWS: {exc} (check the network, a proxy, and --region)"
    if isinstance(exc, aws.ClientError):
        return aws_refusal(exc)
    if isinstance(exc, aws.BotoCoreError):
        return f"AWS: {exc}"
    return None


def aws_refusal(exc: Any, stack: str | None = None) -> str:
    """A refused AWS call (botocore ClientError) as one line: the operation, the code, the fix."""
    error = exc.response.get("Error", {})
    code, message = str(error.get("Code", "?")), str(error.get("Message", ""))
    operation = exc.operation_name
    if operation == "DescribeStacks" and "does not exist" in message:
        named = re.search(r"Stack with id (\S+) does not exist", message)
        name = stack or (named.group(1) if named else "of that name")
        return f"no stack {name} in this account and region (check --stack and --region)"
    if code in ("ExpiredToken", "ExpiredTokenException", "RequestExpired"):
        return "the AWS credentials have expired (refresh them: aws sso login, or new keys)"
    if code in ("InvalidClientTokenId", "UnrecognizedClientException", "SignatureDoesNotMatch",
                "InvalidSignatureException", "AuthFailure"):  # fmt: skip
        return f"AWS rejected the credentials ({code}): check AWS_PROFILE / the access key"
    if code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "Forbidden", "403"):
        return (f"AWS {operation} refused: {code} (the credentials in use lack this permission; "
                "see the README's deployer and reader IAM)")  # fmt: skip
    return f"AWS {operation} failed: {code}" + (f": {' '.join(message.split())}" if message else "")


def _os(exc: OSError) -> str | None:
    where = exc.filename if exc.filename is not None else None
    if isinstance(exc, PermissionError):
        return f"permission denied: {where} (pick a path you can write, or fix its permissions)" if where else None
    if exc.errno == errno.EROFS:
        return f"read-only file system: {where} (pick a writable path)"
    if exc.errno == errno.ENOSPC:
        return f"no space left on the device of {where} (free some, or pick another path)"
    if exc.errno == errno.EADDRINUSE:
        return "address already in use (pick another with --port; 0 picks a free one)"
    if isinstance(exc, FileNotFoundError) and where:
        return f"no such file or directory: {where} (check the path, or create its directory first)"
    if isinstance(exc, NotADirectoryError | IsADirectoryError | FileExistsError) and where:
        return f"{exc.strerror}: {where}"
    return None


def listen_failure(host: str, port: int, exc: OSError | OverflowError) -> str:
    """Why ``serve`` cannot listen on ``host:port``, and what to do."""
    import socket

    if isinstance(exc, OverflowError):
        return f"--port {port} is not a port (use 1-65535, or 0 for any free one)"
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} is in use on {host} (pick another with --port; 0 picks a free one)"
    if exc.errno == errno.EACCES:
        return f"port {port} needs privileges on {host} (pick one above 1023 with --port)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{host} is not an address of this machine (use --host 127.0.0.1, or 0.0.0.0 for all)"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve --host {host}: {exc.strerror} (give an IP address or a resolvable name)"
    return f"cannot listen on {host}:{port}: {exc.strerror or exc} (pick another --host or --port)"


def tls_failure(exc: ssl.SSLError | OSError, cert: str | None = None, key: str | None = None) -> str:
    """Why ``--tls-cert``/``--tls-key`` did not load, and what to do. OpenSSL says only "PEM lib"
    for either file: the files' PEM headers tell which one it is."""
    fix = "give a PEM certificate and its unencrypted PEM key, e.g. from mkcert or openssl req -x509 -nodes"
    if getattr(exc, "reason", None) == "KEY_VALUES_MISMATCH":
        return f"--tls-key {key} does not belong to --tls-cert {cert} (give the key the certificate was made for)"
    if isinstance(exc, ssl.SSLError):
        cert_text, key_text = _head(cert), _head(key)
        if cert is not None and "-----BEGIN CERTIFICATE-----" not in cert_text:
            return f"--tls-cert {cert} is not a PEM certificate ({fix})"
        if key is not None and "ENCRYPTED" in key_text:
            return f"--tls-key {key} is encrypted (decrypt it: openssl pkey -in KEY -out KEY.plain)"
        if key is not None and "PRIVATE KEY-----" not in key_text:
            return f"--tls-key {key} is not a PEM private key ({fix})"
        return f"cannot load --tls-cert/--tls-key: {' '.join(str(exc).split())} ({fix})"
    return f"cannot read --tls-cert/--tls-key: {exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")


def _head(path: str | None) -> str:
    """The first KiB of a PEM file as text ("" when unreadable: the caller says what it lacks)."""
    if path is None:
        return ""
    try:
        with open(path, "rb") as handle:
            return handle.read(1024).decode("ascii", "replace")
    except OSError:
        return ""


def print_counts(title: str, counts: dict[str, int]) -> None:
    err.print(f"{title}: " + ", ".join(f"{k} {v}" for k, v in counts.items()), highlight=False)


def bytes_progress() -> Progress:
    """A progress bar on a terminal; none when stderr is piped or redirected (a log keeps its lines)."""
    return Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
        console=err, disable=not err.is_terminal,
    )  # fmt: skip


def print_result(result: Any, fmt: str, console: Console | None = None, title: str | None = None) -> None:
    def text(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, datetime):
            return format_millis(value if value.tzinfo else value.replace(tzinfo=UTC))
        if isinstance(value, list):
            return ", ".join(text(v) for v in value)
        return str(value)

    if fmt == "json":
        for row in result.rows:
            click.echo(
                dumps_str(
                    {c: (text(v) if isinstance(v, datetime) else v) for c, v in zip(result.columns, row, strict=True)}
                )
            )
    elif fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(result.columns)
        writer.writerows([text(v) for v in row] for row in result.rows)
    else:
        out = console or stdout_console()
        if out.width // max(len(result.columns), 1) >= 14:
            table = Table(title=title, title_justify="left")
            for column in result.columns:
                table.add_column(column, overflow="fold")
            for row in result.rows:
                table.add_row(*(text(v) for v in row))
            out.print(table)
        else:  # too many columns for the width: one block per row, like psql's expanded display
            width = max(len(c) for c in result.columns)
            for number, row in enumerate(result.rows, start=1):
                out.print(f"[bold]-- row {number}[/bold]")
                for column, value in zip(result.columns, row, strict=True):
                    if value is not None and value != []:
                        out.print(f"{column:>{width}}  {text(value)}", highlight=False, soft_wrap=True)
        (console or err).print(f"{len(result.rows)} rows", highlight=False)
