"""The pipeline audit policy: ``audit.k8s.io/v1`` Policy, evaluated exactly as kube-apiserver does.

Matching follows ``k8s.io/apiserver/pkg/audit/policy/checker.go`` (facts in the shared corpus,
``policy/SEMANTICS.md``): the first matching rule decides; users/userGroups are compared with the
*authenticated* user; a rule naming namespaces or resources only matches resource requests; the
effective omitStages of a rule is the union of the policy's and the rule's.

Managed clusters (EKS) run a policy nobody can change; applying a pipeline policy to what they send
is how such a cluster is filtered and downgraded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, NamedTuple

from auditlake.model import LEVELS, STAGES

API_VERSION = "audit.k8s.io/v1"
_RULE_FIELDS = {
    "level",
    "users",
    "userGroups",
    "verbs",
    "resources",
    "namespaces",
    "nonResourceURLs",
    "omitStages",
    "omitManagedFields",
}
_POLICY_FIELDS = {"apiVersion", "kind", "metadata", "rules", "omitStages", "omitManagedFields"}
_GROUP_RESOURCE_FIELDS = {"group", "resources", "resourceNames"}
# A DNS-1123 subdomain, as the API server validates group names.
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class PolicyError(ValueError):
    """The policy does not load; ``errors`` lists every problem found."""

    def __init__(self, errors: Sequence[str]) -> None:
        super().__init__("invalid audit policy: " + "; ".join(errors))
        self.errors = list(errors)


class RequestAttributes(NamedTuple):
    """The authorizer attributes a rule is matched against. ``user_name is None`` = no user.

    A NamedTuple: cheap to build once per event, and hashable, so decisions can be cached."""

    user_name: str | None
    user_groups: tuple[str, ...]
    verb: str
    resource_request: bool
    path: str = ""
    namespace: str = ""
    api_group: str = ""
    api_version: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""


@dataclass(frozen=True)
class GroupResources:
    group: str
    resources: tuple[str, ...] = ()
    resource_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class PolicyRule:
    level: str
    users: frozenset[str] = frozenset()
    user_groups: frozenset[str] = frozenset()
    verbs: frozenset[str] = frozenset()
    resources: tuple[GroupResources, ...] = ()
    namespaces: frozenset[str] = frozenset()
    non_resource_urls: tuple[str, ...] = ()
    omit_stages: frozenset[str] = frozenset()  # the rule's own stages
    omit_managed_fields: bool | None = None

    def matches(self, attrs: RequestAttributes) -> bool:
        if self.users and (attrs.user_name is None or attrs.user_name not in self.users):
            return False
        if self.user_groups and (attrs.user_name is None or not any(g in self.user_groups for g in attrs.user_groups)):
            return False
        if self.verbs and attrs.verb not in self.verbs:
            return False
        if self.namespaces or self.resources:
            return self._matches_resource(attrs)
        if self.non_resource_urls:
            return not attrs.resource_request and any(path_matches(attrs.path, spec) for spec in self.non_resource_urls)
        return True

    def _matches_resource(self, attrs: RequestAttributes) -> bool:
        if not attrs.resource_request:
            return False
        if self.namespaces and attrs.namespace not in self.namespaces:
            return False
        if not self.resources:
            return True
        resource, sub = attrs.resource, attrs.subresource
        combined = f"{resource}/{sub}" if sub else resource
        for gr in self.resources:
            if gr.group not in (attrs.api_group, "*"):
                continue
            if not gr.resources:
                return True
            if gr.resource_names and attrs.name not in gr.resource_names:
                continue
            for pattern in gr.resources:
                if pattern in (combined, "*"):
                    return True
                if sub and pattern.startswith("*/") and pattern[2:] == sub:
                    return True
                if pattern.endswith("/*") and pattern[:-2] == resource:
                    return True
        return False


def path_matches(path: str, spec: str) -> bool:
    if spec in ("*", path):
        return True
    return spec.endswith("*") and path.startswith(spec.rstrip("*"))


@dataclass(frozen=True)
class Decision:
    level: str
    omit_stages: frozenset[str]
    omit_managed_fields: bool
    rule_index: int | None  # None when no rule matched

    def drops(self, stage: str) -> bool:
        return self.level == "None" or stage in self.omit_stages


_CACHE_SIZE = 16_384


@dataclass(frozen=True)
class Policy:
    rules: tuple[PolicyRule, ...]
    omit_stages: frozenset[str] = frozenset()
    omit_managed_fields: bool = False
    warnings: tuple[str, ...] = field(default=(), compare=False)
    # Audit traffic repeats itself (kubelets, controllers): decisions are cached per attributes.
    _cache: dict[tuple[Any, ...], Decision] = field(default_factory=dict, compare=False, repr=False)

    @cached_property
    def uses_names(self) -> bool:
        return any(gr.resource_names for rule in self.rules for gr in rule.resources)

    def decide(  # noqa: PLR0917 - positional: called once per event
        self,
        user_name: str | None,
        groups: list[str] | None,
        verb: str | None,
        resource: str | None,
        subresource: str | None,
        namespace: str | None,
        api_group: str | None,
        name: str | None,
        uri: str | None,
    ) -> Decision:
        """The decision for one audit event, from its typed fields; cached.

        The cache key is the raw values; those no rule reads are left out (the path of a resource
        request, the name when no rule has resourceNames). Raw values can only cost a cache miss
        (None vs ""), never a wrong decision: attributes are derived properly on a miss.
        """
        group_key = tuple(groups) if groups else ()
        if resource:
            named = name if self.uses_names else None
            key: tuple[Any, ...] = (user_name, group_key, verb, resource, subresource, namespace, api_group, named)
        else:
            key = (user_name, group_key, verb, uri.split("?", 1)[0] if uri else "")
        decision = self._cache.get(key)
        if decision is None:
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            attrs = request_attributes(
                user_name, groups, verb, resource, subresource, namespace, api_group, name, uri,
                keep_name=self.uses_names,
            )  # fmt: skip
            decision = self._cache[key] = self.evaluate(attrs)
        return decision

    def evaluate(self, attrs: RequestAttributes) -> Decision:
        for index, rule in enumerate(self.rules):
            if rule.matches(attrs):
                managed = rule.omit_managed_fields
                return Decision(
                    rule.level,
                    self.omit_stages | rule.omit_stages,
                    self.omit_managed_fields if managed is None else managed,
                    index,
                )
        return Decision("None", self.omit_stages, self.omit_managed_fields, None)


# ---------------------------------------------------------------- loading and validation


def load_policy(text: str | bytes) -> Policy:
    """Parse YAML/JSON text as kube-apiserver's policy loader does; PolicyError lists every problem."""
    import yaml  # only functions configured with a policy pay for importing it

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError([f"not YAML/JSON: {exc}"]) from None
    return policy_from_dict(doc)


