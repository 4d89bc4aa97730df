"""The rule IR compiled into Python closures: built once per rule set, called per event.

An event is read through a ``Doc``: ``values(path)`` returns the list of the path's non-null values
(a path through a list yields every element's; a missing path yields none), memoised per event so
rules sharing a field read it once. Audit events are the typed msgspec ``AuditEvent`` read by
attribute; their bodies (``requestObject``/``responseObject``, kept as raw bytes) are decoded at
most once per event, and only when a rule that is a candidate for it tests a body field. A dict
key holding dots (``annotations.authorization.k8s.io/decision``) is found whole.

Value semantics (as ``detect/ir.py`` states them): strings compare case-folded unless the leaf is
cased; a number or boolean is compared by its text in a string test; a string test on a mapping
tests its keys and its string values (``requestObject.data`` holding ``aws_access_key_id``);
``re`` runs on RE2 (linear time: an event cannot make a published rule's regex backtrack).
``explain`` gives, for a rule that matched, the concrete paths of the tests that held (a mapping's
key appended), for the finding's details.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator, Mapping
from functools import lru_cache
from typing import Any

import msgspec
import re2

from auditlake.detect import ir

Values = list[Any]
Pred = Callable[["Doc"], bool]
BODIES = ("requestObject", "responseObject")


class Doc:
    """One event as rules read it. ``root`` is a msgspec Struct or a dict."""

    __slots__ = ("_bodies", "_memo", "_text", "root")

    def __init__(self, root: Any) -> None:
        self.root = root
        self._memo: dict[str, Values] = {}
        self._bodies: dict[str, Any] = {}
        self._text: list[str] | None = None

    def values(self, path: str) -> Values:
        found = self._memo.get(path)
        if found is None:
            found = self._memo[path] = self._read(path)
        return found

    def _read(self, path: str) -> Values:
        parts = segments(path)
        first = parts[0]
        root = self.root
        if isinstance(root, dict):
            top = _lookup(root, parts, 0)
            value, used = top if top is not None else (None, 0)
        else:
            value, used = (self._body(first) if first in BODIES else getattr(root, first, None)), 1
        out: Values = []
        if value is not None:
            _walk(value, parts, used, out)
        return out

    def _body(self, name: str) -> Any:
        if name not in self._bodies:
            raw = getattr(self.root, name, None)
            data = bytes(raw) if raw is not None else b""
            try:
                self._bodies[name] = msgspec.json.decode(data) if data else None
            except msgspec.DecodeError:
                self._bodies[name] = None
        return self._bodies[name]

    def strings(self) -> list[str]:
        """Every string value in the event (keyword search), bodies included, keys not."""
        if self._text is None:
            root = self.root
            if not isinstance(root, dict):
                root = {name: getattr(root, name) for name in root.__struct_fields__ if name not in BODIES}
                for name in BODIES:
                    root[name] = self._body(name)
            self._text = list(_all_strings(_builtins(root)))
        return self._text


def _builtins(value: Any) -> Any:
    """Plain data of a decoded event for the keyword search. Not ``msgspec.to_builtins``: it refuses
    ``msgspec.Raw`` (``responseStatus.details`` is one), which every audit event may carry."""
    if isinstance(value, msgspec.Raw):
        data = bytes(value)
        try:
            return msgspec.json.decode(data) if data else None
        except msgspec.DecodeError:
            return None
    if isinstance(value, msgspec.Struct):
        return {name: _builtins(getattr(value, name)) for name in value.__struct_fields__}
    if isinstance(value, dict):
        return {key: _builtins(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_builtins(item) for item in value]
    return value


_SEGMENT = re.compile(r'"([^"]*)"|([^.]+)')


@lru_cache(maxsize=4096)
def segments(path: str) -> tuple[str, ...]:
    """A field's path segments; a quoted one holds dots (``annotations."authorization.k8s.io/decision"``)."""
    if '"' not in path:
        return tuple(path.split("."))
    return tuple(quoted if quoted else plain for quoted, plain in _SEGMENT.findall(path))


