"""detect/compile: every leaf op as detect/ir.py states it, paths through lists and mappings, dotted
annotation keys, NOT and keyword search; and the fast paths (scalar readers of the typed AuditEvent,
OR lists merged into one test, cached CIDR) agree with a naive evaluator written here, over random
rule trees and random events (Hypothesis)."""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from auditlake.audit.schema import event_decoder
from auditlake.detect import ir
from auditlake.detect.compile import Doc, audit_scalar, explain, predicate
from auditlake.detect.ir import ONE, STAR, All, AnyOf, Leaf, Not

BASE = {"level": "RequestResponse", "auditID": "a-1", "stage": "ResponseComplete"}


def audit(**fields: Any) -> Any:
    """An AuditEvent as the pipeline decodes it (bodies kept as raw bytes)."""
    return event_decoder.decode(json.dumps({**BASE, **fields}).encode())


def both(node: ir.Node, event: dict[str, Any]) -> bool:
    """The node on the event as a dict and as the typed AuditEvent; they must agree."""
    on_dict = predicate(node)(Doc({**BASE, **event}))
    on_struct = predicate(node, audit_scalar)(Doc(audit(**event)))
    assert on_dict == on_struct, (node, event)
    return on_struct


def glob(field: str | None, *parts: Any, cased: bool = False) -> Leaf:
    return Leaf(field, "glob", tuple(parts), cased)


# ---------------------------------------------------------------- leaf ops


@pytest.mark.parametrize(
    ("leaf", "value", "expected"),
    [
        (glob("verb", "create"), "create", True),
        (glob("verb", "create"), "CREATE", True),  # Sigma compares case-insensitively by default
        (glob("verb", "create"), "created", False),
        (glob("verb", "create", cased=True), "CREATE", False),
        (glob("verb", "create", cased=True), "create", True),
        (glob("userAgent", STAR, "curl", STAR), "x-CURL/8", True),
        (glob("userAgent", STAR, "curl", STAR), "wget", False),
        (glob("userAgent", "kubectl", STAR), "Kubectl/v1.31", True),
        (glob("userAgent", "kubectl", STAR), "not-kubectl", False),
        (glob("userAgent", STAR, ".exe"), "tool.EXE", True),
        (glob("userAgent", STAR, ".exe"), "tool.exe.txt", False),
        (glob("userAgent", "v", ONE, ".31"), "v1.31", True),
        (glob("userAgent", "v", ONE, ".31"), "v12.31", False),
        (glob("userAgent", STAR), "", True),
        (glob("userAgent", "a", STAR, "b", ONE), "aXXbc", True),
        (glob("userAgent", "a", STAR, "b", ONE), "aXXb", False),
        (glob("userAgent", "a.c"), "abc", False),  # a literal dot is no wildcard
        (glob("userAgent", "a", STAR, "c", cased=True), "AbC", False),
        (Leaf("userAgent", "re", "^kube"), "kubectl", True),
        (Leaf("userAgent", "re", "^kube", cased=True), "Kubectl", False),  # Sigma regexes are cased by default
        (Leaf("userAgent", "re", "^kube"), "Kubectl", True),
        (Leaf("userAgent", "re", "(?i)^KUBE", cased=True), "kubectl", True),
        (Leaf("userAgent", "re", "ctl"), "kubectl/1", True),  # searched, not anchored
        (Leaf("userAgent", "re", "^ctl"), "kubectl/1", False),
    ],
)
def test_string_leaves(leaf: Leaf, value: str, expected: bool) -> None:
    assert both(leaf, {leaf.field or "userAgent": value} if leaf.field == "verb" else {"userAgent": value}) is expected


@pytest.mark.parametrize(
    ("network", "address", "expected"),
    [
        ("10.0.0.0/8", "10.200.3.4", True),
        ("10.0.0.0/8", "11.0.0.1", False),
        ("10.0.0.0/8", "2001:db8::1", False),
        ("2001:db8::/32", "2001:db8:ffff::1", True),
        ("2001:db8::/32", "2001:db9::1", False),
        ("2001:db8::/32", "not an address", False),
        ("192.168.1.7/32", "192.168.1.7", True),
    ],
)
def test_cidr(network: str, address: str, expected: bool) -> None:
    assert both(Leaf("sourceIPs", "cidr", network), {"sourceIPs": ["203.0.113.1", address]}) is expected
    on_body = {"requestObject": {"status": {"podIP": address}}}
    assert both(Leaf("requestObject.status.podIP", "cidr", network), on_body) is expected