def policy_from_dict(doc: Any) -> Policy:
    errors: list[str] = []
    warnings: list[str] = []
    if not isinstance(doc, Mapping):
        raise PolicyError(["a policy must be a mapping with apiVersion, kind and rules"])
    if doc.get("apiVersion") != API_VERSION or doc.get("kind") != "Policy":
        errors.append(
            f"apiVersion must be {API_VERSION} and kind Policy "
            f"(got {doc.get('apiVersion')!r}, {doc.get('kind')!r}; v1alpha1/v1beta1 were removed in 1.24)"
        )
    _warn_unknown(doc, _POLICY_FIELDS, "policy", warnings)
    omit = _stages(doc.get("omitStages"), "omitStages", errors)
    managed = _optional_bool(doc.get("omitManagedFields"), "omitManagedFields", errors)
    raw_rules = doc.get("rules")
    if raw_rules is None:
        raw_rules = []
    if not isinstance(raw_rules, list):
        errors.append("rules must be a list")
        raw_rules = []
    if not raw_rules:
        errors.append("loaded illegal policy with 0 rules")
    rules = []
    for index, raw in enumerate(raw_rules):
        rule = _rule(raw, f"rules[{index}]", errors, warnings)
        if rule is not None:
            rules.append(rule)
    if errors:
        raise PolicyError(errors)
    return Policy(tuple(rules), omit, bool(managed), tuple(warnings))


def _rule(raw: Any, where: str, errors: list[str], warnings: list[str]) -> PolicyRule | None:
    if not isinstance(raw, Mapping):
        errors.append(f"{where}: a rule must be a mapping")
        return None
    _warn_unknown(raw, _RULE_FIELDS, where, warnings)
    level = raw.get("level")
    if level is None or level == "":
        errors.append(f"{where}.level: required")
    elif level not in LEVELS:
        errors.append(f"{where}.level: {level!r} is not one of {', '.join(LEVELS)}")
    resources = _group_resources(raw.get("resources"), f"{where}.resources", errors, warnings)
    namespaces = _strings(raw.get("namespaces"), f"{where}.namespaces", errors)
    urls = _strings(raw.get("nonResourceURLs"), f"{where}.nonResourceURLs", errors)
    if urls and (resources or namespaces):
        errors.append(f"{where}: rules cannot apply to both regular resources and non-resource URLs")
    for url in urls:
        if url == "*":
            continue
        if not url.startswith("/"):
            errors.append(f"{where}.nonResourceURLs: {url!r} must start with '/'")
        elif "*" in url.rstrip("*"):
            errors.append(f"{where}.nonResourceURLs: {url!r} may only use '*' as the last character")
    return PolicyRule(
        level=str(level),
        users=frozenset(_strings(raw.get("users"), f"{where}.users", errors)),
        user_groups=frozenset(_strings(raw.get("userGroups"), f"{where}.userGroups", errors)),
        verbs=frozenset(_strings(raw.get("verbs"), f"{where}.verbs", errors)),
        resources=tuple(resources),
        namespaces=frozenset(namespaces),
        non_resource_urls=tuple(urls),
        omit_stages=_stages(raw.get("omitStages"), f"{where}.omitStages", errors),
        omit_managed_fields=_optional_bool(raw.get("omitManagedFields"), f"{where}.omitManagedFields", errors),
    )