def _lookup(node: Mapping[str, Any], segments: tuple[str, ...], at: int) -> tuple[Any, int] | None:
    """The value of ``segments[at]`` in a mapping, or of a longer dotted key (an annotation name)."""
    value = node.get(segments[at])
    if value is not None:
        return value, at + 1
    for end in range(len(segments), at + 1, -1):
        value = node.get(".".join(segments[at:end]))
        if value is not None:
            return value, end
    return None


def _walk(value: Any, segments: tuple[str, ...], at: int, out: Values) -> None:
    if type(value) is msgspec.Raw:  # responseStatus.details: its bytes, decoded when a rule reads it
        data = bytes(value)
        try:
            value = msgspec.json.decode(data) if data else None
        except msgspec.DecodeError:
            value = None
        if value is None:
            return
    if type(value) is list:
        for item in value:
            if item is not None:
                _walk(item, segments, at, out)
        return
    if at == len(segments):
        out.append(value)
        return
    if isinstance(value, dict):
        found = _lookup(value, segments, at)
        if found is not None:
            _walk(found[0], segments, found[1], out)
    elif isinstance(value, msgspec.Struct):
        child = getattr(value, segments[at], None)
        if child is not None:
            _walk(child, segments, at + 1, out)


def _all_strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):  # values only (detect/ir.py): a key, e.g. an absent field's name, is no match
        for item in value.values():
            yield from _all_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _all_strings(item)


def texts(value: Any) -> Iterator[str]:
    """What a string test sees of one value: itself, a number's or boolean's text, a mapping's keys
    and string values."""
    if type(value) is str:
        yield value
    elif type(value) is bool:
        yield "true" if value else "false"
    elif isinstance(value, int | float):
        yield str(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            if type(item) is str:
                yield item


# ---------------------------------------------------------------- scalar fields of an audit event

Getter = Callable[[Any], Any]
# Paths of the typed AuditEvent that hold one scalar (or nothing): read by attribute, no list built.
AUDIT_SCALARS = frozenset(
    {"auditID", "stage", "level", "verb", "requestURI", "userAgent", "requestReceivedTimestamp", "stageTimestamp"}
    | {f"user.{name}" for name in ("username", "uid")}
    | {f"impersonatedUser.{name}" for name in ("username", "uid")}
    | {f"objectRef.{name}" for name in ("resource", "namespace", "name", "uid", "apiGroup", "apiVersion",
                                        "resourceVersion", "subresource")}
    | {f"responseStatus.{name}" for name in ("status", "message", "reason", "code")}
)  # fmt: skip


AUDIT_LISTS = frozenset({"sourceIPs", "user.groups", "impersonatedUser.groups"})  # lists of strings


def audit_list(path: str) -> Getter | None:
    """A direct reader of ``path`` on an AuditEvent when it is one of ``AUDIT_LISTS`` (a list or None)."""
    if path not in AUDIT_LISTS:
        return None
    return _attributes(path)


def audit_scalar(path: str) -> Getter | None:
    """A direct reader of ``path`` on an AuditEvent when it is one of ``AUDIT_SCALARS``."""
    if path not in AUDIT_SCALARS:
        return None
    return _attributes(path)


def _attributes(path: str) -> Getter:
    if "." not in path:
        return lambda event: getattr(event, path)
    outer, inner = path.split(".")

    def nested(event: Any) -> Any:
        parent = getattr(event, outer)
        return getattr(parent, inner) if parent is not None else None

    return nested


Scalars = Callable[[str], Getter | None]


def _no_scalars(path: str) -> Getter | None:
    return None


# ---------------------------------------------------------------- one value


def string_test(leaf: ir.Leaf) -> Callable[[str], bool]:
    """A test of one string for a ``glob`` or ``re`` leaf."""
    if leaf.op == "re":
        pattern = re2.compile(leaf.value if leaf.cased else f"(?i){leaf.value}")
        return lambda text: pattern.search(text) is not None
    parts: tuple[Any, ...] = tuple(leaf.value)
    fold = (lambda text: text) if leaf.cased else str.lower
    literal = [p if leaf.cased else p.lower() for p in parts if isinstance(p, str)]
    shape = tuple("s" if isinstance(p, str) else ("*" if p == ir.STAR else "?") for p in parts)
    if shape == ("s",):
        target = literal[0]
        return lambda text: fold(text) == target
    if shape == ("*", "s", "*"):
        target = literal[0]
        return lambda text: target in fold(text)
    if shape == ("s", "*"):
        target = literal[0]
        return lambda text: fold(text).startswith(target)
    if shape == ("*", "s"):
        target = literal[0]
        return lambda text: fold(text).endswith(target)
    if shape == ("*",):
        return lambda text: True
    regex = "".join(re.escape(p) if isinstance(p, str) else (".*" if p == ir.STAR else ".") for p in parts)
    compiled = re.compile(regex, re.DOTALL | (0 if leaf.cased else re.IGNORECASE))
    return lambda text: compiled.fullmatch(text) is not None


def value_test(leaf: ir.Leaf) -> Callable[[Any], bool]:
    """A test of one (non-null) value for the leaf."""
    if leaf.op in ("glob", "re"):
        test = string_test(leaf)

        def strings(value: Any) -> bool:
            if type(value) is str:
                return test(value)
            return any(test(text) for text in texts(value))

        return strings
    if leaf.op == "num":
        cmp, number = leaf.value
        compare = _COMPARE[cmp]

        def numeric(value: Any) -> bool:
            if type(value) is bool:
                return False
            if not isinstance(value, int | float):
                try:
                    value = float(value) if type(value) is str else None
                except ValueError:
                    return False
                if value is None:
                    return False
            return compare(value, number)

        return numeric
    if leaf.op == "bool":
        want = bool(leaf.value)
        word = "true" if want else "false"
        return lambda value: value is want or (type(value) is str and value.lower() == word)
    if leaf.op == "cidr":
        network = ipaddress.ip_network(leaf.value, strict=False)

        def inside(value: Any) -> bool:
            if type(value) is not str:
                return False
            try:
                return ipaddress.ip_address(value) in network
            except ValueError:
                return False

        return inside
    raise ValueError(f"no value test for op {leaf.op!r}")


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
}