@pytest.mark.parametrize(
    ("comparison", "number", "value", "expected"),
    [
        ("eq", 403, 403, True),
        ("eq", 403, 404, False),
        ("eq", 3, "3", True),  # a numeric string is a number
        ("eq", 3, "3.0", True),
        ("eq", 3, "three", False),
        ("eq", 1, True, False),  # a boolean is no number
        ("lt", 3, 2, True),
        ("lt", 3, 3, False),
        ("lte", 3, 3, True),
        ("lte", 3, "4", False),
        ("gt", 3, 4, True),
        ("gt", 3, 3, False),
        ("gte", 3, 3, True),
        ("gte", 3, 2.5, False),
        ("gte", 2.5, "2.5", True),
    ],
)
def test_numbers(comparison: str, number: float, value: Any, expected: bool) -> None:
    leaf = Leaf("requestObject.spec.replicas", "num", (comparison, number))
    assert both(leaf, {"requestObject": {"spec": {"replicas": value}}}) is expected


def test_response_code_compares_as_a_number() -> None:
    assert both(Leaf("responseStatus.code", "num", ("gte", 400)), {"responseStatus": {"code": 403}})
    assert not both(Leaf("responseStatus.code", "num", ("gte", 400)), {"responseStatus": {"code": 201}})
    assert not both(Leaf("responseStatus.code", "num", ("gte", 400)), {})


@pytest.mark.parametrize(
    ("want", "value", "expected"),
    [(True, True, True), (True, False, False), (True, "true", True), (True, "TRUE", True), (False, "false", True),
     (False, False, True), (True, 1, False), (True, "yes", False), (False, None, False)],
)  # fmt: skip
def test_booleans(want: bool, value: Any, expected: bool) -> None:
    leaf = Leaf("requestObject.spec.hostNetwork", "bool", want)
    assert both(leaf, {"requestObject": {"spec": {"hostNetwork": value}}}) is expected


@pytest.mark.parametrize(
    ("event", "null", "exists"),
    [
        ({}, True, False),
        ({"userAgent": None}, True, False),
        ({"userAgent": ""}, False, True),  # an empty string is a value
        ({"userAgent": "kubectl"}, False, True),
    ],
)
def test_null_and_exists(event: dict[str, Any], null: bool, exists: bool) -> None:
    assert both(Leaf("userAgent", "null", None), event) is null
    assert both(Leaf("userAgent", "exists", True), event) is exists
    assert both(Leaf("userAgent", "exists", False), event) is not exists


def test_an_empty_list_holds_no_value() -> None:
    assert both(Leaf("sourceIPs", "null", None), {"sourceIPs": []})
    assert not both(Leaf("user.groups", "exists", True), {"user": {"username": "a", "groups": []}})
    assert not both(Leaf("requestObject.spec.volumes", "exists", True), {"requestObject": {"spec": {"volumes": []}}})


def test_null_and_exists_on_bodies_and_lists() -> None:
    spec = {"requestObject": {"spec": {"containers": [{"name": "a"}, {"name": "b", "securityContext": {}}]}}}
    assert both(Leaf("requestObject.spec.containers.name", "exists", True), spec)
    assert both(Leaf("requestObject.spec.containers.securityContext.privileged", "null", None), spec)
    assert not both(Leaf("requestObject.spec.containers.name", "null", None), spec)
    assert both(Leaf("sourceIPs", "exists", True), {"sourceIPs": ["10.0.0.1"]})
    assert both(Leaf("sourceIPs", "null", None), {})


# ---------------------------------------------------------------- paths


def test_a_path_through_a_list_tests_every_element() -> None:
    pod = {
        "spec": {"containers": [{"securityContext": {"privileged": False}}, {"securityContext": {"privileged": True}}]}
    }
    privileged = Leaf("requestObject.spec.containers.securityContext.privileged", "bool", True)
    assert both(privileged, {"requestObject": pod})
    pod["spec"]["containers"][1]["securityContext"]["privileged"] = False
    assert not both(privileged, {"requestObject": pod})
    groups = glob("user.groups", "system:masters")
    assert both(groups, {"user": {"username": "x", "groups": ["dev", "system:masters"]}})
    assert not both(groups, {"user": {"username": "x", "groups": ["dev"]}})


def test_lists_of_lists_and_nulls_in_lists() -> None:
    body = {"requestObject": {"rules": [{"verbs": ["get", None]}, {"verbs": ["*"]}], "x": [[1, 2], [3]]}}
    assert both(glob("requestObject.rules.verbs", "*"), body)  # a literal '*' part, not a wildcard
    assert both(Leaf("requestObject.x", "num", ("eq", 3)), body)


