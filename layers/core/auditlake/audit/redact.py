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
from functools import cached_property
from typing import Any, TypeGuard

import msgspec

from auditlake.jsonio import encode

DEFAULT_RESOURCES = ("secrets", "tokenreviews.authentication.k8s.io", "serviceaccounts/token")
CONFIGMAPS = "configmaps"
SECRET_KINDS = frozenset({"secret", "secretlist"})  # compared lower-cased
# Bodies are parsed only when they may hold something to redact: a kind whose value starts with
# "secret" in any case, escaped or not (inside a JSON string it reads \"kind\":\"Secret\"), a
# stringData key, any \u escape (which could spell either), or an embedded audit event's body.
# JSON whitespace may stand between kind, the colon and the value, escaped when the JSON sits in a
# string (\n, or \\n a level deeper); the quotes are optional: YAML in a string writes kind: Secret.
_WS = r"(?:\s|\\+[nrt])*"
_KIND_IS = r'kind\\*"?' + _WS + ":" + _WS + r"""\\*["']?"""
_KIND_MARK = re.compile((_KIND_IS + "(?i:secret)").encode())
_KIND_MARK_TEXT = re.compile(_KIND_IS + "(?i:secret)")
# A string that is not a JSON document but names a Secret kind (YAML, a message quoting a body):
# it cannot be redacted field by field, so it is replaced whole.
_SECRET_TEXT = re.compile(_KIND_IS + r"(?i:secret(?:list)?)\b")
# Letters written as \u escapes could spell a kind key or value the duplicate count cannot see.
LETTER_ESCAPE = re.compile(rb"\\u00[4-7][0-9a-fA-F]")
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
        resource_part, _, subresource = text.lower().partition("/")
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

    @cached_property
    def _resources(self) -> frozenset[str]:
        return frozenset(spec.resource for spec in self.specs)

    def covers(self, group: str | None, resource: str, subresource: str) -> bool:
        """Names compared case-insensitively (the specs are lower-cased): ``Secrets`` is ``secrets``."""
        if resource not in self._resources:
            resource = resource.lower()
            if resource not in self._resources:
                return False  # most events: one lookup
        subresource = subresource.lower()
        group = group.lower() if group else group
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
        if type(uri) is not str:
            return False
        lowered = uri.lower()
        if not any(name in lowered for name in self._resources):
            return False  # most events: the URI names no listed resource at all
        inferred = resource_of_uri(uri)
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
        _body(request, "requestObject", redactions, omit_managed, is_patch(verb), config),
        _body(response, "responseObject", redactions, omit_managed, False, config),
    )


def is_patch(verb: Any) -> bool:
    """Verbs compared case-insensitively: a proxy's ``PATCH`` is a patch."""
    return verb == "patch" or (type(verb) is str and verb.lower() == "patch")


def may_hold_secret(data: bytes) -> bool:
    """Could these JSON bytes hold something the rules redact? (cheap; false means surely not)"""
    return (
        b"\\u" in data
        or b"stringData" in data
        or _KIND_MARK.search(data) is not None
        or b"requestObject" in data
        or b"responseObject" in data
    )


def _patch_may_carry_data(data: bytes) -> bool:
    """Could a patch body hold ``data``: a ``"data"`` key (``data\\"`` inside a JSON string, such as
    a last-applied annotation), or a JSON patch path through ``/data``? (``"metadata"`` matches
    none of them; a key spelled with \\u escapes is seen by may_hold_secret.)"""
    return b'"data"' in data or b'data\\"' in data or b"/data" in data


def _body(  # noqa: PLR0917 - internal
    raw: Any, path: str, redactions: list[str], omit_managed: bool, patch: bool, config: RedactionConfig
) -> str | None:
    if raw is None:
        return None
    data = bytes(raw)
    if data == b"null":
        return None
    # Most bodies are stored as received. Parse only those that may hold a Secret, patches that
    # may carry data, and those whose managedFields must go.
    managed = omit_managed and b'"managedFields"' in data
    if (patch and _patch_may_carry_data(data)) or may_hold_secret(data) or managed:
        try:
            value = msgspec.json.decode(data)
        except (RecursionError, msgspec.DecodeError):
            redactions.append(path)  # cannot be inspected: not kept
            return None
        if omit_managed:
            drop_managed_fields(value)
        value = redact_json(value, data, path, redactions, patch=patch, config=config)
        if value is DROPPED:
            return None
        data = encode(value)
    return data.decode("utf-8")


