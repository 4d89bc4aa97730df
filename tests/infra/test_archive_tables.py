"""The Glue tables equal the Arrow schemas (one definition, in model.py), with partition projection,
and there is one named query per SQL file, in sync with the file and valid Trino."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import sqlglot

from auditlake.archive.schema import archive_schema
from auditlake.model import ARCHIVE_KINDS
from auditlake.query import named as query
from tests.helpers import ROOT

_ARROW_TO_GLUE = {
    "string": "string",
    "int32": "int",
    "timestamp[ms]": "timestamp",
    "list<item: string>": "array<string>",
}


@pytest.mark.parametrize("kind", list(ARCHIVE_KINDS))
def test_glue_columns_equal_the_arrow_schema(expanded: dict[str, Any], kind: str) -> None:
    table = expanded["Resources"][f"{kind.capitalize()}Table"]["Properties"]["TableInput"]
    columns = [(c["Name"], c["Type"]) for c in table["StorageDescriptor"]["Columns"]]
    schema = archive_schema(ARCHIVE_KINDS[kind])
    assert columns == [(field.name, _ARROW_TO_GLUE[str(field.type)]) for field in schema]
    assert table["PartitionKeys"] == [{"Name": "dt", "Type": "string"}, {"Name": "hour", "Type": "int"}]
    parameters = table["Parameters"]
    assert parameters["projection.enabled"] == "true"  # no crawler, no partitions to add
    assert (parameters["projection.dt.type"], parameters["projection.dt.format"]) == ("date", "yyyy-MM-dd")
    assert parameters["projection.hour.range"] == "0,23" and parameters["projection.hour.digits"] == "2"
    assert table["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"].endswith("ParquetHiveSerDe")


def test_generated_block_is_up_to_date() -> None:
    result = subprocess.run([sys.executable, "tools/sync_template.py", "--check"], cwd=ROOT, capture_output=True,
                            text=True, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_one_named_query_per_file(expanded: dict[str, Any]) -> None:
    named = {r["Properties"]["Name"]: r["Properties"] for r in expanded["Resources"].values()
             if r["Type"] == "AWS::Athena::NamedQuery"}  # fmt: skip
    assert sorted(named) == query.names() == sorted(p.stem for p in (ROOT / "infra" / "athena").glob("*.sql"))
    for name, properties in named.items():
        assert properties["QueryString"].strip() == query.load(name).sql.strip()
        assert properties["Database"] == {"Ref": "GlueDatabase"} and properties["WorkGroup"] == {
            "Ref": "AthenaWorkGroup"
        }


REQUIRED = {
    "secret_changes": {"name", "namespace"}, "forbidden_bursts": {"threshold"}, "pod_exec": set(),
    "secret_reads": set(), "rbac_escalation": set(), "anonymous_allowed": set(), "privileged_pods": set(),
    "pod_evictions_deletions": set(), "node_membership": set(), "identity_timeline": {"identity"},
    "object_history": {"resource", "namespace", "name"}, "impersonation": set(),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_named_query_is_trino_with_the_agreed_parameters(name: str) -> None:
    named = query.load(name)
    sqlglot.parse_one(named.sql, read="trino")  # raises on anything Athena's dialect would not parse
    assert set(named.params) == REQUIRED[name]
    assert {"since", "until", "cluster"} <= set(named.placeholders)
    assert named.params.get("threshold", "10") == "10"
