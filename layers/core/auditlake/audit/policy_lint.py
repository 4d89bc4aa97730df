"""``auditlake policy lint``: what a policy does that its author probably did not mean.

* a Request/RequestResponse rule that logs bodies of secrets, configmaps, token reviews or token
  requests (secret material in the audit log);
* RequestReceived not omitted (doubles the volume, adds nothing ResponseComplete lacks);
* a rule that can never match because an earlier rule matches every request it would.
"""

from __future__ import annotations

from auditlake.audit.policy import GroupResources, Policy, PolicyRule
from auditlake.model import LEVEL_RANK

# (group, resource, subresource, whether the *request* body carries the secret). A TokenRequest's
# request is harmless (audiences, expiry); the token is in its response.
SENSITIVE = (
    ("", "secrets", "", True),
    ("", "configmaps", "", True),
    ("authentication.k8s.io", "tokenreviews", "", True),
    ("", "serviceaccounts", "token", False),
)
# Verbs whose request body is empty or DeleteOptions: at Request level they log nothing secret.
_NO_SECRET_REQUEST_BODY = frozenset({"get", "list", "watch", "delete", "deletecollection"})


def lint(policy: Policy) -> list[str]:
    warnings = list(policy.warnings)
    warnings += _sensitive_bodies(policy)
    warnings += _request_received(policy)
    warnings += _shadowed(policy)
    return warnings


def _label(group: str, resource: str, sub: str) -> str:
    return resource + (f"/{sub}" if sub else "") + (f" ({group})" if group else "")


def _sensitive_bodies(policy: Policy) -> list[str]:
    out = []
    for group, resource, sub, request_leaks in SENSITIVE:
        for index, rule in enumerate(policy.rules):
            entry = _covering_entry(rule, group, resource, sub)
            if entry is False:
                continue
            reads_only = bool(rule.verbs) and rule.verbs <= _NO_SECRET_REQUEST_BODY
            threshold = "Request" if request_leaks and not reads_only else "RequestResponse"
            logs_bodies = LEVEL_RANK[rule.level] >= LEVEL_RANK[threshold]
            unconditional = not (rule.users or rule.user_groups or rule.verbs or rule.namespaces) and not (
                isinstance(entry, GroupResources) and entry.resource_names
            )
            if logs_bodies:
                scope = "" if unconditional else " for some requests"
                out.append(
                    f"rules[{index}] logs {rule.level} bodies of {_label(group, resource, sub)}{scope}: "
                    "secret material would be written to the audit log (use Metadata)"
                )
            if unconditional:
                break
    return out


def _covering_entry(rule: PolicyRule, group: str, resource: str, sub: str) -> GroupResources | bool:
    """False if the rule cannot match that resource; True if it matches any resource; else the entry."""
    if rule.non_resource_urls and not (rule.resources or rule.namespaces):
        return False
    if not rule.resources:
        return True
    combined = f"{resource}/{sub}" if sub else resource
    for entry in rule.resources:
        if entry.group not in (group, "*"):
            continue
        if not entry.resources:
            return entry
        for pattern in entry.resources:
            if (
                pattern in (combined, "*")
                or (sub and pattern == f"*/{sub}")
                or (pattern.endswith("/*") and pattern[:-2] == resource)
            ):
                return entry
    return False


def _request_received(policy: Policy) -> list[str]:
    if "RequestReceived" in policy.omit_stages:
        return []
    logged = [
        str(i)
        for i, rule in enumerate(policy.rules)
        if rule.level != "None" and "RequestReceived" not in rule.omit_stages
    ]
    if not logged:
        return []
    return [
        "RequestReceived is not omitted (rules " + ", ".join(logged) + "): it doubles the event volume; "
        'add omitStages: ["RequestReceived"] at the policy level'
    ]


def _shadowed(policy: Policy) -> list[str]:
    out = []
    for j, later in enumerate(policy.rules):
        for i in range(j):
            if _covers(policy.rules[i], later):
                out.append(f"rules[{j}] never matches: rules[{i}] matches every request it would")
                break
    return out


def _subset(narrow: frozenset[str], wide: frozenset[str]) -> bool:
    """Does a field with values ``wide`` accept everything a field with ``narrow`` accepts?"""
    return not wide or (bool(narrow) and narrow <= wide)


def _covers(first: PolicyRule, later: PolicyRule) -> bool:
    if not (
        _subset(later.users, first.users)
        and _subset(later.user_groups, first.user_groups)
        and _subset(later.verbs, first.verbs)
    ):
        return False
    first_resource = bool(first.resources or first.namespaces)
    later_resource = bool(later.resources or later.namespaces)
    if not first_resource and not first.non_resource_urls:
        return True
    if first_resource:
        if not later_resource or not _subset(later.namespaces, first.namespaces):
            return False
        if not first.resources:
            return True
        return bool(later.resources) and all(any(_entry_covers(a, b) for a in first.resources) for b in later.resources)
    if later_resource or not later.non_resource_urls:
        return False
    return all(any(_url_covers(a, b) for a in first.non_resource_urls) for b in later.non_resource_urls)


def _entry_covers(first: GroupResources, later: GroupResources) -> bool:
    if first.group not in ("*", later.group):
        return False
    if not first.resources:
        return True
    if not later.resources or not _subset(frozenset(later.resource_names), frozenset(first.resource_names)):
        return False
    return all(any(_pattern_covers(a, b) for a in first.resources) for b in later.resources)


def _pattern_covers(first: str, later: str) -> bool:
    if first in ("*", later):
        return True
    if first.endswith("/*"):
        base = first[:-2]
        return later == base or (later.startswith(base + "/") and not later.startswith("*"))
    if first.startswith("*/"):
        return later.endswith(first[1:]) and later != first[1:]
    return False


def _url_covers(first: str, later: str) -> bool:
    if first in ("*", later):
        return True
    return first.endswith("*") and later.rstrip("*").startswith(first.rstrip("*"))