def _group_resources(raw: Any, where: str, errors: list[str], warnings: list[str]) -> list[GroupResources]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        errors.append(f"{where}: must be a list")
        return []
    out = []
    for index, entry in enumerate(raw):
        here = f"{where}[{index}]"
        if not isinstance(entry, Mapping):
            errors.append(f"{here}: must be a mapping")
            continue
        _warn_unknown(entry, _GROUP_RESOURCE_FIELDS, here, warnings)
        group = entry.get("group", "")
        if group is None:
            group = ""
        if not isinstance(group, str):
            errors.append(f"{here}.group: must be a string")
            continue
        if group not in ("", "*") and not _DNS_SUBDOMAIN.match(group):
            errors.append(f"{here}.group: {group!r} is not a DNS subdomain (use the group without a version)")
        names = _strings(entry.get("resourceNames"), f"{here}.resourceNames", errors)
        resources = _strings(entry.get("resources"), f"{here}.resources", errors)
        if names and not resources:
            errors.append(f"{here}.resourceNames: requires resources")
        out.append(GroupResources(group, tuple(resources), tuple(names)))
    return out


def _strings(raw: Any, where: str, errors: list[str]) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
        errors.append(f"{where}: must be a list of strings")
        return []
    return list(raw)


def _stages(raw: Any, where: str, errors: list[str]) -> frozenset[str]:
    stages = _strings(raw, where, errors)
    for stage in stages:
        if stage not in STAGES:
            errors.append(f"{where}: {stage!r} is not one of {', '.join(STAGES)}")
    return frozenset(stages)


def _optional_bool(raw: Any, where: str, errors: list[str]) -> bool | None:
    if raw is None or isinstance(raw, bool):
        return raw
    errors.append(f"{where}: must be true or false")
    return None


def _warn_unknown(raw: Mapping[str, Any], known: set[str], where: str, warnings: list[str]) -> None:
    # kube-apiserver decodes strictly, then falls back to lenient decoding with a warning.
    for key in raw:
        if key not in known:
            warnings.append(f"{where}: unknown field {key!r} ignored")


# ---------------------------------------------------------------- attributes of an audit event


def attributes_of(event: Mapping[str, Any], *, keep_name: bool = True) -> RequestAttributes:
    """The authorizer attributes of a recorded audit event given as parsed JSON (any shape)."""

    def text(value: Any) -> str | None:
        return value if type(value) is str else None

    user: Mapping[str, Any] = event.get("user") if type(event.get("user")) is dict else {}  # type: ignore[assignment]
    ref: Mapping[str, Any] = event.get("objectRef") if type(event.get("objectRef")) is dict else {}  # type: ignore[assignment]
    groups = user.get("groups")
    return request_attributes(
        text(user.get("username")),
        [g for g in groups if type(g) is str] if type(groups) is list else None,
        text(event.get("verb")),
        text(ref.get("resource")),
        text(ref.get("subresource")),
        text(ref.get("namespace")),
        text(ref.get("apiGroup")),
        text(ref.get("name")),
        text(event.get("requestURI")),
        keep_name=keep_name,
    )


def request_attributes(  # noqa: PLR0917 - mirrors the event's fields
    user_name: str | None,
    groups: list[str] | None,
    verb: str | None,
    resource: str | None,
    subresource: str | None,
    namespace: str | None,
    api_group: str | None,
    name: str | None,
    uri: str | None,
    *,
    keep_name: bool = True,
) -> RequestAttributes:
    """Rebuild the authorizer attributes kube-apiserver evaluated for a recorded request.

    Resource requests carry no path (no resource rule reads it); ``keep_name=False`` drops the object
    name, which only rules with resourceNames read.
    """
    group_tuple = tuple(groups or ())
    # Failed authentication is audited with an empty user: no user, so no users/userGroups match.
    user = user_name if user_name is not None and (user_name or group_tuple) else None
    if not resource:
        return RequestAttributes(user, group_tuple, verb or "", False, (uri or "").split("?", 1)[0])
    sub = subresource or ""
    # objectRef.name of a create is back-filled from the body; the authorizer saw none.
    kept_name = (name or "") if keep_name and (sub or verb != "create") else ""
    return RequestAttributes(
        user, group_tuple, verb or "", True, "", namespace or "", api_group or "", "", resource, sub, kept_name
    )