def test_a_string_test_on_a_mapping_tests_its_keys_and_string_values() -> None:
    data = {"requestObject": {"data": {"aws_access_key_id": "AKIAIOSFODNN7EXAMPLE", "replicas": 3}}}
    assert both(glob("requestObject.data", STAR, "access_key", STAR), data)  # a key
    assert both(Leaf("requestObject.data", "re", "AKIA[A-Z0-9]{16}", cased=True), data)  # a value
    assert not both(glob("requestObject.data", "3"), data)  # a mapping's numbers are not its text
    assert not both(glob("requestObject.data", STAR, "secret", STAR), data)


def test_dotted_annotation_keys_are_found_whole() -> None:
    event = {"annotations": {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": ""}}
    assert both(glob("annotations.authorization.k8s.io/decision", "allow"), event)
    assert not both(glob("annotations.authorization.k8s.io/decision", "forbid"), event)
    assert both(glob('annotations."authorization.k8s.io/decision"', "allow"), event)  # quoted
    body = {"requestObject": {"metadata": {"annotations": {"seccomp.security.alpha.kubernetes.io/pod": "unconfined"}}}}
    assert both(glob("requestObject.metadata.annotations.seccomp.security.alpha.kubernetes.io/pod", "unconfined"), body)


def test_numbers_and_booleans_are_compared_by_their_text_in_a_string_test() -> None:
    assert both(glob("responseStatus.code", "403"), {"responseStatus": {"code": 403}})
    assert both(glob("requestObject.spec.hostPID", "true"), {"requestObject": {"spec": {"hostPID": True}}})
    assert both(glob("requestObject.spec.n", "2.5"), {"requestObject": {"spec": {"n": 2.5}}})


def test_not_all_any() -> None:
    event = {"verb": "delete", "objectRef": {"resource": "secrets", "namespace": "kube-system"}}
    system = glob("objectRef.namespace", "kube-system")
    assert both(All((glob("verb", "delete"), system)), event)
    assert not both(All((glob("verb", "delete"), Not(system))), event)
    assert both(AnyOf((glob("verb", "get"), system)), event)
    assert not both(AnyOf((glob("verb", "get"), Not(system))), event)
    assert both(Not(glob("objectRef.name", "x")), event)  # NOT of a missing field holds


def test_keyword_search_reads_every_string_value_bodies_included_keys_not() -> None:
    event = {"verb": "create", "requestObject": {"data": {"note": "run mimikatz now"}}, "responseStatus": {"code": 201}}
    assert both(glob(None, STAR, "mimikatz", STAR), event)
    assert not both(glob(None, STAR, "nothing-here", STAR), event)
    assert not both(glob(None, "impersonatedUser"), event)  # an absent field's name is no value
    assert not both(glob(None, "note"), event)  # nor a body's key
    assert both(Leaf(None, "re", "mimi[a-z]+"), event)
    with_details = {"responseStatus": {"code": 409, "details": {"name": "conflicting-name"}}}
    assert both(glob(None, "conflicting-name"), with_details)  # responseStatus.details is raw JSON


def test_explain_names_the_paths_that_held() -> None:
    rule = All(
        (glob("verb", "create"), glob("requestObject.data", STAR, "aws_access_key_id", STAR), Not(glob("verb", "x")))
    )
    doc = Doc(audit(verb="create", requestObject={"data": {"aws_access_key_id": "AKIAIOSFODNN7EXAMPLE", "a": "b"}}))
    assert predicate(rule, audit_scalar)(doc)
    assert explain(rule, doc) == {"verb": "create", "requestObject.data.aws_access_key_id": "AKIAIOSFODNN7EXAMPLE"}


# ---------------------------------------------------------------- the fast paths agree with a naive evaluator

FIELDS = (
    "verb", "user.username", "user.groups", "sourceIPs", "userAgent", "objectRef.resource", "objectRef.namespace",
    "objectRef.apiGroup", "responseStatus.code", "requestObject.spec.replicas",
    "requestObject.spec.containers.securityContext.privileged", "requestObject.data",
    "annotations.authorization.k8s.io/decision", "requestObject.spec.missing",
)  # fmt: skip
WORDS = (
    "pods",
    "POD",
    "s",
    "kube-",
    "alice",
    "10.1",
    "3",
    "403",
    "true",
    "allow",
    "aws_access_key_id",
    "AKIA",
    "system:",
)
KEYWORDS = ("alice", "kube-", "AKIA", "10.1.2.3", "eu-west-1")  # no field name holds these
PATTERNS = ("^pod", "(?i)^POD", "s$", "kube-.*", "[0-9]+", "^AKIA[A-Z0-9]{16}$", "^$")
NETWORKS = ("10.0.0.0/8", "2001:db8::/32", "192.168.1.0/24")
NUMBERS = (0, 3, 403, 2.5)


def _parts(words: tuple[str, ...]) -> st.SearchStrategy[tuple[Any, ...]]:
    word = st.sampled_from(words)
    shaped = st.one_of(
        word.map(lambda w: (w,)),
        word.map(lambda w: (STAR, w, STAR)),
        word.map(lambda w: (w, STAR)),
        word.map(lambda w: (STAR, w)),
        word.map(lambda w: (w, ONE)),
        st.just((STAR,)),
    )
    return st.one_of(shaped, st.lists(st.one_of(word, st.sampled_from((STAR, ONE))), min_size=1, max_size=4).map(tuple))


def _leaf(field: str) -> st.SearchStrategy[Leaf]:
    return st.one_of(
        st.builds(lambda p, c: Leaf(field, "glob", p, c), _parts(WORDS), st.booleans()),
        st.builds(lambda p, c: Leaf(field, "re", p, c), st.sampled_from(PATTERNS), st.booleans()),
        st.builds(lambda n: Leaf(field, "cidr", n), st.sampled_from(NETWORKS)),
        st.builds(lambda c, n: Leaf(field, "num", (c, n)), st.sampled_from(ir.COMPARISONS), st.sampled_from(NUMBERS)),
        st.builds(lambda b: Leaf(field, "bool", b), st.booleans()),
        st.just(Leaf(field, "null", None)),
        st.builds(lambda b: Leaf(field, "exists", b), st.booleans()),
    )  # fmt: skip


LEAVES = st.one_of(
    st.sampled_from(FIELDS).flatmap(_leaf),
    st.builds(lambda p, c: Leaf(None, "glob", p, c), _parts(KEYWORDS), st.booleans()),
    st.builds(lambda p: Leaf(None, "re", p), st.sampled_from(("ali.e", "AKIA[A-Z0-9]{4}", "^kube-"))),
)


def _same_field_or(field: str) -> st.SearchStrategy[ir.Node]:
    """An OR of equalities/prefixes/suffixes/substrings or of networks on one field: what _one_of merges."""
    simple = st.builds(lambda p: Leaf(field, "glob", p), _parts(WORDS).filter(lambda p: len(p) <= 3))
    nets = st.builds(lambda n: Leaf(field, "cidr", n), st.sampled_from(NETWORKS))
    return st.one_of(st.lists(simple, min_size=2, max_size=4), st.lists(nets, min_size=2, max_size=3)).map(
        lambda parts: AnyOf(tuple(parts))
    )


TREES = st.recursive(
    st.one_of(LEAVES, st.sampled_from(FIELDS).flatmap(_same_field_or)),
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=3).map(lambda p: All(tuple(p))),
        st.lists(inner, min_size=1, max_size=3).map(lambda p: AnyOf(tuple(p))),
        inner.map(Not),
    ),
    max_leaves=8,
)