DROPPED: Any = object()


def redact_json(
    value: Any,
    data: bytes,
    path: str,
    found: list[str],
    *,
    patch: bool = False,
    config: RedactionConfig | None = None,
) -> Any:
    """``value`` (parsed from ``data``) with the rules applied; ``DROPPED`` when it cannot be kept.
    With ``config``, an embedded audit event (an object with requestObject/responseObject) loses
    the bodies its own objectRef/requestURI names, as a stored event does."""
    value = resolve_duplicate_kinds(value, data)
    if value is DROPPED:
        found.append(path)
        return DROPPED
    return Walk(found, config).run(value, path, patch)


def resolve_duplicate_kinds(value: Any, data: bytes) -> Any:
    """JSON readers keep the last of duplicated keys. When ``data`` names more Secret kinds than
    ``value`` (parsed from it) holds, or spells letters as \\u escapes (which could write a
    ``kind`` key or a Secret kind the count cannot see), ``data`` is read again keeping any Secret
    kind of a duplicated ``kind`` key; ``DROPPED`` when it cannot be."""
    if LETTER_ESCAPE.search(data) is None:
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


# One call, for small values: anything may_hold_secret looks for.
_ANY_MARK = re.compile(rb"\\u|stringData|(?:request|response)Object|" + _KIND_MARK.pattern)


def _may_mark(data: bytes) -> bool:
    """``_ANY_MARK.search(data)``, with substring tests first: most small values (annotations,
    user.extra) hold none of them, and a substring test costs less than the regex's alternation."""
    if b"\\u" in data or b"tringData" in data or b"Object" in data:
        return True
    return b"kind" in data and _ANY_MARK.search(data) is not None


# Free-form values repeat (the authorization annotations of one binding, one identity's user.extra):
# those found to hold no mark are remembered by their bytes, so each is searched once.
_CLEAN: set[bytes] = set()
_CLEAN_MAX = 4096


def free_form(value: Any, path: str, found: list[str], config: RedactionConfig | None = None) -> str:
    """A free-form JSON value (user.extra, unknown fields) as the JSON text to store, redacted."""
    try:
        data = encode(value)
    except RecursionError:
        data = b""
    if data in _CLEAN:
        return data.decode("utf-8")
    if data and not _may_mark(data):
        if len(_CLEAN) >= _CLEAN_MAX:
            _CLEAN.clear()
        _CLEAN.add(data)
        return data.decode("utf-8")
    if data:
        redacted = redact_json(value, data, path, found, config=config)
    else:
        redacted = Walk(found, config).run(value, path, False)
    return "null" if redacted is DROPPED else encode(redacted).decode("utf-8")


def raw_text(raw: Any, path: str, found: list[str], config: RedactionConfig | None = None) -> str | None:
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
        value = redact_json(value, data, path, found, config=config)
        return None if value is DROPPED else encode(value).decode("utf-8")
    return data.decode("utf-8")


def redact_text(text: str, path: str, found: list[str]) -> str:
    """A free-text string (responseStatus.message): a JSON document in it is redacted by the
    rules, and text that names a Secret kind anywhere is replaced by ``[redacted]``."""
    if _KIND_MARK_TEXT.search(text) is None and "stringData" not in text and "\\u" not in text:
        return text
    return Walk(found).run(text, path, False)


# A value repeated in a quarantine reason: only a short one of plain characters, or one made of a
# timestamp's characters; anything else is shown as its length (it could be secret material).
_SHOWN_MAX = 20
_PLAIN = re.compile(r"[A-Za-z0-9._/:+-]*")
_TIMESTAMP_CHARS = re.compile(r"[0-9TtZzW:.,+ -]{1,40}")
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'" + r'|"(?:[^"\\]|\\.)*"')


def shown(value: Any) -> str:
    """``value`` as a quarantine reason may show it: repr'd when short and of plain characters
    (or a timestamp's), else ``<N characters>``; a non-string is named by its type."""
    if type(value) is not str:
        return f"a JSON {type(value).__name__}" if value is not None else "null"
    if (len(value) <= _SHOWN_MAX and _PLAIN.fullmatch(value)) or _TIMESTAMP_CHARS.fullmatch(value):
        lowered = value.lower()
        if not any(mark in lowered for mark in ("secret", "token", "password")):
            return repr(value)
    return f"<{len(value)} characters>"


