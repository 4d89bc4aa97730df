"""IAM identity-policy evaluation for one request, as AWS documents it.

Contract:
- ``evaluate(statements, request)``: an applicable Deny wins; else an applicable Allow allows; else
  the request is implicitly denied. A statement applies when its Action (or NotAction) matches the
  action (case-insensitive), its Resource (or NotResource) matches the resource ARN (case-sensitive,
  ``*`` and ``?`` wildcards) and every condition holds.
  https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic_AccessPolicyLanguage_Interplay.html
- Conditions: operators AND together, keys within an operator AND together, the values of one key
  OR together. ``...IfExists`` holds when the key is absent. A negated operator (StringNotEquals,
  ArnNotLike, ...) holds when the key is absent; any other operator fails.
  https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html
- Set operators for multivalued keys: ``ForAllValues:`` holds when every request value matches (and
  when the key is absent or empty); ``ForAnyValue:`` holds when at least one does (never when absent).
  https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-single-vs-multi-valued-context-keys.html
- A request context value is a ``str`` (single-valued key) or a ``tuple`` (multivalued key). A plain
  operator on a multivalued key with more than one value raises: the policy needs a set operator.
- Anything this module does not know (an operator, a statement element, a policy variable) raises
  ``PolicyError``: a template change the check cannot judge must fail loudly, not pass.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

ContextValue = str | tuple[str, ...]


class PolicyError(ValueError):
    """A policy or request this evaluator cannot judge."""


@dataclass(frozen=True)
class Statement:
    effect: str
    actions: tuple[str, ...] = ()
    not_actions: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    not_resources: tuple[str, ...] = ()
    conditions: tuple[tuple[str, str, tuple[str, ...]], ...] = ()  # (operator, key, values)
    sid: str = ""
    source: str = ""  # where it came from, e.g. "WebhookRole/webhook#3"

    @property
    def label(self) -> str:
        return f"{self.source}:{self.sid}" if self.sid else self.source


@dataclass(frozen=True)
class Request:
    action: str
    resource: str
    context: Mapping[str, ContextValue] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    allowed_by: tuple[Statement, ...] = ()
    denied_by: tuple[Statement, ...] = ()
    near_misses: tuple[str, ...] = ()  # statements that matched the action, and why they did not apply

    @property
    def reason(self) -> str:
        if self.denied_by:
            return "explicitly denied by " + ", ".join(s.label for s in self.denied_by)
        if self.allowed:
            return "allowed by " + ", ".join(s.label for s in self.allowed_by)
        if self.near_misses:
            return "implicitly denied: " + "; ".join(self.near_misses)
        return "implicitly denied: no statement names the action"


_STATEMENT_KEYS = {"Sid", "Effect", "Action", "NotAction", "Resource", "NotResource", "Condition"}


def _strings(value: Any, where: str) -> tuple[str, ...]:
    values = value if isinstance(value, list) else [value]
    for v in values:
        if isinstance(v, bool):
            continue
        if not isinstance(v, str | int | float):
            raise PolicyError(f"{where}: expected strings, got {v!r} (an unresolved intrinsic?)")
    return tuple(("true" if v else "false") if isinstance(v, bool) else str(v) for v in values)


def parse_policy(document: Mapping[str, Any], source: str) -> list[Statement]:
    """A policy document's statements; ``source`` names the policy in reasons and reports."""
    raw = document.get("Statement", [])
    statements = raw if isinstance(raw, list) else [raw]
    out = []
    for index, s in enumerate(statements):
        where = f"{source}#{index}"
        unknown = set(s) - _STATEMENT_KEYS
        if unknown:
            raise PolicyError(f"{where}: statement elements this evaluator does not know: {sorted(unknown)}")
        if s.get("Effect") not in ("Allow", "Deny"):
            raise PolicyError(f"{where}: Effect must be Allow or Deny, not {s.get('Effect')!r}")
        if ("Action" in s) == ("NotAction" in s) or ("Resource" in s) == ("NotResource" in s):
            raise PolicyError(f"{where}: needs exactly one of Action/NotAction and of Resource/NotResource")
        conditions = []
        for operator, block in (s.get("Condition") or {}).items():
            _operator(operator)  # unknown operators fail when the policy is read, not when first used
            for key, values in block.items():
                conditions.append((operator, key, _strings(values, f"{where} {operator} {key}")))
        out.append(
            Statement(
                effect=s["Effect"],
                actions=_strings(s.get("Action", []), f"{where} Action"),
                not_actions=_strings(s.get("NotAction", []), f"{where} NotAction"),
                resources=_strings(s.get("Resource", []), f"{where} Resource"),
                not_resources=_strings(s.get("NotResource", []), f"{where} NotResource"),
                conditions=tuple(conditions),
                sid=str(s.get("Sid", "")),
                source=where,
            )
        )
    return out