def _optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


def _present(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A mapping holding some of the fields (a missing one and a null one both occur)."""
    return st.fixed_dictionaries({}, optional={name: _optional(value) for name, value in fields.items()})


EVENTS = _present(
    verb=st.sampled_from(("create", "get", "delete", "Create")),
    user=_present(username=st.sampled_from(("alice", "system:anonymous", "Alice")),
                  groups=st.lists(st.sampled_from(("system:masters", "dev")), max_size=2)),
    sourceIPs=st.lists(st.sampled_from(("10.1.2.3", "192.168.1.9", "2001:db8::7", "not-an-ip")), max_size=2),
    userAgent=st.sampled_from(("kubectl/v1.31", "curl/8", "", "POD-watcher")),
    objectRef=_present(resource=st.sampled_from(("pods", "secrets", "Pods")),
                       namespace=st.sampled_from(("kube-system", "prod-a", "")),
                       apiGroup=st.sampled_from(("rbac.authorization.k8s.io", ""))),
    responseStatus=_present(code=st.sampled_from((200, 403, 404))),
    requestObject=_present(
        spec=_present(replicas=st.sampled_from((1, 3, "3", "x", 2.5, True, "403")),
                      containers=st.lists(_present(securityContext=_present(
                          privileged=st.sampled_from((True, False, "true", "False")))), max_size=2)),
        data=st.dictionaries(st.sampled_from(("aws_access_key_id", "password", "region")),
                             st.sampled_from(("AKIAIOSFODNN7EXAMPLE", "alice", "eu-west-1", "pods")), max_size=2),
    ),
    annotations=st.dictionaries(st.just("authorization.k8s.io/decision"), st.sampled_from(("allow", "forbid")),
                                max_size=1),
)  # fmt: skip


def naive_values(node: Any, segments: list[str]) -> list[Any]:
    if isinstance(node, list):
        return [value for item in node if item is not None for value in naive_values(item, segments)]
    if not segments:
        return [node]
    if not isinstance(node, dict):
        return []
    found: list[Any] = []
    for end in range(1, len(segments) + 1):  # a key may hold dots (an annotation's name)
        key = ".".join(segments[:end])
        if node.get(key) is not None:
            found += naive_values(node[key], segments[end:])
    return found


def naive_texts(value: Any) -> list[str]:
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if isinstance(value, str):
        return [value]
    if isinstance(value, int | float):
        return [str(value)]
    if isinstance(value, dict):
        return [str(k) for k in value] + [v for v in value.values() if isinstance(v, str)]
    return []


def naive_string(leaf: Leaf) -> Any:
    flags = 0 if leaf.cased else re.IGNORECASE
    if leaf.op == "re":
        return lambda text: re.search(leaf.value, text, flags) is not None
    pattern = "".join(re.escape(p) if isinstance(p, str) else (".*" if p == STAR else ".") for p in leaf.value)
    return lambda text: re.fullmatch(pattern, text, flags | re.DOTALL) is not None


def naive_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def all_strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in all_strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in all_strings(item)]
    return []


def naive(node: ir.Node, event: dict[str, Any]) -> bool:
    """The IR's meaning (detect/ir.py), by plain recursion over the event as a dict."""
    if isinstance(node, All):
        return all(naive(part, event) for part in node.parts)
    if isinstance(node, AnyOf):
        return any(naive(part, event) for part in node.parts)
    if isinstance(node, Not):
        return not naive(node.part, event)
    if node.field is None:
        test = naive_string(node)
        return any(test(text) for text in all_strings(event))
    values = naive_values(event, node.field.split("."))
    if node.op == "null":
        return not values
    if node.op == "exists":
        return bool(values) is node.value
    if node.op in ("glob", "re"):
        test = naive_string(node)
        return any(test(text) for value in values for text in naive_texts(value))
    if node.op == "num":
        comparison, number = node.value
        numbers = [n for n in map(naive_number, values) if n is not None]
        compare = {"eq": float.__eq__, "lt": float.__lt__, "lte": float.__le__, "gt": float.__gt__, "gte": float.__ge__}
        return any(compare[comparison](float(n), float(number)) for n in numbers)
    if node.op == "bool":
        word = "true" if node.value else "false"
        return any(v is node.value or (isinstance(v, str) and v.lower() == word) for v in values)
    if node.op == "cidr":
        network = ipaddress.ip_network(node.value, strict=False)

        def inside(text: str) -> bool:
            try:
                return ipaddress.ip_address(text) in network
            except ValueError:
                return False

        return any(isinstance(v, str) and inside(v) for v in values)
    raise AssertionError(node)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TREES, st.lists(EVENTS, min_size=1, max_size=4))
