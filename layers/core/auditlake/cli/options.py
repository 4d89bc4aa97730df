"""Options several commands share, and what they build (the pipeline, the local alert watch)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from auditlake.audit.pipeline import AuditPipeline, PipelineConfig
from auditlake.audit.policy import PolicyError, load_policy
from auditlake.audit.redact import RedactionConfig
from auditlake.cli.render import err, fail
from auditlake.landing import valid_cluster_name
from auditlake.local_lake import LocalLake
from auditlake.trust.alerts import Watch, subject

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


def lake_option(func: F) -> F:
    return click.option(
        "--lake",
        required=True,
        type=click.Path(file_okay=False, path_type=Path),
        help="Local lake directory (created if missing).",
    )(func)


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


def lake_watch(lake: Path, alert_threshold: int, secrets_alert_threshold: int) -> Watch:
    def show(alert: dict[str, Any]) -> None:
        err.print(f"[bold red]ALERT[/bold red] {subject(alert)}: {', '.join(alert['resources'])} "
                  f"from {', '.join(alert['source_ips']) or '?'}", highlight=False)  # fmt: skip

    return Watch(LocalLake(lake).bursts(alert_threshold, secrets_alert_threshold, also=show))


def cluster_name(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    if not valid_cluster_name(value):
        raise click.BadParameter("use a DNS label: a-z, 0-9 and '-', at most 63 characters")
    return value


def optional_cluster_name(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    return None if value is None else cluster_name(ctx, param, value)