# ---------------------------------------------------------------- wildcards


@lru_cache(maxsize=4096)
def _glob(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    if "${" in pattern.replace("${*}", "").replace("${?}", "").replace("${$}", ""):
        raise PolicyError(f"policy variable in {pattern!r}: not supported by this evaluator")
    out = []
    i = 0
    while i < len(pattern):
        for escape, literal in (("${*}", "*"), ("${?}", "?"), ("${$}", "$")):
            if pattern.startswith(escape, i):
                out.append(re.escape(literal))
                i += len(escape)
                break
        else:
            char = pattern[i]
            out.append(".*" if char == "*" else "." if char == "?" else re.escape(char))
            i += 1
    return re.compile("".join(out), re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def glob_match(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    """IAM's wildcard match: ``*`` any run of characters (``/`` and ``:`` included), ``?`` one."""
    return _glob(pattern, ignore_case).fullmatch(value) is not None


def _arn_like(pattern: str, value: str) -> bool:
    # Each of the six colon-delimited parts is matched on its own; the resource part keeps its colons.
    p, v = pattern.split(":", 5), value.split(":", 5)
    if len(p) != 6 or len(v) != 6:
        return False
    return all(glob_match(a, b) for a, b in zip(p, v, strict=True))


# ---------------------------------------------------------------- condition operators


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError as exc:
        raise PolicyError(f"not a number: {text!r}") from exc


def _bool(text: str) -> str:
    lowered = text.lower()
    if lowered not in ("true", "false"):
        raise PolicyError(f"Bool operator on a non-boolean value {text!r}")
    return lowered


# Each base operator: (does one request value match one policy value, is it a negated operator).
_MATCHERS: dict[str, tuple[Callable[[str, str], bool], bool]] = {
    "StringEquals": (lambda r, p: r == p, False),
    "StringNotEquals": (lambda r, p: r == p, True),
    "StringEqualsIgnoreCase": (lambda r, p: r.lower() == p.lower(), False),
    "StringNotEqualsIgnoreCase": (lambda r, p: r.lower() == p.lower(), True),
    "StringLike": (lambda r, p: glob_match(p, r), False),
    "StringNotLike": (lambda r, p: glob_match(p, r), True),
    "NumericEquals": (lambda r, p: _number(r) == _number(p), False),
    "NumericNotEquals": (lambda r, p: _number(r) == _number(p), True),
    "NumericLessThan": (lambda r, p: _number(r) < _number(p), False),
    "NumericLessThanEquals": (lambda r, p: _number(r) <= _number(p), False),
    "NumericGreaterThan": (lambda r, p: _number(r) > _number(p), False),
    "NumericGreaterThanEquals": (lambda r, p: _number(r) >= _number(p), False),
    "Bool": (lambda r, p: _bool(r) == _bool(p), False),
    "ArnEquals": (lambda r, p: _arn_like(p, r), False),  # ArnEquals accepts the same wildcards as ArnLike
    "ArnLike": (lambda r, p: _arn_like(p, r), False),
    "ArnNotEquals": (lambda r, p: _arn_like(p, r), True),
    "ArnNotLike": (lambda r, p: _arn_like(p, r), True),
    "IpAddress": (lambda r, p: ipaddress.ip_address(r) in ipaddress.ip_network(p, strict=False), False),
    "NotIpAddress": (lambda r, p: ipaddress.ip_address(r) in ipaddress.ip_network(p, strict=False), True),
}


@dataclass(frozen=True)
class _Operator:
    base: str
    quantifier: str  # "", "ForAllValues", "ForAnyValue"
    if_exists: bool


def _operator(name: str) -> _Operator:
    quantifier, _, base = name.rpartition(":")
    if quantifier not in ("", "ForAllValues", "ForAnyValue"):
        raise PolicyError(f"unknown condition set operator {quantifier!r} in {name!r}")
    if_exists = base.endswith("IfExists") and base != "IfExists"
    if if_exists:
        base = base.removesuffix("IfExists")
    if base != "Null" and base not in _MATCHERS:
        raise PolicyError(f"condition operator {name!r} is not supported by tests/iam/evaluator.py: add it there")
    if base == "Null" and (quantifier or if_exists):
        raise PolicyError(f"{name!r}: Null takes no set operator or IfExists")
    return _Operator(base, quantifier, if_exists)


def condition_holds(operator: str, key: str, policy_values: Sequence[str], context: Mapping[str, ContextValue]) -> bool:
    op = _operator(operator)
    present = key in context
    value = context.get(key)
    values: tuple[str, ...] = () if value is None else (value,) if isinstance(value, str) else value
    if op.base == "Null":
        # true: the key must be absent; false: present. An empty multivalued key counts as absent.
        absent = not values
        return all(absent == (_bool(p) == "true") for p in policy_values)
    matcher, negated = _MATCHERS[op.base]

    def one(request_value: str) -> bool:
        hit = any(matcher(request_value, p) for p in policy_values)
        return not hit if negated else hit

    if op.quantifier == "ForAllValues":
        return all(one(v) for v in values)  # vacuously true over an absent or empty key
    if op.quantifier == "ForAnyValue":
        return any(one(v) for v in values)
    if not present:
        return op.if_exists or negated
    if len(values) != 1:
        raise PolicyError(f"{operator} on multivalued key {key}={values!r}: the policy needs ForAllValues/ForAnyValue")
    return one(values[0])


# ---------------------------------------------------------------- statements


def _action_matches(patterns: Iterable[str], action: str) -> bool:
    return any(glob_match(p, action, ignore_case=True) for p in patterns)


def _resource_matches(patterns: Iterable[str], resource: str) -> bool:
    return any(glob_match(p, resource) for p in patterns)


def action_applies(statement: Statement, action: str) -> bool:
    if statement.not_actions:
        return not _action_matches(statement.not_actions, action)
    return _action_matches(statement.actions, action)


def _miss(statement: Statement, request: Request) -> str | None:
    """Why an action-matching statement does not apply to the request (None: it applies)."""
    if statement.not_resources:
        if _resource_matches(statement.not_resources, request.resource):
            return f"{statement.label} excludes the resource (NotResource)"
    elif not _resource_matches(statement.resources, request.resource):
        return f"{statement.label} covers {list(statement.resources)}, not {request.resource}"
    for operator, key, values in statement.conditions:
        if not condition_holds(operator, key, values, request.context):
            got = request.context.get(key, "<absent>")
            return f"{statement.label} needs {operator} {key} in {list(values)}, request has {got!r}"
    return None


def evaluate(statements: Iterable[Statement], request: Request) -> Decision:
    allows, denies, misses = [], [], []
    for statement in statements:
        if not action_applies(statement, request.action):
            continue
        miss = _miss(statement, request)
        if miss is not None:
            misses.append(miss)
        elif statement.effect == "Deny":
            denies.append(statement)
        else:
            allows.append(statement)
    if denies:
        return Decision(False, denied_by=tuple(denies))
    return Decision(bool(allows), allowed_by=tuple(allows), near_misses=() if allows else tuple(misses))
