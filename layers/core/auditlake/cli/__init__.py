"""The ``auditlake`` command line: the same core as the Lambda functions, on a local lake or AWS.

This module is the click group and the registration only; the commands live in one module per topic
(clusters, ingest, events, archive, query, quarantine, report, findings, rules, policy, demo,
doctor), with shared options in options.py, printing in render.py and the stack's Output names in
stack.py. No name here shadows a submodule.

Failures: ``main`` is an ``AuditlakeGroup``, the one place a command's failure becomes one line on
stderr, ``error: <what> (<the fix>)``, with a non-zero exit, never a traceback: a known exception
(render.explain: AWS region/credentials/refusals, paths that cannot be written, a port in use, TLS)
its own line, exit 1; a usage error one line naming ``--help``, exit 2; any other exception one line
with its type and message, exit 1, so nothing is silently swallowed. ``auditlake --debug`` or
AUDITLAKE_DEBUG=1 lets the exception through with its traceback.
"""

from __future__ import annotations

import os
from typing import Any

import click
from rich.markup import escape

from auditlake import __version__
from auditlake.cli import (
    archive,
    clusters,
    demo,
    doctor,
    events,
    findings,
    ingest,
    policy,
    quarantine,
    query,
    report,
    rules,
)
from auditlake.cli.hunt import hunt as hunt_command
from auditlake.cli.render import DEBUG_HINT, err, explain

DEBUG_ENV = "AUDITLAKE_DEBUG"


class OneLineUsageError(click.UsageError):
    """A usage error shown as one ``error:`` line pointing at the command's --help (click's own
    takes three lines: usage, hint, error); the exit stays 2."""

    def show(self, file: Any = None) -> None:
        # Named as a user types it (a test runner or ``python -m`` names the root otherwise).
        names, ctx = [], self.ctx
        while ctx is not None and ctx.parent is not None:
            names.append(ctx.info_name or "")
            ctx = ctx.parent
        command = " ".join(["auditlake", *reversed(names)])
        err.print(f"[red]error:[/red] {escape(self.format_message())} (see {command} --help)", highlight=False)


class OneLineError(click.ClickException):
    """Any other click exception (click.FileError ...) as ``error: ...``, not click's ``Error: ...``."""

    def show(self, file: Any = None) -> None:
        err.print(f"[red]error:[/red] {escape(self.format_message())}", highlight=False)


class AuditlakeGroup(click.Group):
    """The command group whose ``invoke`` turns every failure into one line (see the module's contract)."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        try:  # the group's own options (auditlake --bogus): one line too
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            if os.environ.get(DEBUG_ENV, "") not in ("", "0") or isinstance(exc, OneLineUsageError):
                raise
            raise OneLineUsageError(exc.format_message(), exc.ctx) from exc

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = click.utils.make_str(args[0]) if args else ""
        if args and not ctx.resilient_parsing and self.get_command(ctx, name) is None and not name.startswith("-"):
            import difflib

            close = difflib.get_close_matches(name, self.list_commands(ctx), n=2)
            if close:
                ctx.fail(f"no command {name!r}: did you mean {' or '.join(close)}?")
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.Abort, SystemExit, KeyboardInterrupt, BrokenPipeError):
            raise  # an exit code, Ctrl-C, or a pipe closed early (click handles each)
        except click.UsageError as exc:
            if _debug(ctx) or isinstance(exc, OneLineUsageError):
                raise
            raise OneLineUsageError(exc.format_message(), exc.ctx) from exc
        except click.ClickException as exc:
            if _debug(ctx) or type(exc).show is not click.ClickException.show:
                raise  # shown its own way already (MissingOutput)
            error = OneLineError(exc.format_message())
            error.exit_code = exc.exit_code
            raise error from exc
        except Exception as exc:
            if _debug(ctx):
                raise
            known = explain(exc)
            line = known or f"{type(exc).__name__}: {' '.join(str(exc).split())} ({DEBUG_HINT}, and please report it)"
            err.print(f"[red]error:[/red] {escape(line)}", highlight=False)
            raise SystemExit(1) from None


def _debug(ctx: click.Context) -> bool:
    return bool((ctx.obj or {}).get("debug")) or os.environ.get(DEBUG_ENV, "") not in ("", "0")


@click.group(cls=AuditlakeGroup)
@click.version_option(__version__)
@click.option("--debug", is_flag=True, help=f"Show the traceback of a failure (also: {DEBUG_ENV}=1).")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """auditlake: Kubernetes audit events and Events into a queryable, tamper-evident lake.

    Every --lake option defaults to $AUDITLAKE_LAKE. Shell completion (bash, zsh, fish):

    \b
      eval "$(_AUDITLAKE_COMPLETE=bash_source auditlake)"   # in ~/.bashrc
      eval "$(_AUDITLAKE_COMPLETE=zsh_source auditlake)"    # in ~/.zshrc

    \b
    Examples:
      auditlake demo --lake /tmp/lake
      export AUDITLAKE_LAKE=/tmp/lake
      auditlake query forbidden --param since=7d
    """
    ctx.obj = {"debug": debug}


for command in (
    clusters.cluster,
    ingest.serve,
    ingest.ingest,
    ingest.backfill,
    demo.replay,
    demo.synth,
    demo.demo,
    policy.policy,
    events.poll,
    archive.compact,
    archive.digest,
    archive.verify,
    query.query,
    query.summary,
    quarantine.quarantine,
    report.report,
    findings.findings,
    rules.rules,
    hunt_command,
    doctor.doctor,
):
    main.add_command(command)

if __name__ == "__main__":
    main()