# ---------------------------------------------------------------- trees


def predicate(node: ir.Node, scalars: Scalars = _no_scalars) -> Pred:
    """The node as one closure over a ``Doc``; ``scalars`` gives direct readers of the fields that
    hold one value (``audit_scalar`` for audit events)."""
    if isinstance(node, ir.Leaf):
        return _leaf(node, scalars)
    if isinstance(node, ir.Not):
        inner = predicate(node.part, scalars)
        return lambda doc: not inner(doc)
    merged = _one_of(node, scalars) if isinstance(node, ir.AnyOf) else None
    if merged is not None:
        return merged
    parts = tuple(predicate(part, scalars) for part in node.parts)
    if isinstance(node, ir.All):

        def every(doc: Doc) -> bool:
            for part in parts:  # noqa: SIM110 - a loop costs less per event than any() over a generator
                if not part(doc):
                    return False
            return True

        return every

    def some(doc: Doc) -> bool:
        for part in parts:  # noqa: SIM110 - a loop costs less per event than any() over a generator
            if part(doc):
                return True
        return False

    return some


def exact_values(node: ir.Node, field: str) -> frozenset[str] | None:
    """The case-folded literals a node pins ``field`` to (a plain equality, or an OR of them), else
    None: what the engine indexes rules by and merges OR lists into a set test with."""
    if isinstance(node, ir.Leaf):
        if node.field == field and node.op == "glob" and not node.cased and all(isinstance(p, str) for p in node.value):
            return frozenset({"".join(node.value).lower()})
        return None
    if isinstance(node, ir.AnyOf):
        found: set[str] = set()
        for part in node.parts:
            values = exact_values(part, field)
            if values is None:
                return None
            found |= values
        return frozenset(found)
    return None


