"""Secret material never reaches storage.

The rules, applied at ingest whatever level the cluster's policy used:

1. Bodies (requestObject, responseObject) of sensitive resources are dropped whole: ``secrets``,
   ``configmaps`` (configurable), ``tokenreviews``, ``serviceaccounts/token`` and a configurable
   list (``RedactResources``, custom resources included: ``objects.kubernetes.crossplane.io``).
   Whole, because patches, lists and TokenReviews carry secret values in different places,
   and ``last-applied-configuration`` annotations repeat them. The resource is the objectRef's, and
   also the one the requestURI names (an event without objectRef, or whose objectRef disagrees);
   an objectRef without apiGroup matches a listed resource of that name in any group.
2. A Secret or SecretList (kind compared case-insensitively, and any of a duplicated ``kind`` key)
   nested anywhere in any other body is replaced by a stub that keeps only its kind, name and
   namespace.
3. Strings that hold JSON documents (``kubectl.kubernetes.io/last-applied-configuration``, the
   admission webhooks' ``patch.webhook.admission.k8s.io`` annotations) are bodies too: they are
   parsed and redacted by the same rules, and stored re-encoded; one that looks like JSON and
   mentions a Secret kind but does not parse is replaced by ``[redacted]``.
4. Patches aimed at an embedded Secret carry no ``kind``: ``stringData`` (a Secret-only field) of
   any object that is not itself a Secret is replaced by ``[redacted]``; in a patch request body
   (verb ``patch``) so is ``data`` of any object without a kind; in a JSON patch (a list of
   ``{"op", "path"}``), the ``value`` of every operation whose path passes through ``data`` or
   ``stringData``.
5. What is nested deeper than ``MAX_DEPTH`` is replaced by ``[nested too deep]``: redacted what
   can be reached, stubbed what cannot.

Every redaction is listed on the record (``redactions``: ``requestObject``,
``responseObject.items[3]``, ...), so a reader knows what is missing and why.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeGuard

import msgspec

from .jsonio import encode

DEFAULT_RESOURCES = ("secrets", "tokenreviews.authentication.k8s.io", "serviceaccounts/token")
CONFIGMAPS = "configmaps"
SECRET_KINDS = frozenset({"secret", "secretlist"})  # compared lower-cased
# Bodies are parsed only when they may hold something to redact: a kind whose value starts with
# "secret" in any case, escaped or not (inside a JSON string it reads \"kind\":\"Secret\"), a
# stringData key, or any \u escape (which could spell either).
_KIND_MARK = re.compile(rb'kind\\*"\s*:\s*\\*"(?i:secret)')
_KIND_MARK_TEXT = re.compile(r'kind\\*"\s*:\s*\\*"(?i:secret)')
# A real (unescaped) kind member naming a Secret: counted to catch a duplicated kind key.
_SECRET_KIND_MEMBER = re.compile(rb'"kind"\s*:\s*"(?i:secret|secretlist)"')
# Walking deeper than this stubs the rest.
MAX_DEPTH = 200
REDACTED = "[redacted]"
TOO_DEEP = "[nested too deep]"
_PATCH_KEYS = frozenset({"data", "stringData"})
_MAX_PATH = 300


class TooDeep(ValueError):
    pass


@dataclass(frozen=True)
class ResourceSpec:
    """``resource[.group][/subresource]``, as kubectl spells it; no subresource = all of them."""

    group: str
    resource: str
    subresource: str | None

    @classmethod
    def parse(cls, spec: str) -> ResourceSpec:
        text = spec.strip()
        resource_part, _, subresource = text.partition("/")
        resource, _, group = resource_part.partition(".")
        if not resource or "*" in text or " " in text:
            raise ValueError(f"not a resource spec (resource[.group][/subresource]): {spec!r}")
        return cls(group, resource, subresource or None)

    def matches(self, group: str | None, resource: str, subresource: str) -> bool:
        """``group`` None (an objectRef without apiGroup) matches any group."""
        if (group is not None and self.group != group) or self.resource != resource:
            return False
        return self.subresource is None or self.subresource == subresource


@dataclass(frozen=True)
class RedactionConfig:
    specs: tuple[ResourceSpec, ...]

    @classmethod
    def build(cls, *, configmaps: bool = True, extra: Iterable[str] = ()) -> RedactionConfig:
        names = [*DEFAULT_RESOURCES, *([CONFIGMAPS] if configmaps else []), *extra]
        return cls(tuple(ResourceSpec.parse(name) for name in names if name.strip()))

    def covers(self, group: str | None, resource: str, subresource: str) -> bool:
        return any(spec.matches(group, resource, subresource) for spec in self.specs)

    def covers_event(self, group: Any, resource: Any, subresource: Any, uri: Any) -> bool:
        """Are the bodies of an event with this objectRef (fields as received) and requestURI dropped?
        A ref field of the wrong type counts as covered: nothing can be told from it."""
        if resource is not None:
            if type(resource) is not str or not isinstance(group, str | None):
                return True
            if not isinstance(subresource, str | None):
                return True
            if self.covers(group or None, resource, subresource or ""):
                return True
        inferred = resource_of_uri(uri) if type(uri) is str else None
        return inferred is not None and self.covers(*inferred)

    def covers_ref(self, ref: Any, uri: Any = None) -> bool:
        """Does an objectRef (a JSON value) or requestURI name a resource whose bodies are dropped?
        A ref that is present but not an object counts as covered."""
        if ref is None:
            return self.covers_event(None, None, None, uri)
        if type(ref) is not dict:
            return True
        return self.covers_event(ref.get("apiGroup"), ref.get("resource"), ref.get("subresource"), uri)

    def describe(self) -> list[str]:
        out = []
        for spec in self.specs:
            name = spec.resource + (f".{spec.group}" if spec.group else "")
            out.append(name + (f"/{spec.subresource}" if spec.subresource else ""))
        return out


def resource_of_uri(uri: str) -> tuple[str, str, str] | None:
    """(group, resource, subresource) of a resource request URI, as kube-apiserver routes it:
    ``/api/v1[/namespaces/<ns>]/<resource>[/<name>[/<subresource>]]`` and
    ``/apis/<group>/<version>[/namespaces/<ns>]/<resource>[/<name>[/<subresource>]]``."""
    parts = uri.partition("?")[0].strip("/").split("/")
    if parts[0] == "api" and len(parts) >= 3:
        group, rest = "", parts[2:]
    elif parts[0] == "apis" and len(parts) >= 4:
        group, rest = parts[1], parts[3:]
    else:
        return None
    if rest[0] == "namespaces" and len(rest) >= 3:
        rest = rest[2:]
    if not rest[0]:
        return None
    return group, rest[0], rest[2] if len(rest) >= 3 else ""


def redact_bodies(
    request: Any,
    response: Any,
    ref: Any,
    config: RedactionConfig,
    redactions: list[str],
    *,
    omit_managed: bool = False,
    verb: str | None = None,
    uri: str | None = None,
) -> tuple[str | None, str | None]:
    """Bodies (raw JSON bytes) as the JSON text to store, after the rules and omitManagedFields.

    ``ref`` is the event's objectRef (anything with resource/apiGroup/subresource attributes),
    ``verb`` and ``uri`` the event's. What was removed is appended to ``redactions``.
    """
    if config.covers_event(ref.apiGroup, ref.resource, ref.subresource, uri):
        if request is not None:
            redactions.append("requestObject")
        if response is not None:
            redactions.append("responseObject")
        return None, None
    return (
        _body(request, "requestObject", redactions, omit_managed, verb == "patch"),
        _body(response, "responseObject", redactions, omit_managed, False),
    )


def may_hold_secret(data: bytes) -> bool:
    """Could these JSON bytes hold something the rules redact? (cheap; false means surely not)"""
    return b"\\u" in data or b"stringData" in data or _KIND_MARK.search(data) is not None


def _body(raw: Any, path: str, redactions: list[str], omit_managed: bool, patch: bool) -> str | None:
    if raw is None:
        return None
    data = bytes(raw)
    if data == b"null":
        return None
    # Most bodies are stored as received. Parse only patches, those that may hold a Secret and
    # those whose managedFields must go.
    if patch or may_hold_secret(data) or (omit_managed and b'"managedFields"' in data):
        try:
            value = msgspec.json.decode(data)
        except (RecursionError, msgspec.DecodeError):
            redactions.append(path)  # cannot be inspected: not kept
            return None
        if omit_managed:
            drop_managed_fields(value)
        value = redact_json(value, data, path, redactions, patch=patch)
        if value is DROPPED:
            return None
        data = encode(value)
    return data.decode("utf-8")


DROPPED: Any = object()


def redact_json(value: Any, data: bytes, path: str, found: list[str], *, patch: bool = False) -> Any:
    """``value`` (parsed from ``data``) with the rules applied; ``DROPPED`` when it cannot be kept."""
    value = resolve_duplicate_kinds(value, data)
    if value is DROPPED:
        found.append(path)
        return DROPPED
    return _Walk(found).run(value, path, patch)


def resolve_duplicate_kinds(value: Any, data: bytes) -> Any:
    """JSON readers keep the last of duplicated keys. When ``data`` names more Secret kinds than
    ``value`` (parsed from it) holds, ``data`` is read again keeping any Secret kind of a duplicated
    ``kind`` key; ``DROPPED`` when it cannot be."""
    if b'"kind"' not in data:
        return value
    expected = len(_SECRET_KIND_MEMBER.findall(data))
    if not expected or expected <= _count_secrets(value):
        return value
    try:
        return json.loads(data, object_pairs_hook=_secret_kind_wins)
    except (RecursionError, ValueError):
        return DROPPED


def _secret_kind_wins(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    kinds = [v for k, v in pairs if k == "kind"]
    if len(kinds) > 1:
        secret = [v for v in kinds if type(v) is str and v.lower() in SECRET_KINDS]
        if secret:
            out["kind"] = secret[0]
    return out


def redact_nested_secrets(body: Any, path: str, found: list[str], *, patch: bool = False) -> Any:
    """Return ``body`` with every rule applied (nested Secrets stubbed, JSON strings and patches
    redacted, what is too deep stubbed); paths go to ``found``. Iterative and depth-bounded, so
    hostile nesting cannot exhaust the interpreter stack."""
    return _Walk(found).run(body, path, patch)


_ANY_MARK = re.compile(rb'\\u|stringData|kind\\*"\s*:\s*\\*"(?i:secret)')  # one call, for small values


def free_form(value: Any, path: str, found: list[str]) -> str:
    """A free-form JSON value (user.extra, unknown fields) as the JSON text to store, redacted."""
    try:
        data = encode(value)
    except RecursionError:
        data = b""
    if data and _ANY_MARK.search(data) is None:
        return data.decode("utf-8")
    redacted = redact_json(value, data, path, found) if data else _Walk(found).run(value, path, False)
    return "null" if redacted is DROPPED else encode(redacted).decode("utf-8")


def raw_text(raw: Any, path: str, found: list[str]) -> str | None:
    """Raw JSON bytes (responseStatus.details) as text to store, redacted when they may need it."""
    data = bytes(raw)
    if data == b"null":
        return None
    if may_hold_secret(data):
        try:
            value = msgspec.json.decode(data)
        except (RecursionError, msgspec.DecodeError):
            found.append(path)
            return None
        value = redact_json(value, data, path, found)
        return None if value is DROPPED else encode(value).decode("utf-8")
    return data.decode("utf-8")


class _Walk:
    def __init__(self, found: list[str]) -> None:
        self.found = found

    def note(self, where: str) -> None:
        self.found.append(where if len(where) <= _MAX_PATH else where[: _MAX_PATH - 3] + "...")

    def run(self, body: Any, path: str, patch: bool, depth: int = 0) -> Any:
        if _is_secret(body):
            self.note(path)
            return _stub(body)
        if depth > MAX_DEPTH and isinstance(body, dict | list):
            self.note(path)
            return TOO_DEEP
        if type(body) is str:
            return self._string(body, path, patch, depth)
        stack: list[tuple[Any, str, int, bool]] = [(body, path, depth, patch)]
        while stack:
            node, where, level, in_patch = stack.pop()
            if isinstance(node, dict):
                if "stringData" in node:
                    self._replace(node, "stringData", where)
                if in_patch and "data" in node and "kind" not in node:
                    self._replace(node, "data", where)
                children: Iterable[tuple[Any, Any]] = node.items()
                label = "{}.{}"
            elif isinstance(node, list):
                if in_patch or _is_json_patch(node):
                    self._json_patch(node, where)
                    in_patch = True
                children = enumerate(node)
                label = "{}[{}]"
            else:
                continue
            for key, child in list(children):
                if type(child) is str:
                    if child[:1] in ("{", "["):
                        node[key] = self._string(child, label.format(where, key), in_patch, level + 1)
                    continue
                if not isinstance(child, dict | list):
                    continue
                child_path = label.format(where, key)
                if _is_secret(child):
                    node[key] = _stub(child)
                    self.note(child_path)
                elif level + 1 > MAX_DEPTH:
                    node[key] = TOO_DEEP
                    self.note(child_path)
                else:
                    stack.append((child, child_path, level + 1, in_patch))
        return body

    def _replace(self, node: dict[str, Any], key: str, where: str) -> None:
        if node[key] not in (None, REDACTED):
            node[key] = REDACTED
            self.note(f"{where}.{key}")

    def _json_patch(self, ops: list[Any], where: str) -> None:
        for index, op in enumerate(ops):
            if (
                type(op) is dict
                and type(op.get("path")) is str
                and op.get("value") not in (None, REDACTED)
                and _PATCH_KEYS.intersection(op["path"].split("/"))
            ):
                op["value"] = REDACTED
                self.note(f"{where}[{index}].value")

    def _string(self, text: str, where: str, patch: bool, depth: int) -> str:
        """A string holding a JSON document: redacted by the same rules, re-encoded if anything went."""
        if text[:1] not in ("{", "[") or not (
            "\\u" in text or "stringData" in text or _KIND_MARK_TEXT.search(text) or (patch and '"data"' in text)
        ):
            return text
        data = text.encode("utf-8", "surrogatepass")
        try:
            value = msgspec.json.decode(data)
        except (RecursionError, msgspec.DecodeError):
            self.note(where)
            return REDACTED
        value = resolve_duplicate_kinds(value, data)
        if value is DROPPED:
            self.note(where)
            return REDACTED
        start = len(self.found)
        value = _Walk(self.found).run(value, where, patch, depth)
        if len(self.found) == start:
            return text
        return encode(value).decode("utf-8")


def _is_json_patch(node: list[Any]) -> bool:
    return bool(node) and type(node[0]) is dict and "op" in node[0] and "path" in node[0]


def drop_managed_fields(body: Any) -> None:
    """omitManagedFields: drop metadata.managedFields of the object, or of each item of a list."""
    if type(body) is not dict:
        return
    metadata = body.get("metadata")
    if type(metadata) is dict:
        metadata.pop("managedFields", None)
    items = body.get("items")
    if type(items) is list:
        for item in items:
            if type(item) is dict and type(item.get("metadata")) is dict:
                item["metadata"].pop("managedFields", None)


def _count_secrets(node: Any) -> int:
    """Secret-kind objects in a parsed value (iterative: it may be nested beyond any stack)."""
    count, stack = 0, [node]
    while stack:
        item = stack.pop()
        if type(item) is dict:
            count += _is_secret(item)
            stack.extend(v for v in item.values() if isinstance(v, dict | list))
        elif type(item) is list:
            stack.extend(v for v in item if isinstance(v, dict | list))
    return count


def _is_secret(node: Any) -> TypeGuard[dict[str, Any]]:
    if type(node) is not dict:
        return False
    kind = node.get("kind")
    return type(kind) is str and kind.lower() in SECRET_KINDS


def _stub(secret: dict[str, Any]) -> dict[str, Any]:
    stub: dict[str, Any] = {"kind": secret.get("kind"), "redacted": True}
    if type(secret.get("apiVersion")) is str:
        stub["apiVersion"] = secret["apiVersion"]
    metadata = secret.get("metadata")
    if isinstance(metadata, dict):
        kept = {k: metadata[k] for k in ("name", "namespace") if isinstance(metadata.get(k), str)}
        if kept:
            stub["metadata"] = kept
    return stub
