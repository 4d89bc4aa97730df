"""``RuleEngine``: the ``Detector`` every ingest path calls, built once per rule set (cold start).

Audit rules are indexed by the resource and verb their top-level condition pins
(``objectRef.resource``/``verb`` equal to literals, or an OR of them): per event, one dict lookup
finds the candidate rules (cached per (resource, verb) pair), then only those run. Events of the
stage RequestReceived are not evaluated: the same request's ResponseStarted/ResponseComplete copy
is, and a finding per request is what the archive keeps (key: cluster, rule_id, audit_id).

Kubernetes Events are read with events.k8s.io/v1 names; a core/v1 Event is read through the same
names: ``involvedObject`` → ``regarding``, ``message`` → ``note``, ``source.component`` →
``reportingController`` (unless it has its own), ``source.host`` → ``reportingInstance``.

A finding never holds secret material: ``details.fields`` names each path whose test held; the
value is kept only for metadata (verb, names, user, IPs ...): under ``requestObject``,
``responseObject`` and ``annotations`` it is ``<matched>`` (a ConfigMap's key is named, never its
value), and ``requestURI`` loses its query string.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from auditlake import timestamps
from auditlake.detect import ir
from auditlake.detect.compile import (
    Doc,
    audit_scalar,
    exact_values,
    explain,
    fields_of,
    memoised,
    predicate,
    segments,
)
from auditlake.detect.matches import Match
from auditlake.jsonio import dumps_str
from auditlake.model import FindingRecord

SKIPPED_STAGE = "RequestReceived"
# What a finding never holds the value of: bodies and annotations, and what the pipeline redacts in
# the archive too (a response's message and details quote bodies; user extras carry tokens' claims).
HIDDEN_ROOTS = ("requestObject", "responseObject", "annotations")
HIDDEN_FIELDS = (("responseStatus", "message"), ("responseStatus", "details"), ("user", "extra"),
                 ("impersonatedUser", "extra"))  # fmt: skip
MATCHED = "<matched>"
_MAX_DETAIL = 256


class _Compiled:
    __slots__ = ("fields", "rule", "test")

    def __init__(self, rule: ir.Rule, fields: tuple[str, ...]) -> None:
        self.rule = rule
        audit = rule.logsource == "audit"
        self.test = predicate(rule.condition, audit_scalar if audit else _none)
        read = fields_of(rule.condition)
        only = next(iter(read)) if len(read) == 1 else None
        getter = audit_scalar(only) if audit and only is not None else None
        if getter is not None:
            self.test = memoised(self.test, getter)
        self.fields = fields  # what correlations over this rule group or count by


class RuleEngine:
    def __init__(self, rules: ir.RuleSet) -> None:
        self.rules = rules
        needed: dict[str, set[str]] = {}
        for corr in rules.correlations:
            for ref in corr.rules:
                needed.setdefault(ref, set()).update(corr.group_by, (corr.field,) if corr.field else ())
        compiled = [
            _Compiled(rule, tuple(sorted(needed.get(rule.id, set()) | needed.get(rule.name or "", set()))))
            for rule in rules.rules
        ]
        self._events = tuple(c for c in compiled if c.rule.logsource == "events")
        self._index: dict[tuple[str | None, str | None], list[_Compiled]] = {}
        # Rules that pin neither resource nor verb but a response code or a user: found by that.
        self._by_code: dict[int, list[_Compiled]] = {}
        self._by_user: dict[str, list[_Compiled]] = {}
        for item in compiled:
            if item.rule.logsource != "audit":
                continue
            condition = item.rule.condition
            resources = _pinned(condition, "objectRef.resource")
            verbs = _pinned(condition, "verb")
            unpinned = resources is None and verbs is None
            codes = _pinned_codes(condition) if unpinned else None
            users = _pinned(condition, "user.username") if unpinned and codes is None else None
            if codes is not None:
                for code in codes:
                    self._by_code.setdefault(code, []).append(item)
            elif users is not None:
                for user in users:
                    self._by_user.setdefault(user, []).append(item)
            else:
                for resource in resources or (None,):
                    for verb in verbs or (None,):
                        self._index.setdefault((resource, verb), []).append(item)
        self._candidates: dict[tuple[str, str], tuple[_Compiled, ...]] = {}

    def __len__(self) -> int:
        return len(self.rules.rules)

    def _for(self, resource: str, verb: str) -> tuple[_Compiled, ...]:
        key = (resource, verb)
        found = self._candidates.get(key)
        if found is None:
            index = self._index
            found = tuple(
                index.get((resource, verb), [])
                + index.get((resource, None), [])
                + index.get((None, verb), [])
                + index.get((None, None), [])
            )
            if len(self._candidates) < 10_000:  # resources and verbs are the cluster's: a bound, not a leak
                self._candidates[key] = found
        return found

    def audit(self, event: Any, cluster: str, ingested_at: str) -> Sequence[Match]:
        if event.stage == SKIPPED_STAGE:
            return ()
        ref = event.objectRef
        resource = (ref.resource or "").lower() if ref is not None else ""
        candidates = self._for(resource, (event.verb or "").lower())
        if self._by_code:
            status = event.responseStatus
            by_code = self._by_code.get(status.code) if status is not None else None
            if by_code:
                candidates += tuple(by_code)
        if self._by_user:
            user = event.user
            by_user = self._by_user.get((user.username or "").lower()) if user is not None else None
            if by_user:
                candidates += tuple(by_user)
        if not candidates:
            return ()
        doc = Doc(event)
        matches = []
        for item in candidates:
            if item.test(doc):
                matches.append(self._match(item, doc, _audit_finding(item.rule, event, cluster, ingested_at)))
        return matches

    def events(self, event: Mapping[str, Any], cluster: str, observed_at: str) -> Sequence[Match]:
        if not self._events:
            return ()
        view = events_view(event)
        doc = Doc(view)
        return [
            self._match(item, doc, _event_finding(item.rule, view, cluster, observed_at))
            for item in self._events
            if item.test(doc)
        ]

    @staticmethod
    def _match(item: _Compiled, doc: Doc, finding: Any) -> Match:
        rule = item.rule
        if rule.generate:  # a base rule's matches are counted, not stored: no details to explain
            finding.details = dumps_str({"fields": _details(explain(rule.condition, doc))})
        fields = {name: _field_text(doc, name) for name in item.fields}
        return Match(rule.id, rule.name, rule.level, rule.generate, finding, fields)


def _none(path: str) -> None:
    return None


def _pinned(node: ir.Node, field: str) -> frozenset[str] | None:
    """The literals the condition's top level pins ``field`` to (the rule cannot match otherwise)."""
    values = exact_values(node, field)
    if values is not None:
        return values
    if isinstance(node, ir.All):
        for part in node.parts:
            found = _pinned(part, field)
            if found is not None:
                return found
    return None


