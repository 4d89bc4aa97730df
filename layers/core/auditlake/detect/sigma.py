"""Sigma rules in, the rule IR out: pySigma parses and validates, nothing here re-implements Sigma.

``load_rules(dirs, builtin=True)`` reads every ``*.yml``/``*.yaml`` under the built-in directory
(``BUILTIN_DIR``) and ``dirs``, applies ``PIPELINE`` (below) and converts each rule's parsed
condition (pySigma has already applied the value modifiers: ``contains`` is a string with
wildcards around it, ``re`` a regular expression, ``cidr`` a network ...) to ``detect.ir``.
A file or rule that cannot be used is a ``problems`` entry, one line, and loading goes on: a
whole SigmaHQ checkout loads, its non-Kubernetes rules listed as skipped.

Which rules apply where (``logsource``): ``product: kubernetes`` with ``service: audit`` (what
SigmaHQ's Kubernetes rules say) → audit events; ``service: events`` → Kubernetes Events (their
events.k8s.io/v1 field names, see ``detect/engine.py``). A base rule a correlation rule refers to
produces no findings of its own unless that correlation says ``generate: true`` (Sigma 2).

``PIPELINE`` (a pySigma processing pipeline) maps names published rules use that are not paths of
an audit event: ``hostPath`` → ``requestObject.spec.volumes.hostPath.path``, ``capabilities`` →
``requestObject.spec.containers.securityContext.capabilities.add``, a top-level ``apiGroup`` →
``objectRef.apiGroup``.

``lint(dirs)``: the load problems plus pySigma's own validators, except those that download MITRE
data (attacktag, d3_fendtag): linting works offline.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml
from sigma.collection import SigmaCollection
from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionNOT,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.correlations import (
    SigmaCorrelationCondition,
    SigmaCorrelationConditionOperator,
    SigmaCorrelationRule,
    SigmaCorrelationType,
)
from sigma.exceptions import SigmaError
from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
from sigma.processing.transformations import FieldMappingTransformation
from sigma.rule import SigmaRule
from sigma.types import (
    SigmaBool,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExists,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaRegularExpressionFlag,
    SigmaString,
    SpecialChars,
)

from auditlake.detect import ir
from auditlake.detect.correlate import ingest_problem
from auditlake.model import SIGMA_LEVELS

BUILTIN_DIR = Path(__file__).parent / "builtin"
SUFFIXES = (".yml", ".yaml")
FIELD_MAPPING: dict[str | None, str | list[str]] = {
    "hostPath": "requestObject.spec.volumes.hostPath.path",
    "capabilities": "requestObject.spec.containers.securityContext.capabilities.add",
    "apiGroup": "objectRef.apiGroup",
}
PIPELINE = ProcessingPipeline(
    name="auditlake: Kubernetes audit field names",
    items=[ProcessingItem(FieldMappingTransformation(FIELD_MAPPING), identifier="auditlake-k8s-audit-fields")],
)
NOT_KUBERNETES = "not a Kubernetes audit or Events rule (logsource product: kubernetes, service: audit|events)"
_OFFLINE_SKIP = {"attacktag", "d3_fendtag", "d3fendtag"}  # they download MITRE data
_COMPARE = {"LT": "lt", "LTE": "lte", "GT": "gt", "GTE": "gte"}


class Unsupported(ValueError):
    """A rule uses something the engine does not evaluate (a field reference, a placeholder)."""


def rule_files(dirs: Sequence[Path], *, builtin: bool = True) -> list[Path]:
    roots = ([BUILTIN_DIR] if builtin else []) + [Path(d) for d in dirs]
    files: list[Path] = []
    for root in roots:
        if root.is_file():
            files.append(root)
        elif root.is_dir():
            files.extend(sorted(p for p in root.rglob("*") if p.suffix in SUFFIXES and p.is_file()))
    return files


def load_rules(dirs: Sequence[Path], *, builtin: bool = True) -> ir.RuleSet:
    """Every rule under the built-in directory (when ``builtin``) and ``dirs`` (directories or files)."""
    rules: list[ir.Rule] = []
    correlations: list[ir.Correlation] = []
    problems: list[tuple[str, str]] = []
    for root in dirs:
        if not Path(root).exists():
            problems.append((str(root), "no such file or directory"))
    for path in rule_files(dirs, builtin=builtin):
        file_rules, file_corrs, file_problems = _load_file(path)
        rules += file_rules
        correlations += file_corrs
        problems += file_problems
    return _resolve(rules, correlations, problems)


def _load_file(path: Path) -> tuple[list[ir.Rule], list[ir.Correlation], list[tuple[str, str]]]:
    source = str(path)
    try:
        # References are resolved across every file by _resolve (a correlation may count a rule of
        # another file, a built-in one too); pySigma's per-file resolution would refuse those.
        text = path.read_text(encoding="utf-8")
        collection = SigmaCollection.from_yaml(text, collect_errors=True, resolve_references=False)
    except (SigmaError, OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        return [], [], [(source, _one_line(exc))]
    problems = [(source, _one_line(error)) for error in collection.errors]
    rules: list[ir.Rule] = []
    correlations: list[ir.Correlation] = []
    for item in collection.rules:
        if item.errors:
            problems += [(source, _one_line(error)) for error in item.errors]
            continue
        try:
            if isinstance(item, SigmaCorrelationRule):
                correlations.append(_correlation(item, source))
            elif isinstance(item, SigmaRule):
                converted = _rule(item, source)
                if converted is None:
                    problems.append((source, f"{item.title}: {NOT_KUBERNETES}"))
                else:
                    rules.append(converted)
            else:  # a Sigma filter: applying it needs pySigma's per-file resolution, not done here
                problems.append((source, f"{getattr(item, 'title', '?')}: Sigma filters are not applied"))
        except (SigmaError, Unsupported, ValueError, TypeError) as exc:
            problems.append((source, f"{getattr(item, 'title', '?')}: {_one_line(exc)}"))
    return rules, correlations, problems


def _resolve(rules: list[ir.Rule], correlations: list[ir.Correlation], problems: list[tuple[str, str]]) -> ir.RuleSet:
    """Drop duplicate ids (the first wins, the second is a problem); a correlation must refer to
    loaded rules; base rules of a correlation that does not generate are not findings themselves."""
    seen: dict[str, str] = {}
    kept_rules: list[ir.Rule] = []
    for rule in rules:
        if rule.id in seen:
            problems.append((rule.source, f"{rule.title}: duplicate rule id {rule.id} (first in {seen[rule.id]})"))
            continue
        seen[rule.id] = rule.source
        kept_rules.append(rule)
    by_ref = {key: rule for rule in kept_rules for key in (rule.id, rule.name) if key}
    silenced: set[str] = set()
    kept_corrs: list[ir.Correlation] = []
    for corr in correlations:
        if corr.id in seen:
            problems.append((corr.source, f"{corr.title}: duplicate rule id {corr.id} (first in {seen[corr.id]})"))
            continue
        missing = [ref for ref in corr.rules if ref not in by_ref]
        if missing:
            problems.append((corr.source, f"{corr.title}: refers to rules not loaded: {', '.join(missing)}"))
            continue
        seen[corr.id] = corr.source
        kept_corrs.append(corr)
        not_counted = ingest_problem(corr, corr.condition[1])
        if not_counted is not None:  # loaded for hunt, but said: never silently not paged
            problems.append((corr.source, f"{corr.title}: not counted at ingest: {not_counted}"))
        if not corr.generate:
            silenced.update(by_ref[ref].id for ref in corr.rules)
    final = tuple(replace(rule, generate=False) if rule.id in silenced else rule for rule in kept_rules)
    return ir.RuleSet(final, tuple(kept_corrs), tuple(problems))


def _logsource(rule: SigmaRule) -> str | None:
    source = rule.logsource
    if (source.product or "").lower() != "kubernetes":
        return None
    service = (source.service or "").lower()
    return service if service in ir.LOGSOURCES else None


def _level(item: SigmaRule | SigmaCorrelationRule) -> str:
    level = item.level.name.lower() if item.level is not None else "medium"
    return level if level in SIGMA_LEVELS else "medium"


def _rule(rule: SigmaRule, source: str) -> ir.Rule | None:
    logsource = _logsource(rule)
    if logsource is None:
        return None
    PIPELINE.apply(rule)
    conditions = [_node(condition.parsed) for condition in rule.detection.parsed_condition]
    condition = conditions[0] if len(conditions) == 1 else ir.AnyOf(tuple(conditions))
    return ir.Rule(
        id=str(rule.id) if rule.id else _derived_id(rule.title, source),
        title=rule.title,
        level=_level(rule),
        logsource=logsource,
        condition=condition,
        name=rule.name,
        description=" ".join((rule.description or "").split()),
        tags=tuple(str(tag) for tag in rule.tags),
        falsepositives=tuple(rule.falsepositives or ()),
        source=source,
    )


def _derived_id(title: str, source: str) -> str:
    """A rule without an id (allowed by Sigma, but findings need one): stable, from where it is."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"auditlake-rule:{Path(source).name}:{title}"))