def safe_reason(reason: str) -> str:
    """A quarantine reason with every quoted value (a repr, msgspec's 'value') replaced as
    ``shown`` would show it: the reason names the field and the problem, never the secret."""
    if "'" not in reason and '"' not in reason:
        return reason
    return _QUOTED.sub(lambda m: shown(m.group()[1:-1]), reason)


_JSON_WS = " \t\n\r"
_MAY_OPEN = frozenset("{[" + _JSON_WS)  # a string that may be a JSON document (after whitespace)


_SHORTEST_MARK = len("kind:Secret")  # a shorter key cannot name a Secret


def _marked_key(key: str) -> bool:
    if _SECRET_TEXT.search(key):
        return True
    return key.lstrip(_JSON_WS)[:1] in ("{", "[") and ("\\u" in key or "stringData" in key)


class Walk:
    """The rules over a parsed value, iterative and depth-bounded (hostile nesting cannot exhaust
    the interpreter stack). With a ``config``, every embedded audit event (an object with
    requestObject/responseObject) is judged by the resource rule with its own objectRef,
    requestURI and verb; ``bodies`` lists what that removed."""

    def __init__(self, found: list[str], config: RedactionConfig | None = None, *, drop_bodies: bool = False) -> None:
        self.found = found
        self.config = config
        self.drop_bodies = drop_bodies  # every embedded event loses its bodies (an item cut too deep)
        self.bodies: list[str] = []  # bodies removed by the resource rule, by path

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
            patch_key = None
            if isinstance(node, dict):
                if "stringData" in node:
                    self._replace(node, "stringData", where)
                if in_patch and "data" in node and "kind" not in node:
                    self._replace(node, "data", where)
                if self.config is not None and ("requestObject" in node or "responseObject" in node):
                    patch_key = self._event(node, where)
                self._keys(node, where)
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
                child_patch = in_patch or key == patch_key
                if type(child) is str:
                    node[key] = self._string(child, label.format(where, key), child_patch, level + 1)
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
                    stack.append((child, child_path, level + 1, child_patch))
        return body

    def _event(self, node: dict[str, Any], where: str) -> str | None:
        """An embedded audit event: the resource rule with its own objectRef and requestURI (its
        bodies removed), else the key of a patch's request body, walked as a patch."""
        assert self.config is not None
        if self.drop_bodies or self.config.covers_ref(node.get("objectRef"), node.get("requestURI")):
            for key in ("requestObject", "responseObject"):
                if node.pop(key, None) is not None:
                    self.note(f"{where}.{key}")
                    self.bodies.append(f"{where}.{key}")
            return None
        return "requestObject" if is_patch(node.get("verb")) else None

    def _keys(self, node: dict[str, Any], where: str) -> None:
        """A key that holds a JSON document that may hold a Secret, or text naming a Secret kind,
        cannot be redacted in place: it is renamed ``[redacted]`` (numbered when taken)."""
        for key in [k for k in node if type(k) is str and len(k) >= _SHORTEST_MARK and _marked_key(k)]:
            new, number = REDACTED, 1
            while new in node:
                number += 1
                new = f"[redacted {number}]"
            node[new] = node.pop(key)
            self.note(f"{where}.{new}")

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
        """A string holding a JSON document (leading whitespace allowed): redacted by the same
        rules, re-encoded if anything went. Text that is no JSON document but names a Secret kind
        (YAML, a message quoting a body) is replaced by ``[redacted]``."""
        if text[:1] not in _MAY_OPEN or text.lstrip(_JSON_WS)[:1] not in ("{", "["):
            if "ind" in text and _SECRET_TEXT.search(text):
                self.note(where)
                return REDACTED
            return text
        if not (
            "\\u" in text
            or "stringData" in text
            or _KIND_MARK_TEXT.search(text)
            or (patch and '"data"' in text)
            or (self.config is not None and ("requestObject" in text or "responseObject" in text))
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
        inner = Walk(self.found, self.config, drop_bodies=self.drop_bodies)
        value = inner.run(value, where, patch, depth)
        self.bodies += inner.bodies
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