def _one_of(node: ir.AnyOf, scalars: Scalars) -> Pred | None:
    """An OR of tests on one field that one pass can answer: case-insensitive equalities, prefixes,
    suffixes and substrings (the value folded once), or networks (the address parsed once)."""
    leaves = [part for part in node.parts if isinstance(part, ir.Leaf)]
    if len(leaves) != len(node.parts) or len(leaves) < 2 or len({leaf.field for leaf in leaves}) != 1:
        return None
    field = leaves[0].field
    if field is None:
        return None
    if all(leaf.op == "cidr" for leaf in leaves):
        inside = _networks([str(leaf.value) for leaf in leaves])
        test: Callable[[Any], bool] = lambda value: type(value) is str and inside(value)  # noqa: E731
    else:
        folded = _folded_test(leaves)
        if folded is None:
            return None
        text_test = folded

        def test(value: Any) -> bool:
            if type(value) is str:
                return text_test(value.lower())
            return any(text_test(text.lower()) for text in texts(value))

    return _reader(field, scalars, test)


def _folded_test(leaves: list[ir.Leaf]) -> Callable[[str], bool] | None:
    exact: set[str] = set()
    prefixes: list[str] = []
    suffixes: list[str] = []
    inner: list[str] = []
    for leaf in leaves:
        if leaf.op != "glob" or leaf.cased:
            return None
        parts = leaf.value
        words = [p.lower() for p in parts if isinstance(p, str)]
        shape = tuple("s" if isinstance(p, str) else ("*" if p == ir.STAR else "?") for p in parts)
        if shape == ("s",):
            exact.add(words[0])
        elif shape == ("s", "*"):
            prefixes.append(words[0])
        elif shape == ("*", "s"):
            suffixes.append(words[0])
        elif shape == ("*", "s", "*"):
            inner.append(words[0])
        else:
            return None
    starts, ends, within = tuple(prefixes), tuple(suffixes), tuple(inner)

    def test(low: str) -> bool:
        return (
            low in exact
            or (bool(starts) and low.startswith(starts))
            or (bool(ends) and low.endswith(ends))
            or any(word in low for word in within)
        )

    return test


def _networks(cidrs: list[str]) -> Callable[[str], bool]:
    """Whether an address string lies in any of the networks; answers cached per address (a
    cluster's addresses repeat)."""
    networks = [ipaddress.ip_network(cidr, strict=False) for cidr in cidrs]
    ranges = {
        version: [(int(n.network_address), int(n.broadcast_address)) for n in networks if n.version == version]
        for version in (4, 6)
    }

    @lru_cache(maxsize=8192)
    def inside(text: str) -> bool:
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            return False
        number = int(address)
        return any(low <= number <= high for low, high in ranges[address.version])

    return inside


def _reader(field: str, scalars: Scalars, test: Callable[[Any], bool]) -> Pred:
    """``test`` over the field's values: one direct read for a scalar field, else the Doc's list."""
    get = scalars(field)
    items = audit_list(field) if scalars is audit_scalar else None
    if items is not None:
        read_list = items

        def listed(doc: Doc) -> bool:
            for value in read_list(doc.root) or ():  # noqa: SIM110 - a loop costs less per event than any() over a generator
                if test(value):
                    return True
            return False

        return listed
    if get is not None:
        read = get

        def scalar(doc: Doc) -> bool:
            value = read(doc.root)
            return value is not None and test(value)

        return scalar

    def each(doc: Doc) -> bool:
        for value in doc.values(field):  # noqa: SIM110 - a loop costs less per event than any() over a generator
            if test(value):
                return True
        return False

    return each