def _correlation(rule: SigmaCorrelationRule, source: str) -> ir.Correlation:
    kind = {SigmaCorrelationType.EVENT_COUNT: "event_count", SigmaCorrelationType.VALUE_COUNT: "value_count"}.get(
        rule.type
    )
    if kind is None:
        raise Unsupported(f"correlation type {rule.type.name.lower()} is not evaluated (event_count, value_count are)")
    condition = rule.condition
    if not isinstance(condition, SigmaCorrelationCondition):
        raise Unsupported("an extended correlation condition is not evaluated")
    op = condition.op
    if op == SigmaCorrelationConditionOperator.NEQ:
        raise Unsupported("a correlation condition 'neq' is not evaluated")
    field = condition.fieldref
    if isinstance(field, list):
        field = field[0] if field else None
    return ir.Correlation(
        id=str(rule.id) if rule.id else _derived_id(rule.title, source),
        title=rule.title,
        level=_level(rule),
        type=kind,
        rules=tuple(ref.reference for ref in rule.rules or ()),
        group_by=tuple(rule.group_by or ()),
        timespan_seconds=int(rule.timespan.seconds),
        condition=(op.name.lower(), int(condition.count)),
        field=field or None,
        name=rule.name,
        description=" ".join((rule.description or "").split()),
        generate=bool(rule.generate),
        source=source,
    )


