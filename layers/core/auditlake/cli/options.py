"""Options several commands share, and what they build (the pipeline, the local alert watch).

``--lake`` (``lake_option``): every command's lake, defaulting to $AUDITLAKE_LAKE. The commands that
make a lake (ingest, serve, poll, cluster add, backfill) take ``lake_option`` (or ``create=True``):
the lake is created (directory and marker, ``LocalLake.create``) once the command line parsed, and a
path that cannot be made or written is one ``error:`` line before any input is read. Reading
commands take ``lake_option(create=False)``: a path that is not a lake is ``error: no lake at PATH
(...)``, exit 1, and nothing is created there. With ``--stack`` (or ``--athena``, ``--table``) given,
a lake that only comes from $AUDITLAKE_LAKE is ignored, so the variable never makes ``--stack`` a
usage error. Also the shell-completion callbacks of the ``query`` command's NAME and ``--param``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, overload

import click
from click.core import ParameterSource
from click.shell_completion import CompletionItem

from auditlake.audit.pipeline import AuditPipeline, PipelineConfig
from auditlake.audit.policy import PolicyError, load_policy
from auditlake.audit.redact import RedactionConfig
from auditlake.cli.render import err, fail
from auditlake.landing import valid_cluster_name
from auditlake.local_lake import LocalLake
from auditlake.model import SIGMA_LEVELS
from auditlake.trust.alerts import Watch, subject

if TYPE_CHECKING:
    from auditlake.detect.ir import RuleSet
    from auditlake.detect.matches import Detector

F = TypeVar("F", bound=Callable[..., Any])


def pipeline_options(func: F) -> F:
    func = click.option(
        "--redact",
        "redact",
        multiple=True,
        metavar="RESOURCE",
        help="Also drop bodies of this resource (resource[.group][/subresource]); repeatable.",
    )(func)
    func = click.option(
        "--redact-configmaps/--keep-configmaps",
        default=True,
        show_default=True,
        help="Drop configmap bodies (they often hold credentials).",
    )(func)
    func = click.option(
        "--policy",
        "policy_file",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="Pipeline audit policy (audit.k8s.io/v1). Default: keep every event as received.",
    )(func)
    return func


def build_pipeline(policy_file: Path | None, redact_configmaps: bool, redact: tuple[str, ...]) -> AuditPipeline:
    try:
        redaction = RedactionConfig.build(configmaps=redact_configmaps, extra=redact)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--redact") from None
    policy = None
    if policy_file is not None:
        try:
            policy = load_policy(policy_file.read_bytes())
        except PolicyError as exc:
            fail(f"{policy_file}: " + "; ".join(exc.errors))
        for warning in policy.warnings if policy else ():
            err.print(f"[yellow]policy warning:[/yellow] {warning}")
    return AuditPipeline(PipelineConfig(policy, redaction))


LAKE_ENV = "AUDITLAKE_LAKE"
# Options that name a deployed stack instead of a lake: given, they win over $AUDITLAKE_LAKE.
NOT_A_LAKE = ("stack", "athena", "table")
NO_LAKE_FIX = "create one with auditlake ingest, serve or demo, or check the path"


@overload
def lake_option(func: F, /) -> F: ...


@overload
def lake_option(*, create: bool = True, required: bool = True, check: bool = True) -> Callable[[F], F]: ...


def lake_option(
    func: F | None = None, /, *, create: bool = True, required: bool = True, check: bool = True
) -> F | Callable[[F], F]:
    """``--lake DIR`` (default $AUDITLAKE_LAKE). ``create``: the command makes the lake; else it
    must be one. ``required=False`` for commands that take ``--stack`` instead; ``check=False``
    for a command that makes its lake itself (``demo``: it replaces its own lake whole)."""

    def decorate(command: F) -> F:
        @functools.wraps(command)
        def checked(*args: Any, **kwargs: Any) -> Any:
            lake = kwargs.get("lake")
            if lake is not None and _from_environment("lake") and any(kwargs.get(n) for n in NOT_A_LAKE):
                kwargs["lake"] = lake = None  # --stack given: $AUDITLAKE_LAKE is only a default
            if lake is not None and check:
                (make_lake if create else require_lake)(lake)
            return command(*args, **kwargs)

        if create:
            help_text = "Local lake directory, created if missing."
        else:
            help_text = "Local lake directory, made by ingest, serve, poll or demo."
        option = click.option(
            "--lake",
            required=required,
            envvar=LAKE_ENV,
            show_envvar=True,
            type=click.Path(file_okay=False, path_type=Path),
            help=help_text,
        )
        return option(checked)  # type: ignore[return-value]

    return decorate if func is None else decorate(func)


def _from_environment(name: str) -> bool:
    ctx = click.get_current_context(silent=True)
    return ctx is not None and ctx.get_parameter_source(name) is ParameterSource.ENVIRONMENT


def require_lake(lake: Path) -> LocalLake:
    """The lake at ``lake``, or ``error: no lake at PATH (...)`` and exit 1 (nothing is created)."""
    local = LocalLake(lake)
    if not local.is_lake():
        fail(f"no lake at {lake} ({NO_LAKE_FIX})")
    return local


def make_lake(lake: Path) -> LocalLake:
    """The lake at ``lake``, created if missing; a path that cannot be made or written is one line."""
    local = LocalLake(lake)
    try:
        local.create()
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        at = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(lake) else ""
        fail(f"cannot make or write the lake at {lake}: {reason}{at} (pick a directory you can write, "
             "or fix its permissions)")  # fmt: skip
    return local


def complete_query_name(_ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Shell completion of ``auditlake query NAME``: the named queries, with their descriptions."""
    from auditlake.query import named

    items = []
    for name in named.names():
        if name.startswith(incomplete):
            try:
                description = named.load(name).description
            except Exception:  # completion must never fail the shell: the name still completes
                description = None
            items.append(CompletionItem(name, help=description))
    return items


