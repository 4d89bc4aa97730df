"""The raw Glue tables and the ``<kind>_live`` views of template.yaml (tools/sync_template.py from
query/live.py): projection over the raw landing's hour-first layout, the JSON SerDe over zstd NDJSON,
and views whose Presto definition parses as Trino and exposes the archive table's columns."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest
import sqlglot
from sqlglot import exp

from auditlake.landing import raw_hour_prefix
from auditlake.model import ARCHIVE_KINDS
from auditlake.query import live

PRESTO_OF_GLUE = {"string": "varchar", "int": "integer", "timestamp": "timestamp(3)", "array<string>": "array(varchar)"}


def _input(expanded: dict[str, Any], logical: str) -> dict[str, Any]:
    resource = expanded["Resources"][logical]
    assert resource["Type"] == "AWS::Glue::Table"
    assert resource["Properties"]["DatabaseName"] == {"Ref": "GlueDatabase"}
    return resource["Properties"]["TableInput"]


def _definition(view: dict[str, Any], database: str = "prod_audit") -> dict[str, Any]:
    """The view's Presto definition as Athena reads it (CloudFormation substitutes the stack's database,
    then base64-encodes it), the JSON before the encoding."""
    prefix, encoded, suffix = view["ViewOriginalText"]["Fn::Join"][1]
    assert (prefix, suffix) == ("/* Presto View: ", " */")
    text = encoded["Fn::Base64"]["Fn::Sub"]
    assert "${" not in text.replace("${GlueDatabase}", "")  # nothing else to substitute
    substituted = text.replace("${GlueDatabase}", database)
    return json.loads(substituted)


@pytest.mark.parametrize("kind", list(ARCHIVE_KINDS))
def test_raw_table_projects_the_landing_hour(expanded: dict[str, Any], kind: str) -> None:
    table = _input(expanded, f"{kind.capitalize()}RawTable")
    assert table["Name"] == f"{kind}_raw" and table["TableType"] == "EXTERNAL_TABLE"
    assert table["PartitionKeys"] == [{"Name": "landed", "Type": "string"}]
    p = table["Parameters"]
    assert p["projection.enabled"] == "true"
    assert (p["projection.landed.type"], p["projection.landed.format"]) == ("date", "yyyy/MM/dd/HH")
    assert (p["projection.landed.interval"], p["projection.landed.interval.unit"]) == ("1", "HOURS")
    start, end = p["projection.landed.range"].split(",")
    assert start.startswith("NOW-") and end == "NOW+1HOURS"
    # The projected location is the landing's own hour prefix (landing.raw_hour_prefix), all clusters under it.
    assert p["storage.location.template"] == {"Fn::Sub": "s3://${RawBucket}/raw/" + kind + "/${!landed}/"}
    assert raw_hour_prefix(kind, datetime(2026, 1, 2, 3)) == f"raw/{kind}/2026/01/02/03/"
    storage = table["StorageDescriptor"]
    assert storage["SerdeInfo"]["SerializationLibrary"] == "org.openx.data.jsonserde.JsonSerDe"
    assert storage["InputFormat"] == "org.apache.hadoop.mapred.TextInputFormat"  # zstd by the .zst extension
    archive = _input(expanded, f"{kind.capitalize()}Table")["StorageDescriptor"]["Columns"]
    raw = storage["Columns"]
    # The archive's columns, timestamps as the RFC 3339 text raw lines hold (the view converts them).
    assert [c["Name"] for c in raw] == [c["Name"] for c in archive]
    assert [c["Type"] for c in raw] == ["string" if c["Type"] == "timestamp" else c["Type"] for c in archive]


@pytest.mark.parametrize("kind", list(ARCHIVE_KINDS))
def test_live_view_is_the_archive_table_plus_raw(expanded: dict[str, Any], kind: str) -> None:
    resource = expanded["Resources"][f"{kind.capitalize()}LiveView"]
    assert set(resource["DependsOn"]) == {f"{kind.capitalize()}Table", f"{kind.capitalize()}RawTable"}
    view = _input(expanded, f"{kind.capitalize()}LiveView")
    assert view["Name"] == f"{kind}_live" and view["TableType"] == "VIRTUAL_VIEW"
    assert view["Parameters"]["presto_view"] == "true"
    archive = _input(expanded, f"{kind.capitalize()}Table")
    expected = [(c["Name"], c["Type"]) for c in archive["StorageDescriptor"]["Columns"] + archive["PartitionKeys"]]
    assert [(c["Name"], c["Type"]) for c in view["StorageDescriptor"]["Columns"]] == expected
    definition = _definition(view)
    assert (definition["catalog"], definition["schema"]) == ("awsdatacatalog", "prod_audit")
    assert [(c["name"], c["type"]) for c in definition["columns"]] == [(n, PRESTO_OF_GLUE[t]) for n, t in expected]
    assert definition["originalSql"] == live.view_sql(ARCHIVE_KINDS[kind])
    tree = sqlglot.parse_one(definition["originalSql"], read="athena")
    assert tree.find(exp.Placeholder) is None
    assert isinstance(tree, exp.Union) and not tree.args.get("distinct")  # UNION ALL: nothing deduplicated twice
    assert {t.name for t in tree.find_all(exp.Table)} >= {kind, f"{kind}_raw"}
    assert tree.named_selects == [*(n for n, _ in expected)]


def test_the_view_reads_only_the_last_landing_hours() -> None:
    sql = live.view_sql(ARCHIVE_KINDS["audit"])
    assert f"INTERVAL '{live.RAW_HOURS}' HOUR" in sql and "landed >=" in sql
    assert live.WINDOW_HOURS > live.RAW_HOURS  # events land after they happen
