"""The rules' one intermediate form: what a Sigma rule (or correlation rule) says, with no Sigma
left in it. pySigma parses the YAML (``detect/sigma.py``); everything after reads only this:
the ingest-time predicates (``detect/compile.py``), the history hunt's SQL (``query/hunt.py``),
and the compiled rules a stack loads from S3 (``auditlake rules push``), which is why every node
is plain data with a JSON form (``to_json``/``from_json``) and the Lambda never needs pySigma.

Conditions are trees of ``All``/``AnyOf``/``Not`` over ``Leaf`` tests on one field. A field is the
event's JSON path as the rule names it after the processing pipeline (``objectRef.resource``,
``requestObject.spec.containers.securityContext.privileged``); a path through a list tests every
element (any may match). ``field=None`` is a keyword search (any string value of the event).

Leaf ops and their ``value``:
- ``glob``: a tuple of parts, each a literal ``str`` or a wildcard (``STAR`` = any run of
  characters, ``ONE`` = one character); ``cased`` False (Sigma's default) compares case-folded.
  A value with no wildcard is equality; ``contains`` is (STAR, "x", STAR) and so on.
- ``re``: a regular expression (RE2 syntax, searched, not anchored); ``cased`` as above.
- ``cidr``: a network (``10.0.0.0/8``); matches an IP string inside it.
- ``num``: (comparison, number): comparison one of ``eq lt lte gt gte``; matches numbers and
  numeric strings.
- ``bool``: True/False, matches JSON booleans (and "true"/"false" strings).
- ``null``: value None; matches a field that is absent or null.
- ``exists``: True/False: whether the field is present (non-null).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

STAR = 1  # a glob part: any run of characters (Sigma's ``*``)
ONE = 0  # a glob part: exactly one character (Sigma's ``?``)

LOGSOURCES = ("audit", "events")  # what a rule reads: audit events, or Kubernetes Events
CORRELATION_TYPES = ("event_count", "value_count")
COMPARISONS = ("eq", "lt", "lte", "gt", "gte")


@dataclass(frozen=True)
class Leaf:
    field: str | None
    op: Literal["glob", "re", "cidr", "num", "bool", "null", "exists"]
    value: Any
    cased: bool = False


@dataclass(frozen=True)
class All:
    parts: tuple[Node, ...]


@dataclass(frozen=True)
class AnyOf:
    parts: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    part: Node


Node: TypeAlias = Leaf | All | AnyOf | Not


@dataclass(frozen=True)
class Rule:
    """One detection rule. ``generate`` False: its matches only feed correlation rules (Sigma's
    ``generate``), they are not findings of their own. ``source`` names the file it came from."""

    id: str
    title: str
    level: str  # model.SIGMA_LEVELS
    logsource: str  # LOGSOURCES
    condition: Node
    name: str | None = None
    description: str = ""
    tags: tuple[str, ...] = ()
    falsepositives: tuple[str, ...] = ()
    generate: bool = True
    source: str = ""


@dataclass(frozen=True)
class Correlation:
    """A Sigma correlation rule: ``type`` counts the matches of ``rules`` (ids or names of base
    rules) per ``group_by`` values within ``timespan_seconds``: every match (``event_count``) or
    the distinct values of ``field`` (``value_count``); it fires when the count passes
    ``condition`` (comparison, threshold), e.g. ("gte", 10)."""

    id: str
    title: str
    level: str
    type: str  # CORRELATION_TYPES
    rules: tuple[str, ...]
    group_by: tuple[str, ...]
    timespan_seconds: int
    condition: tuple[str, int]
    field: str | None = None  # value_count's field
    name: str | None = None
    description: str = ""
    generate: bool = True
    source: str = ""


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...] = ()
    correlations: tuple[Correlation, ...] = ()
    # Rules that could not be loaded: (file, one-line reason). Loading never stops at a bad file.
    problems: tuple[tuple[str, str], ...] = field(default=())

    def __add__(self, other: RuleSet) -> RuleSet:
        return RuleSet(self.rules + other.rules, self.correlations + other.correlations, self.problems + other.problems)


def node_to_json(node: Node) -> Any:
    if isinstance(node, Leaf):
        value = list(node.value) if isinstance(node.value, tuple) else node.value
        return {"field": node.field, "op": node.op, "value": value, "cased": node.cased}
    if isinstance(node, All):
        return {"all": [node_to_json(part) for part in node.parts]}
    if isinstance(node, AnyOf):
        return {"any": [node_to_json(part) for part in node.parts]}
    return {"not": node_to_json(node.part)}


def node_from_json(data: Mapping[str, Any]) -> Node:
    if "all" in data:
        return All(tuple(node_from_json(part) for part in data["all"]))
    if "any" in data:
        return AnyOf(tuple(node_from_json(part) for part in data["any"]))
    if "not" in data:
        return Not(node_from_json(data["not"]))
    value = data["value"]
    return Leaf(data["field"], data["op"], tuple(value) if isinstance(value, list) else value, bool(data["cased"]))


def to_json(rules: RuleSet) -> dict[str, Any]:
    """The JSON form of compiled rules (problems are not carried: a pushed set has none)."""
    return {
        "rules": [{**_plain(rule), "condition": node_to_json(rule.condition)} for rule in rules.rules],
        "correlations": [_plain(corr) for corr in rules.correlations],
    }


def from_json(data: Mapping[str, Any]) -> RuleSet:
    rules = tuple(
        Rule(**{**_tuples(item, ("tags", "falsepositives")), "condition": node_from_json(item["condition"])})
        for item in data.get("rules", ())
    )
    correlations = tuple(
        Correlation(**_tuples(item, ("rules", "group_by", "condition"))) for item in data.get("correlations", ())
    )
    return RuleSet(rules, correlations)


def _plain(item: Rule | Correlation) -> dict[str, Any]:
    return {
        name: list(value) if isinstance(value, tuple) else value
        for name, value in vars(item).items()
        if name != "condition" or isinstance(item, Correlation)
    }


def _tuples(item: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {key: tuple(value) if key in names else value for key, value in item.items()}