def _query_in_command_line(names: list[str]) -> str | None:
    """The query NAME on the command line being completed. Completing an option's value, click parses
    the words before it with that option lacking its value, which leaves NAME unparsed: every shell
    click completes for (bash, zsh, fish) passes the words in COMP_WORDS."""
    import os
    import shlex

    try:
        words = shlex.split(os.environ.get("COMP_WORDS", ""))
    except ValueError:  # an open quote while typing
        words = os.environ.get("COMP_WORDS", "").split()
    return next((word for word in words if word in names), None)


def complete_query_param(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Shell completion of ``--param K=V``: the parameters of the query NAME given before it."""
    from auditlake.query import named

    name = ctx.params.get("name") or _query_in_command_line(named.names())
    try:
        own = named.load(str(name)).params if name else {}
        params = {**own, **dict.fromkeys(named.COMMON)}
    except Exception:  # an unknown NAME: nothing to complete, never a failed shell
        return []
    return [CompletionItem(f"{key}=", help=None if default is None else f"default {default}")
            for key, default in params.items() if f"{key}=".startswith(incomplete)]  # fmt: skip


def alert_options(func: F) -> F:
    func = click.option(
        "--secrets-alert-threshold",
        type=click.IntRange(min=0),
        default=0,
        show_default=True,
        help="Also alert at this many 403s on secrets in a minute (0: off).",
    )(func)
    func = click.option(
        "--alert-threshold",
        type=click.IntRange(min=1),
        default=10,
        show_default=True,
        help="Alert when one identity gets this many 403s in a minute (to LAKE/alerts/).",
    )(func)
    return func


def rules_options(func: F) -> F:
    """``--rules DIR`` (repeatable), ``--no-builtin-rules`` and ``--alert-level``: what a command that
    ingests evaluates, and which findings it pages (to LAKE/alerts/, as the stack's AlertLevel does)."""
    func = click.option(
        "--alert-level",
        type=click.Choice(SIGMA_LEVELS),
        default="high",
        show_default=True,
        help="Page findings at or above this level (to LAKE/alerts/), once per rule, identity and object an hour.",
    )(func)
    func = click.option(
        "--no-builtin-rules", is_flag=True, help="Evaluate only the --rules directories, not the built-in rules."
    )(func)
    func = click.option(
        "--rules",
        "rule_dirs",
        multiple=True,
        type=click.Path(exists=True, path_type=Path),
        help="A directory (or file) of Sigma rules evaluated at ingest, added to the built-in set; repeatable.",
    )(func)
    return func


def build_detector(lake: Path, rule_dirs: tuple[Path, ...], no_builtin_rules: bool) -> tuple[Detector, RuleSet]:
    """The rules, compiled once for the command; each file that does not load is one warning line."""
    detector, rules = LocalLake(lake).detector(rule_dirs, builtin=not no_builtin_rules)
    for source, problem in rules.problems:
        err.print(f"[yellow]rules warning:[/yellow] {source}: {problem}", highlight=False)
    return detector, rules


def lake_watch(
    lake: Path,
    alert_threshold: int = 10,
    secrets_alert_threshold: int = 0,
    rules: RuleSet | None = None,
    alert_level: str = "high",
) -> Watch:
    """The local post-store hook: the correlation rules of ``rules`` (the 403 bursts with the two
    thresholds) and findings at or above ``alert_level``, printed and kept under LAKE/alerts/."""

    def show(alert: dict[str, Any]) -> None:
        if "resources" in alert:  # a correlation (a burst)
            where = ", ".join(alert["resources"])
        else:  # a finding
            parts = (alert.get("resource"), alert.get("namespace"), alert.get("name"))
            where = " ".join(part for part in parts if part)
        err.print(f"[bold red]ALERT[/bold red] {subject(alert)}: {where or '?'} "
                  f"from {', '.join(alert.get('source_ips') or ()) or '?'}", highlight=False)  # fmt: skip

    local = LocalLake(lake)
    correlations = rules.correlations if rules is not None else None
    return Watch(
        local.bursts(alert_threshold, secrets_alert_threshold, also=show, correlations=correlations),
        None,
        local.finding_pages(alert_level, also=show),
    )


def cluster_name(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    if not valid_cluster_name(value):
        raise click.BadParameter("use a DNS label: a-z, 0-9 and '-', at most 63 characters")
    return value


def optional_cluster_name(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    return None if value is None else cluster_name(ctx, param, value)
