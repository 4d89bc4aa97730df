"""``auditlake rules``: the detection rules (Sigma) a command or a stack evaluates: list, lint, push.

Contract:
- ``rules list [--rules DIR ...] [--no-builtin-rules] [--format table|json]``: one row per rule and
  correlation rule (``id``, ``name``, ``title``, ``level``, ``logsource``: audit, events or
  correlation, ``generate``, ``source``: the file; a built-in one as ``builtin/FILE``); json is ONE
  array of objects with those keys. Each file or rule that does not load is one stderr line,
  ``warning: FILE: reason``, and the rest is listed (exit 0); a ``--rules`` path that does not exist
  is one ``error:`` line, exit 2.
- ``rules lint DIR...``: ``FILE: message`` on stdout per problem (what loading reports, then
  pySigma's validators, offline), exit 1 when there is any; else ``N rules, no problems``, exit 0.
- ``rules push DIR... --stack S [--region R]``: lints first and refuses (exit 1) on any problem,
  then writes the rules compiled (``detect/rulesets.compiled``, the JSON the functions load without
  pySigma) to ``s3://<RawBucketName>/<landing.RULES_PREFIX>custom.json``; ``--remove`` (no DIR)
  deletes that object (the built-in rules only). The functions re-read it every
  AUDITLAKE_RULES_CACHE_SECONDS (``ingest/rules.RuleSource``): nothing is redeployed. A push replaces
  the whole custom set: push every directory you want in force at once.
AWS problems (no region, no credentials, no such stack, a refused call) are one ``error:`` line, exit 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from auditlake.cli.render import err, fail, print_result
from auditlake.cli.stack import RAW_BUCKET, stack_outputs
from auditlake.jsonio import dumps_str
from auditlake.landing import RULES_PREFIX
from auditlake.settings import RULES_CACHE_SECONDS

if TYPE_CHECKING:
    from auditlake.detect.ir import Correlation, Rule, RuleSet

# Kept equal to ingest/rules.CUSTOM_RULES (a test pins it) without importing the ingest package here.
CUSTOM_RULES = "custom.json"
LIST_COLUMNS = ("id", "name", "title", "level", "logsource", "generate", "source")
DEFAULT_CACHE_SECONDS = 300  # settings.Settings.rules_cache_seconds' default


@click.group()
def rules() -> None:
    """Detection rules (Sigma): list what is loaded, lint your own, push them to a stack."""


@rules.command("list")
@click.option(
    "--rules",
    "rule_dirs",
    multiple=True,
    type=click.Path(path_type=Path),
    help="A directory (or file) of Sigma rules, added to the built-in set; repeatable.",
)
@click.option("--no-builtin-rules", is_flag=True, help="List only the --rules directories, not the built-in rules.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="Output: a table, or ONE JSON array of objects.")  # fmt: skip
def rules_list(rule_dirs: tuple[Path, ...], no_builtin_rules: bool, fmt: str) -> None:
    """The rules and correlation rules that load, one row each (json: one array of objects).

    \b
    Example:
      auditlake rules list --rules ./my-rules --format json
    """
    from auditlake.detect.sigma import load_rules

    for path in rule_dirs:
        if not path.exists():
            # Exit 2 as click's own usage errors, but in one line: a script reads it.
            err.print(f"[red]error:[/red] --rules {path}: no such file or directory", highlight=False)
            raise SystemExit(2)
    loaded = load_rules(rule_dirs, builtin=not no_builtin_rules)
    _warn(loaded)
    items = listing(loaded)
    if fmt == "json":
        click.echo(dumps_str(items))
        return
    from auditlake.query.named import Result

    print_result(Result(list(LIST_COLUMNS), [tuple(item[c] for c in LIST_COLUMNS) for item in items]), "table")


def listing(loaded: RuleSet) -> list[dict[str, Any]]:
    """One object per rule, then per correlation rule, with ``LIST_COLUMNS``."""
    items: list[dict[str, Any]] = [
        {"id": rule.id, "name": rule.name, "title": rule.title, "level": rule.level, "logsource": rule.logsource,
         "generate": rule.generate, "source": _source(rule.source)}
        for rule in loaded.rules
    ]  # fmt: skip
    items += [
        {"id": corr.id, "name": corr.name, "title": corr.title, "level": corr.level, "logsource": "correlation",
         "generate": corr.generate, "source": _source(corr.source)}
        for corr in loaded.correlations
    ]  # fmt: skip
    return items


def _source(source: str) -> str:
    """A built-in rule's file as ``builtin/NAME`` (not the installed package's path), others as given."""
    from auditlake.detect.sigma import BUILTIN_DIR

    try:
        return "builtin/" + Path(source).relative_to(BUILTIN_DIR).as_posix()
    except ValueError:
        return source


def _warn(loaded: RuleSet) -> None:
    for source, problem in loaded.problems:
        err.print(f"[yellow]warning:[/yellow] {source}: {problem}", highlight=False)


@rules.command("lint")
@click.argument("dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
def rules_lint(dirs: tuple[Path, ...]) -> None:
    """Check Sigma rule directories (or files): load problems and pySigma's validators, offline.

    \b
    Example:
      auditlake rules lint ./my-rules
    """
    from auditlake.detect.sigma import load_rules

    problems = _lint(dirs)
    for source, message in problems:
        click.echo(f"{source}: {message}")
    if problems:
        err.print(f"{len(problems)} problems", highlight=False)
        raise SystemExit(1)
    loaded = load_rules(dirs, builtin=False)
    click.echo(f"{len(loaded.rules) + len(loaded.correlations)} rules, no problems")


def _lint(dirs: Sequence[Path]) -> list[tuple[str, str]]:
    from auditlake.detect.sigma import lint

    return lint(dirs)


@rules.command("push")
@click.argument("dirs", nargs=-1, type=click.Path(path_type=Path))
@click.option("--stack", required=True, help="Deployed stack whose functions evaluate the rules.")
@click.option("--region", help="AWS region of the stack (default: the SDK's).")
@click.option("--remove", is_flag=True, help="Delete the pushed rules: the stack evaluates the built-in rules only.")
def rules_push(dirs: tuple[Path, ...], stack: str, region: str | None, remove: bool) -> None:
    """Compile Sigma rules and put them where the stack's functions load them (no redeploy).

    \b
    Examples:
      auditlake rules push ./my-rules --stack my-auditlake --region eu-west-1
      auditlake rules push --remove --stack my-auditlake
    """
    if remove == bool(dirs):
        raise click.UsageError("give rule directories to push, or --remove alone")
    rule_set = None if remove else _checked(dirs)
    from botocore.exceptions import BotoCoreError, ClientError

    from auditlake.stores import StoreError

    try:
        bucket, s3 = _raw_bucket(stack, region)
        uri = f"s3://{bucket}/{RULES_PREFIX}{CUSTOM_RULES}"
        if rule_set is None:
            s3.delete_object(Bucket=bucket, Key=RULES_PREFIX + CUSTOM_RULES)
            click.echo(f"removed {uri}: the stack evaluates the built-in rules only {_when()}")
            return
        from auditlake.detect.rulesets import compiled
        from auditlake.stores.s3 import S3Store

        # As every write to the raw bucket: its default encryption (KMS) applies, a checksum is sent.
        S3Store(s3, bucket).put(RULES_PREFIX + CUSTOM_RULES, compiled(rule_set), "application/json")
    except (BotoCoreError, ClientError, StoreError) as exc:
        fail(_aws_problem(exc, stack))
    click.echo(
        f"pushed {_count(len(rule_set.rules), 'rule')}, {_count(len(rule_set.correlations), 'correlation')} "
        f"to {uri}; the stack's functions load them {_when()}"
    )


def _checked(dirs: Sequence[Path]) -> RuleSet:
    """The rules of ``dirs`` when they lint clean and are not empty; else the problems and exit 1."""
    from auditlake.detect.rulesets import builtin_rules
    from auditlake.detect.sigma import load_rules

    problems = _lint(dirs)
    loaded = load_rules(dirs, builtin=False)
    # The functions evaluate built-in + custom without de-duplicating: the same id twice would be
    # two rules whose findings share one rule_id.
    builtin = builtin_rules()
    builtin_ids = {rule.id for rule in builtin.rules} | {corr.id for corr in builtin.correlations}
    mine: list[Rule | Correlation] = [*loaded.rules, *loaded.correlations]
    for item in mine:
        if item.id in builtin_ids:
            problems.append((item.source, f"{item.title}: id {item.id} is a built-in rule's id; give it its own"))
    for source, message in problems:
        click.echo(f"{source}: {message}")
    if problems:
        fail(f"{len(problems)} problems: nothing pushed (auditlake rules lint shows them)")
    if not loaded.rules and not loaded.correlations:
        fail(f"no rules in {', '.join(map(str, dirs))}: nothing pushed (--remove goes back to the built-in rules)")
    return loaded


def _raw_bucket(stack: str, region: str | None) -> tuple[str, Any]:
    import boto3

    session = boto3.session.Session(region_name=region)
    outputs = stack_outputs(session, stack)
    return outputs[RAW_BUCKET], session.client("s3")


def _aws_problem(exc: Exception, stack: str) -> str:
    """One line for what stopped the push; never the request's body or a credential."""
    from botocore.exceptions import ClientError

    from auditlake.cli.render import explain

    if not isinstance(exc, ClientError):  # no region, no credentials ...: as every command says them
        return explain(exc) or " ".join(str(exc).split())
    error = exc.response.get("Error", {})
    code, message = error.get("Code", "?"), error.get("Message", "")
    if exc.operation_name == "DescribeStacks" and "does not exist" in message:
        return f"no stack {stack} in this account and region"
    return f"{exc.operation_name} refused: {code}" + (f" ({message})" if message else "")


def _when() -> str:
    return f"within {RULES_CACHE_SECONDS} ({DEFAULT_CACHE_SECONDS} s by default)"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")