def _leaf(leaf: ir.Leaf, scalars: Scalars) -> Pred:
    field = leaf.field
    if field is None:  # a keyword: any string anywhere in the event
        if leaf.op not in ("glob", "re"):
            raise ValueError(f"a keyword test must be a string or a regular expression, not {leaf.op}")
        keyword = string_test(leaf)
        return lambda doc: any(keyword(text) for text in doc.strings())
    get = scalars(field) or (audit_list(field) if scalars is audit_scalar else None)
    if leaf.op in ("null", "exists"):
        present = leaf.op == "exists" and bool(leaf.value)
        listed = audit_list(field) if scalars is audit_scalar else None
        if listed is not None:  # an empty list holds no value, as Doc.values says
            read_list = listed
            return lambda doc: bool(read_list(doc.root)) is present
        if get is not None:
            read = get
            return lambda doc: (read(doc.root) is not None) is present
        return lambda doc: bool(doc.values(field)) is present
    if leaf.op == "cidr":
        inside = _networks([str(leaf.value)])
        return _reader(field, scalars, lambda value: type(value) is str and inside(value))
    return _reader(field, scalars, value_test(leaf))


def fields_of(node: ir.Node) -> set[str | None]:
    """Every field a node reads (None: a keyword search, which reads them all)."""
    if isinstance(node, ir.Leaf):
        return {node.field}
    if isinstance(node, ir.Not):
        return fields_of(node.part)
    return set().union(*(fields_of(part) for part in node.parts))


def memoised(test: Pred, read: Getter, size: int = 4096) -> Pred:
    """``test`` of a rule that reads one scalar field only: answered once per distinct value (a
    cluster's user agents, users and URIs repeat), the memo bounded."""
    memo: dict[Any, bool] = {}

    def cached(doc: Doc) -> bool:
        value = read(doc.root)
        answer = memo.get(value)
        if answer is None:
            answer = test(doc)
            if len(memo) >= size:
                memo.clear()
            memo[value] = answer
        return answer

    return cached


# ---------------------------------------------------------------- why it matched


def explain(node: ir.Node, doc: Doc, *, negated: bool = False) -> dict[str, Any]:
    """The concrete paths (and values) of the positive tests that held in a matched rule."""
    out: dict[str, Any] = {}
    _explain(node, doc, negated, out)
    return out


def _explain(node: ir.Node, doc: Doc, negated: bool, out: dict[str, Any]) -> None:
    if isinstance(node, ir.Not):
        return  # what did not hold explains nothing about the event
    if isinstance(node, ir.All | ir.AnyOf):
        for part in node.parts:
            if _compiled(part)(doc):
                _explain(part, doc, negated, out)
        return
    if node.field is None or node.op in ("null",):
        return
    if node.op == "exists":
        for path, value in _paths(doc, node.field):
            out.setdefault(path, value)
        return
    check = value_test(node)
    text_check = string_test(node) if node.op in ("glob", "re") else None
    for path, value in _paths(doc, node.field):
        if isinstance(value, dict) and text_check is not None:
            for key, item in value.items():
                if text_check(str(key)) or (type(item) is str and text_check(item)):
                    out.setdefault(f"{path}.{key}", item)
        elif check(value):
            out.setdefault(path, value)


_EXPLAINING: dict[int, tuple[ir.Node, Pred]] = {}


def _compiled(node: ir.Node) -> Pred:
    """``predicate(node)``, compiled once per node (explain walks the same rules' trees again and
    again); keyed by identity, the node kept alive beside its closure so the key stays its own."""
    entry = _EXPLAINING.get(id(node))
    if entry is None or entry[0] is not node:
        if len(_EXPLAINING) > 100_000:  # rules replaced by a reload leave theirs behind
            _EXPLAINING.clear()
        entry = _EXPLAINING[id(node)] = (node, predicate(node))
    return entry[1]


def _paths(doc: Doc, field: str) -> Iterator[tuple[str, Any]]:
    """(path, value) of each value of ``field`` (list elements keep the field's path)."""
    for value in doc.values(field):
        yield field, value
