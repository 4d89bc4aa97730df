"""Secret material never reaches storage.

Two rules, applied at ingest whatever level the cluster's policy used:

1. Bodies (requestObject, responseObject) of sensitive resources are dropped whole: ``secrets``,
   ``configmaps`` (configurable), ``tokenreviews``, ``serviceaccounts/token`` and a configurable
   list. Whole, because patches, lists and TokenReviews carry secret values in different places,
   and ``last-applied-configuration`` annotations repeat them.
2. A Secret or SecretList nested anywhere in any other body (a ``v1/List``, a custom resource
   embedding one) is replaced by a stub that keeps only its kind, name and namespace.

Every redaction is listed on the record (``redactions``: ``requestObject``,
``responseObject.items[3]``, ...), so a reader knows what is missing and why.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeGuard

import msgspec

from .jsonio import encode

DEFAULT_RESOURCES = ("secrets", "tokenreviews.authentication.k8s.io", "serviceaccounts/token")
CONFIGMAPS = "configmaps"
SECRET_KINDS = frozenset({"Secret", "SecretList"})
# The start of a JSON string value "Secret..." (SecretList, and kinds merely starting with Secret).
_SECRET_MARK = b'"Secret'
# Walking deeper than this is refused: such a body is quarantined instead of half-redacted.
MAX_DEPTH = 200


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

    def matches(self, group: str, resource: str, subresource: str) -> bool:
        if self.group != group or self.resource != resource:
            return False
        return self.subresource is None or self.subresource == subresource


@dataclass(frozen=True)
class RedactionConfig:
    specs: tuple[ResourceSpec, ...]

    @classmethod
    def build(cls, *, configmaps: bool = True, extra: Iterable[str] = ()) -> RedactionConfig:
        names = [*DEFAULT_RESOURCES, *([CONFIGMAPS] if configmaps else []), *extra]
        return cls(tuple(ResourceSpec.parse(name) for name in names if name.strip()))

    def covers(self, group: str, resource: str, subresource: str) -> bool:
        return any(spec.matches(group, resource, subresource) for spec in self.specs)

    def covers_ref(self, ref: Any) -> bool:
        """Does an objectRef (as a JSON object) name a resource whose bodies are dropped?"""
        if type(ref) is not dict:
            return False
        resource = ref.get("resource")
        if type(resource) is not str:
            return False
        return self.covers(ref.get("apiGroup") or "", resource, ref.get("subresource") or "")

    def describe(self) -> list[str]:
        out = []
        for spec in self.specs:
            name = spec.resource + (f".{spec.group}" if spec.group else "")
            out.append(name + (f"/{spec.subresource}" if spec.subresource else ""))
        return out


def redact_bodies(
    request: Any,
    response: Any,
    ref: Any,
    config: RedactionConfig,
    redactions: list[str],
    *,
    omit_managed: bool = False,
) -> tuple[str | None, str | None]:
    """Bodies (raw JSON bytes) as the JSON text to store, after both rules and omitManagedFields.

    ``ref`` is the event's objectRef (anything with resource/apiGroup/subresource attributes).
    What was removed is appended to ``redactions``.
    """
    if ref.resource is not None and config.covers(ref.apiGroup or "", ref.resource, ref.subresource or ""):
        if request is not None:
            redactions.append("requestObject")
        if response is not None:
            redactions.append("responseObject")
        return None, None
    return (
        _body(request, "requestObject", redactions, omit_managed),
        _body(response, "responseObject", redactions, omit_managed),
    )


def _body(raw: Any, path: str, redactions: list[str], omit_managed: bool) -> str | None:
    if raw is None:
        return None
    data = bytes(raw)
    if data == b"null":
        return None
    # Most bodies are stored as received. Parse only those that may hold a Secret (a "Secret... value,
    # or an escape that could spell one) or whose managedFields must go.
    if _SECRET_MARK in data or b"\\u" in data or (omit_managed and b'"managedFields"' in data):
        try:
            value = msgspec.json.decode(data)
        except RecursionError:
            raise TooDeep(f"{path} is nested too deep to inspect") from None
        if omit_managed:
            drop_managed_fields(value)
        found: list[str] = []
        value = redact_nested_secrets(value, path, found)
        redactions.extend(found)
        data = encode(value)
    return data.decode("utf-8")


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


def redact_nested_secrets(body: Any, path: str, found: list[str]) -> Any:
    """Return ``body`` with every nested Secret/SecretList replaced by a stub; paths go to ``found``.

    Iterative, with a depth bound, so hostile nesting cannot exhaust the interpreter stack.
    """
    if _is_secret(body):
        found.append(path)
        return _stub(body)
    stack: list[tuple[Any, str, int]] = [(body, path, 0)]
    while stack:
        node, where, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise TooDeep(f"body nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, dict):
            children: Iterable[tuple[Any, Any]] = node.items()
            label = "{}.{}"
        elif isinstance(node, list):
            children = enumerate(node)
            label = "{}[{}]"
        else:
            continue
        for key, child in list(children):
            if not isinstance(child, (dict, list)):
                continue
            child_path = label.format(where, key)
            if _is_secret(child):
                node[key] = _stub(child)
                found.append(child_path)
            else:
                stack.append((child, child_path, depth + 1))
    return body


def _is_secret(node: Any) -> TypeGuard[dict[str, Any]]:
    return isinstance(node, dict) and node.get("kind") in SECRET_KINDS


def _stub(secret: dict[str, Any]) -> dict[str, Any]:
    stub: dict[str, Any] = {"kind": secret.get("kind"), "redacted": True}
    if "apiVersion" in secret:
        stub["apiVersion"] = secret["apiVersion"]
    metadata = secret.get("metadata")
    if isinstance(metadata, dict):
        kept = {k: metadata[k] for k in ("name", "namespace") if isinstance(metadata.get(k), str)}
        if kept:
            stub["metadata"] = kept
    return stub
