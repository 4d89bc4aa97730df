"""detect/sigma: published field names mapped by the pipeline; what cannot load is a problem line and
the rest loads; duplicate ids; correlations refer to loaded rules (in any file), and their base rules
stop generating unless they say so; lint offline (the unit tier blocks sockets); the compiled
built-in set equals the YAML's (what the layer ships)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from pytest_socket import SocketBlockedError

from auditlake.detect import ir
from auditlake.detect.rulesets import compile_builtin, compiled, load_compiled
from auditlake.detect.sigma import FIELD_MAPPING, lint, load_rules

RULES = Path(__file__).parents[1] / "fixtures" / "rules"


def fields(node: ir.Node) -> set[str | None]:
    if isinstance(node, ir.Leaf):
        return {node.field}
    if isinstance(node, ir.Not):
        return fields(node.part)
    return set().union(*(fields(part) for part in node.parts))


def test_the_pipeline_maps_published_names_to_audit_paths() -> None:
    loaded = load_rules([RULES / "pipeline"], builtin=False)
    assert loaded.problems == ()
    by_title = {rule.title: rule for rule in loaded.rules}
    assert by_title["Pod mounting the Docker socket"].condition == ir.Leaf(
        FIELD_MAPPING["hostPath"], "glob", ("/var/run/docker.sock",)
    )
    assert fields(by_title["Pod adding SYS_ADMIN"].condition) == {
        "requestObject.spec.containers.securityContext.capabilities.add"
    }
    assert fields(by_title["RBAC object touched"].condition) == {"objectRef.apiGroup"}


def test_what_cannot_load_is_a_problem_and_the_rest_loads() -> None:
    loaded = load_rules([RULES / "mixed"], builtin=False)
    assert [rule.title for rule in loaded.rules] == ["Node deleted, again"]  # duplicate.yml sorts first
    assert loaded.correlations == ()
    problems = {Path(source).name: reason for source, reason in loaded.problems}
    assert set(problems) == {"broken.yml", "windows.yml", "good.yml", "orphan-correlation.yml"}
    assert "expected ',' or '}'" in problems["broken.yml"]  # the YAML error, one line
    assert problems["windows.yml"].startswith("Windows process creation: not a Kubernetes audit or Events rule")
    assert problems["good.yml"] == (
        "Node deleted: duplicate rule id f0b81502-57c3-43bb-995b-e0859cb28999 "
        f"(first in {RULES / 'mixed' / 'duplicate.yml'})"
    )
    assert problems["orphan-correlation.yml"].endswith("refers to rules not loaded: no-such-rule")
    assert all("\n" not in reason for reason in problems.values())


def test_a_missing_directory_is_a_problem() -> None:
    loaded = load_rules([RULES / "no-such-dir"], builtin=False)
    assert loaded.rules == () and loaded.problems == ((str(RULES / "no-such-dir"), "no such file or directory"),)


def test_base_rules_of_a_non_generating_correlation_do_not_generate() -> None:
    loaded = load_rules([RULES / "custom"], builtin=False)
    assert loaded.problems == ()
    generate = {rule.name: rule.generate for rule in loaded.rules}
    assert generate == {"namespace-deleted": False, "events-oom-killed": True, "exec-in-production": True}
    (corr,) = loaded.correlations
    assert (corr.name, corr.type, corr.rules, corr.group_by, corr.timespan_seconds, corr.condition) == (
        "namespace-deletes", "event_count", ("namespace-deleted",), ("user.username",), 600, ("gte", 3)
    )  # fmt: skip
    assert {rule.logsource for rule in loaded.rules} == {"audit", "events"}


def test_a_correlation_may_count_a_rule_of_another_file(tmp_path: Path) -> None:
    text = (RULES / "custom" / "deletes-burst.yml").read_text()
    base, correlation = text.split("\n---\n")
    (tmp_path / "base.yml").write_text(base)
    (tmp_path / "z-correlation.yml").write_text(correlation)
    loaded = load_rules([tmp_path], builtin=False)
    assert loaded.problems == ()
    assert [c.name for c in loaded.correlations] == ["namespace-deletes"]
    assert [r.generate for r in loaded.rules] == [False]
    # and a built-in rule, when the built-in set is loaded with it
    (tmp_path / "base.yml").unlink()
    (tmp_path / "z-correlation.yml").write_text(correlation.replace("namespace-deleted", "forbidden-request"))
    with_builtin = load_rules([tmp_path])
    assert with_builtin.problems == ()
    assert "namespace-deletes" in [c.name for c in with_builtin.correlations]


@pytest.mark.filterwarnings("ignore:A test tried to use socket")
def test_lint_runs_offline() -> None:
    with pytest.raises(SocketBlockedError):  # the tier blocks sockets: lint below cannot use one
        socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    assert lint([RULES / "custom"]) == []
    assert lint([RULES / "pipeline"]) == []
    problems = lint([RULES / "mixed"])
    collisions = [(Path(source).name, message) for source, message in problems if "IdentifierCollision" in message]
    # reported once, on the two rules that share the id (not on every rule after them)
    assert sorted(name for name, _ in collisions) == ["duplicate.yml", "good.yml"]
    assert len([p for p in problems if "IdentifierCollision" not in p[1]]) == 4  # the load problems


def test_the_built_in_set_lints_clean() -> None:
    from auditlake.detect.sigma import BUILTIN_DIR

    assert lint([BUILTIN_DIR]) == []


def test_builtin_json_round_trip(tmp_path: Path) -> None:
    out = tmp_path / "builtin.json"
    count = compile_builtin(out)
    from_yaml = load_rules([])
    from_json = load_compiled(out.read_bytes())
    assert count == len(from_yaml.rules) + len(from_yaml.correlations) > 40
    assert from_json == ir.RuleSet(from_yaml.rules, from_yaml.correlations)  # problems are not carried
    assert load_compiled(compiled(from_json)) == from_json


@pytest.mark.parametrize(
    ("document", "reason"),
    [(b"not json", "not JSON"), (b"[1]", "an object with a 'rules' list"), (b'{"rules": [{"id": 1}]}', "shape")],
)
def test_a_compiled_document_that_is_not_one_is_a_one_line_value_error(document: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        load_compiled(document)


def test_a_correlation_ingest_cannot_count_loads_for_hunt_and_says_so(tmp_path: Path) -> None:
    (tmp_path / "quiet.yml").write_text(
        "title: Reads\nid: 7f3c1a2e-0000-4000-8000-000000000001\nname: reads\nstatus: test\nlevel: low\n"
        "logsource: {product: kubernetes, service: audit}\n"
        "detection:\n  sel:\n    verb: get\n  condition: sel\n"
        "---\n"
        "title: Too few reads\nid: 7f3c1a2e-0000-4000-8000-000000000002\nstatus: test\nlevel: low\n"
        "correlation:\n  type: event_count\n  rules: [reads]\n  group-by: [user.username]\n  timespan: 1h\n"
        "  condition: {lt: 3}\n"
    )
    rules = load_rules([tmp_path], builtin=False)
    assert [corr.condition for corr in rules.correlations] == [("lt", 3)]  # hunt still has it
    [(_, problem)] = rules.problems
    assert "not counted at ingest" in problem and "lt" in problem
