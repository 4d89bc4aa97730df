"""infra/grafana/auditlake.json cannot drift from the query files: it is this release's generator output,
every panel's SQL maps back to its file's text exactly (each Grafana expression back to ``?``, in the
file's placeholder order), every variable a panel uses exists, and the panel SQL, interpolated as Grafana
does, answers on a lake exactly what the query answers with the same values bound (DuckDB)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from auditlake.local_lake import LocalLake
from auditlake.query import named
from auditlake.report import grafana, queries
from tests import report_lake

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "infra" / "grafana" / "auditlake.json"
# What Grafana substitutes: the time range and the variables (sqlstring: quoted, quotes doubled).
EXPRESSION = re.compile(
    r"'\$\{__(?P<range>from|to):date:iso\}'"
    r"|CAST\(\$\{(?P<int>\w+):sqlstring\} AS integer\)"
    r"|\$\{(?P<var>\w+):sqlstring\}"
)
NOW = datetime.now(UTC)


def _load() -> dict:  # type: ignore[type-arg]
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def _query(title: str) -> named.NamedQuery:
    name = title.split(":", maxsplit=1)[0]
    return queries.load(name) if name in queries.names() else named.load(name)


def _param(match: re.Match[str]) -> str:
    """The parameter a Grafana expression stands for."""
    rng = match.group("range")
    return {"from": "since", "to": "until"}[rng] if rng else match.group("int") or match.group("var")


def test_the_committed_dashboard_is_the_generators_output() -> None:
    assert DASHBOARD.read_text(encoding="utf-8") == grafana.render(), (
        "regenerate it: python -m auditlake.report.grafana --out infra/grafana/auditlake.json"
    )


def test_every_query_has_a_panel_whose_sql_maps_back_to_its_file() -> None:
    panels = _load()["panels"]
    assert sorted(p["title"].split(":")[0] for p in panels) == sorted(queries.names() + named.names())
    for panel in panels:
        query = _query(panel["title"])
        (target,) = panel["targets"]
        assert target["datasource"]["type"] == panel["datasource"]["type"] == "grafana-athena-datasource"
        assert EXPRESSION.sub("?", target["rawSQL"]) == query.sql, query.name
        taken = [_param(m) for m in EXPRESSION.finditer(target["rawSQL"])]
        assert tuple(taken) == query.placeholders, query.name
        for param in {p for p in query.placeholders if p not in ("since", "until")}:
            whole = (query.params.get(param) or "").isdigit()
            assert (f"CAST(${{{param}:sqlstring}} AS integer)" in target["rawSQL"]) == whole


def test_every_variable_used_is_defined() -> None:
    dashboard = _load()
    defined = {v["name"] for v in dashboard["templating"]["list"]}
    used = {
        m.group("int") or m.group("var")
        for p in dashboard["panels"]
        for m in EXPRESSION.finditer(p["targets"][0]["rawSQL"])
    }
    used.discard(None)
    assert used <= defined and "datasource" in defined
    assert {"cluster", "top", "threshold", "bucket", "identity", "resource", "namespace", "name"} <= defined


def test_a_question_mark_in_a_string_is_not_a_placeholder() -> None:
    query = queries.parse("t", "-- what?\n-- params: x\n-- placeholders: x\nSELECT '?' AS q WHERE a = ?")
    assert (
        grafana.panel_sql(query)
        == "-- what?\n-- params: x\n-- placeholders: x\nSELECT '?' AS q WHERE a = ${x:sqlstring}"
    )


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> named.LocalEngine:
    lake: LocalLake = report_lake.build(tmp_path_factory.mktemp("lake"), now=NOW, seal=False)
    return named.LocalEngine(lake.archive_dir, lake.root, now=NOW)


def _interpolate(match: re.Match[str], variables: dict[str, str], time_range: dict[str, str]) -> str:
    """What Grafana puts in place of one expression: the range's ISO time, a variable as sqlstring."""
    if match.group("range"):
        return f"'{time_range[match.group('range')]}'"
    name = match.group("int") or match.group("var")
    literal = "'" + str(variables[name]).replace("'", "''") + "'"
    return f"CAST({literal} AS integer)" if match.group("int") else literal


def test_interpolated_as_grafana_does_the_panels_answer_as_the_queries(engine: named.LocalEngine) -> None:
    from auditlake.demo import synth

    since, until = NOW - timedelta(hours=1), NOW
    values = {"since": since.isoformat(), "until": until.isoformat(), "cluster": "", "identity": synth.INCIDENT_DENIED,
              "principal": synth.INCIDENT_DENIED, "resource": "secrets", "namespace": synth.INCIDENT_SECRET[0],
              "name": synth.INCIDENT_SECRET[1]}  # fmt: skip
    grafana_time = {"from": since.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
                    "to": until.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"}  # fmt: skip
    answered = 0
    for panel in _load()["panels"]:
        query = _query(panel["title"])
        own = {k: v for k, v in values.items() if k in query.params or k in named.COMMON}
        variables = {**{k: d for k, d in query.params.items() if d is not None}, **own}
        sql = EXPRESSION.sub(lambda m, v=variables: _interpolate(m, v, grafana_time), panel["targets"][0]["rawSQL"])
        panel_rows = engine.run(sql).rows
        bound = query.bind({**own, "since": grafana_time["from"], "until": grafana_time["to"]}, NOW)
        assert panel_rows == engine.run(query.sql, bound).rows, query.name
        answered += bool(panel_rows)
    assert answered >= 10  # the comparison is not between empty answers
