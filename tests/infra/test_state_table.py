"""template.yaml's ``dynamodb:LeadingKeys`` grants and the state table's layout (state_table.py) agree:
every role reaches the table only through a prefix of the layout, and every prefix a function uses is
granted to some role."""

from __future__ import annotations

from collections.abc import Iterator
from fnmatch import fnmatchcase
from typing import Any

from auditlake import state_table
from auditlake.state_table import OPERATOR_ONLY, PREFIXES, leading_keys

TABLE = {"Fn::GetAtt": ["StateTable", "Arn"]}


def _statements(node: Any) -> Iterator[dict[str, Any]]:
    """Every policy statement under ``node``, both branches of an ``Fn::If`` included."""
    if isinstance(node, dict):
        if "Effect" in node and "Action" in node:
            yield node
            return
        for value in node.values():
            yield from _statements(value)
    elif isinstance(node, list):
        for value in node:
            yield from _statements(value)


def grants(transformed: dict[str, Any]) -> dict[str, list[tuple[str, list[str]]]]:
    """Per role (or policy attached to one): the operator and values of each LeadingKeys condition
    on a statement that reaches the state table."""
    out: dict[str, list[tuple[str, list[str]]]] = {}
    for name, resource in transformed["Resources"].items():
        if resource["Type"] not in ("AWS::IAM::Role", "AWS::IAM::Policy"):
            continue
        for statement in _statements(resource["Properties"]):
            named = statement.get("Resource", [])  # a trust policy's statements name none
            resources = named if isinstance(named, list) else [named]
            if TABLE not in resources:
                continue
            conditions = [
                (operator, values["dynamodb:LeadingKeys"])
                for operator, values in statement.get("Condition", {}).items()
                if "dynamodb:LeadingKeys" in values
            ]
            assert conditions, f"{name} {statement.get('Sid')}: the state table without a LeadingKeys condition"
            out.setdefault(name, []).extend(conditions)
    return out


def test_every_leading_keys_condition_is_a_prefix_of_the_table(transformed: dict[str, Any]) -> None:
    patterns = {leading_keys(prefix) for prefix in PREFIXES}
    roles = grants(transformed)
    assert roles, "no role reaches the state table"
    for role, conditions in roles.items():
        for operator, values in conditions:
            assert operator.startswith("ForAllValues:"), f"{role}: {operator} grants any key beside one of its own"
            assert set(values) <= patterns, f"{role}: {sorted(set(values) - patterns)} not in state_table"
            # StringEquals takes a '*' literally: a prefix pattern granted that way grants nothing.
            wildcards = [value for value in values if "*" in value]
            assert not wildcards or operator == "ForAllValues:StringLike", f"{role}: {wildcards} under {operator}"


def test_every_prefix_a_function_uses_is_granted_and_the_cli_only_ones_are_not(transformed: dict[str, Any]) -> None:
    granted = {value for conditions in grants(transformed).values() for _, values in conditions for value in values}
    for prefix in PREFIXES:
        if prefix in OPERATOR_ONLY:
            assert leading_keys(prefix) not in granted, f"{prefix} is granted to a role: not operator-only"
        else:
            assert leading_keys(prefix) in granted, f"no role is granted {prefix}"


def test_each_key_builder_falls_under_its_prefix_pattern_only() -> None:
    built = {
        state_table.TOKEN: state_table.token_key("0" * 64),
        state_table.CLUSTER: state_table.cluster_key("prod"),
        state_table.POLLING: state_table.polling_key("prod"),
        state_table.POLLER: state_table.poller_key("prod"),
        state_table.CHECKPOINT: state_table.checkpoint_key("backfill/prod"),
        state_table.ALERT: state_table.alert_key(
            state_table.alert_stream("forbidden", "prod", "mallory"), "2025-01-01T00:00:00"
        ),
        state_table.SEEN: state_table.seen_key("prod"),
        state_table.LOCK: state_table.lock_key(state_table.lock_name("audit", "2025-01-01", "00")),
        state_table.LEDGER: state_table.ledger_key("2025-01-01T00", "audit/dt=2025-01-01/hour=00/x.parquet"),
        state_table.DIGEST_HEAD: state_table.digest_head_key(),
        state_table.FINDING: state_table.finding_key("rule-id", "prod", "mallory", "secrets/prod/db-pass"),
        state_table.COMPACTED: state_table.compacted_key("audit", "2025-01-01T00"),
    }
    assert set(built) == set(PREFIXES)
    for prefix, key in built.items():
        assert set(key) == {"pk", "sk"}, prefix
        matches = [other for other in PREFIXES if fnmatchcase(key["pk"]["S"], leading_keys(other))]
        assert matches == [prefix], f"{key['pk']['S']} matches {matches}"


def test_the_ttl_attribute_is_the_one_the_table_expires_by(template: dict[str, Any]) -> None:
    spec = template["Resources"]["StateTable"]["Properties"]["TimeToLiveSpecification"]
    assert spec == {"AttributeName": state_table.TTL, "Enabled": True}