def _pinned_codes(node: ir.Node) -> frozenset[int] | None:
    """The response codes the condition's top level pins (``responseStatus.code: 403``)."""
    if isinstance(node, ir.Leaf):
        if node.field == "responseStatus.code" and node.op == "num" and node.value[0] == "eq":
            number = node.value[1]
            return frozenset({int(number)}) if float(number).is_integer() else None
        return None
    if isinstance(node, ir.AnyOf):
        found: set[int] = set()
        for part in node.parts:
            codes = _pinned_codes(part)
            if codes is None:
                return None
            found |= codes
        return frozenset(found)
    if isinstance(node, ir.All):
        for part in node.parts:
            codes = _pinned_codes(part)
            if codes is not None:
                return codes
    return None


def hidden(path: str) -> bool:
    """Whether a field's value may not be kept (its path read as the engine reads it: quotes off)."""
    parts = segments(path)
    return parts[0] in HIDDEN_ROOTS or tuple(parts[:2]) in HIDDEN_FIELDS


def _field_text(doc: Doc, field: str) -> str | None:
    if hidden(field):
        return None  # never a body value, not even as a correlation's group
    values = [str(v) for v in doc.values(field) if not isinstance(v, dict | list)]
    if field == "requestURI":  # a query string may carry a token (exec commands, ?token=)
        values = [value.split("?", 1)[0] for value in values]
    return ",".join(values) if values else None


def _details(found: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, value in found.items():
        if hidden(path):
            out[path] = MATCHED
        elif path == "requestURI" and isinstance(value, str):
            out[path] = value.split("?", 1)[0][:_MAX_DETAIL]
        elif isinstance(value, str | int | float | bool):
            out[path] = value if not isinstance(value, str) else value[:_MAX_DETAIL]
        else:
            out[path] = MATCHED
    return out


def _time(*candidates: Any, default: str) -> str:
    for value in candidates:
        if isinstance(value, str) and value:
            try:
                return timestamps.canonical(value)
            except ValueError:
                continue
    return default


def _audit_finding(rule: ir.Rule, event: Any, cluster: str, ingested_at: str) -> Any:
    ref = event.objectRef
    user = event.user
    resource = None
    if ref is not None and ref.resource:
        resource = ref.resource + (f"/{ref.subresource}" if ref.subresource else "")
    return FindingRecord(
        rule.id,
        rule.title,
        rule.level,
        cluster,
        event.auditID,
        _time(event.requestReceivedTimestamp, event.stageTimestamp, event.timestamp, default=ingested_at),
        user.username if user is not None else None,
        event.verb,
        resource,
        ref.namespace if ref is not None else None,
        ref.name if ref is not None else None,
        list(event.sourceIPs) if event.sourceIPs else None,
        event.userAgent,
        None,
        ingested_at,
    )


def events_view(event: Mapping[str, Any]) -> dict[str, Any]:
    """An Event with events.k8s.io/v1 names (a core/v1 Event's fields read through them)."""
    view = dict(event)
    if "regarding" not in view and isinstance(view.get("involvedObject"), dict):
        view["regarding"] = view["involvedObject"]
    if "note" not in view and isinstance(view.get("message"), str):
        view["note"] = view["message"]
    source = _mapping(view.get("source"))
    if not isinstance(view.get("reportingController"), str) or not view.get("reportingController"):
        view["reportingController"] = _text(view.get("reportingComponent")) or _text(source.get("component"))
    if not isinstance(view.get("reportingInstance"), str) or not view.get("reportingInstance"):
        view["reportingInstance"] = _text(source.get("host"))
    return view


def _text(value: Any) -> str | None:
    """A string field as a finding may hold it (an Event's other shapes are not a finding's column)."""
    return value if isinstance(value, str) and value else None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _event_finding(rule: ir.Rule, view: Mapping[str, Any], cluster: str, observed_at: str) -> Any:
    metadata = _mapping(view.get("metadata"))
    regarding = _mapping(view.get("regarding"))
    series = _mapping(view.get("series"))
    at = _time(
        view.get("eventTime"),
        series.get("lastObservedTime"),
        view.get("lastTimestamp"),
        view.get("deprecatedLastTimestamp"),
        view.get("firstTimestamp"),
        metadata.get("creationTimestamp"),
        default=observed_at,
    )
    return FindingRecord(
        rule.id,
        rule.title,
        rule.level,
        cluster,
        metadata.get("uid"),
        at,
        view.get("reportingController"),
        None,
        regarding.get("kind"),
        regarding.get("namespace") or metadata.get("namespace"),
        regarding.get("name"),
        None,
        None,
        None,
        observed_at,
    )