@example(Leaf("sourceIPs", "exists", True), [{"sourceIPs": []}, {"user": {"groups": []}}])  # the list readers
@example(Not(Leaf("user.groups", "null", None)), [{"user": {"groups": []}}])
def test_compiled_predicates_agree_with_the_naive_evaluator(tree: ir.Node, events: list[dict[str, Any]]) -> None:
    fast = predicate(tree, audit_scalar)  # scalar readers, merged ORs, cached networks
    generic = predicate(tree)
    for fields in events:
        event = {**BASE, **fields}
        decoded = event_decoder.decode(json.dumps(event).encode())
        expected = naive(tree, event)
        assert fast(Doc(decoded)) is expected, (tree, event)
        assert generic(Doc(event)) is expected, (tree, event)


def test_response_status_details_are_read_like_any_object() -> None:
    """``responseStatus.details`` stays raw bytes in the typed event: a rule on it reads it decoded,
    and an event without details has none (not an empty object that ``exists`` would see)."""
    denied = {"responseStatus": {"code": 404, "details": {"kind": "pods", "name": "web"}}}
    assert both(glob("responseStatus.details.kind", "pods"), denied)
    assert both(Leaf("responseStatus.details", "exists", True), denied)
    assert not both(Leaf("responseStatus.details", "exists", True), {"responseStatus": {"code": 404}})
    assert both(Leaf("responseStatus.details.kind", "null", None), {"responseStatus": {"code": 404}})