def _node(condition: Any) -> ir.Node:
    if isinstance(condition, ConditionAND):
        return ir.All(tuple(_node(arg) for arg in condition.args))
    if isinstance(condition, ConditionOR):
        return ir.AnyOf(tuple(_node(arg) for arg in condition.args))
    if isinstance(condition, ConditionNOT):
        return ir.Not(_node(condition.args[0]))
    if isinstance(condition, ConditionFieldEqualsValueExpression):
        return _leaf(condition.field, condition.value)
    if isinstance(condition, ConditionValueExpression):
        return _leaf(None, condition.value)
    raise Unsupported(f"condition {type(condition).__name__} is not evaluated")


def _leaf(field: str | None, value: Any) -> ir.Leaf:
    if isinstance(value, SigmaString):  # SigmaCasedString is one
        if value.contains_placeholder():
            raise Unsupported("placeholders (%name%) are not expanded: put the values in the rule")
        parts = tuple(_glob_part(part) for part in value.s)
        return ir.Leaf(field, "glob", parts, cased=isinstance(value, SigmaCasedString))
    if isinstance(value, SigmaRegularExpression):
        cased = SigmaRegularExpressionFlag.IGNORECASE not in value.flags
        return ir.Leaf(field, "re", _regexp_text(value), cased=cased)  # Sigma regexes are case-sensitive by default
    if isinstance(value, SigmaCIDRExpression):
        return ir.Leaf(field, "cidr", str(value.network))
    if isinstance(value, SigmaCompareExpression):
        return ir.Leaf(field, "num", (_COMPARE[value.op.name], value.number.number))
    if isinstance(value, SigmaNumber):
        return ir.Leaf(field, "num", ("eq", value.number))
    if isinstance(value, SigmaBool):
        return ir.Leaf(field, "bool", value.boolean)
    if isinstance(value, SigmaNull):
        return ir.Leaf(field, "null", None)
    if isinstance(value, SigmaExists):
        return ir.Leaf(field, "exists", value.exists)
    raise Unsupported(f"{type(value).__name__} values (the {field or 'keyword'} test) are not evaluated")


def _glob_part(part: Any) -> str | int:
    if part == SpecialChars.WILDCARD_MULTI:
        return ir.STAR
    if part == SpecialChars.WILDCARD_SINGLE:
        return ir.ONE
    if isinstance(part, str):
        return part
    raise Unsupported(f"a string part {part!r} is not evaluated")


def _one_line(error: object) -> str:
    return " ".join(str(error).split())[:300]


def lint(dirs: Sequence[Path]) -> list[tuple[str, str]]:
    """(file, message) for every problem: what ``load_rules`` reports, then pySigma's validators."""
    from sigma.validators.core import validators

    problems = list(load_rules(dirs, builtin=False).problems)
    checks = [cls() for name, cls in validators.items() if name not in _OFFLINE_SKIP]
    where: dict[int, tuple[str, str]] = {}  # id(rule) -> (file, title): a finalize issue names its rules
    for path in rule_files(dirs, builtin=False):
        try:
            collection = SigmaCollection.from_yaml(path.read_text(encoding="utf-8"), collect_errors=True)
        except (SigmaError, OSError, UnicodeDecodeError, ValueError, yaml.YAMLError):
            continue  # already a load problem
        for rule in collection.rules:
            where[id(rule)] = (str(path), rule.title)
            for check in checks:
                for issue in _validate(check, lambda c=check, r=rule: c.validate(r)):
                    problems.append((str(path), f"{rule.title}: {issue}"))
    # Validators that compare rules (identifier uniqueness) report once, after every rule was seen.
    for check in checks:
        for issue, rules in _issues(check, check.finalize):
            for source, title in [where[id(rule)] for rule in rules if id(rule) in where] or [("(rules)", "?")]:
                problems.append((source, f"{title}: {issue}"))
    return problems


def _issues(check: Any, run: Any) -> Iterator[tuple[str, list[Any]]]:
    try:
        issues = list(run() or ())
    except Exception as exc:  # a validator that cannot handle a rule shape must not stop the lint
        yield f"{type(check).__name__} could not check it: {_one_line(exc)}", []
        return
    for issue in issues:
        yield f"{issue.severity.name.lower()}: {type(issue).__name__}: {issue.description}", list(issue.rules)


def _validate(check: Any, run: Any) -> Iterator[str]:
    for text, _rules in _issues(check, run):
        yield text


def _regexp_text(value: SigmaRegularExpression) -> str:
    """The expression as written (pySigma keeps it as a SigmaString; ``original`` is its text)."""
    regexp = value.regexp
    text = getattr(regexp, "original", None)
    return text if isinstance(text, str) else str(regexp)
