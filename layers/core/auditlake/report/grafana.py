"""The Grafana dashboard over a deployed stack's Athena tables (data source plugin
``grafana-athena-datasource``), generated from the query files so it cannot drift from them:
``python -m auditlake.report.grafana --out infra/grafana/auditlake.json``.

Contract: one panel per query, the report's aggregates first (report/sql), then every named query
(assets/athena); each panel's SQL is its file's text with each ``?`` placeholder (a placeholder token,
never a ``?`` inside a string or comment) replaced by the Grafana expression of the parameter it takes
(``-- placeholders:``), and nothing else changed:

- ``since`` / ``until``: the dashboard's time range, ``'${__from:date:iso}'`` / ``'${__to:date:iso}'``
  (ISO 8601 UTC, what ``from_iso8601_timestamp`` reads, as the CLI binds them);
- any other parameter: a dashboard variable of the same name, quoted and escaped by Grafana
  (``${name:sqlstring}``), and ``CAST(${name:sqlstring} AS integer)`` for one whose default is a whole
  number (``top``, ``threshold``, ``lookback_days``), so a variable's value is always one SQL literal.

``placeholder_expression`` is that mapping; tests/unit/test_grafana_dashboard.py maps every panel back
and compares it with the files, and compares the committed JSON with this module's output.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from auditlake.query import named
from auditlake.report import queries

DATASOURCE = {"type": "grafana-athena-datasource", "uid": "${datasource}"}
FORMAT_TIME_SERIES, FORMAT_TABLE = 0, 1
# The report's aggregates drawn over time (time column first); every other query is a table.
TIME_SERIES = {"activity": "requests per bucket and cluster", "denials_per_minute": "403s per minute and cluster"}
_WIDTH, _HEIGHT = 24, 9


def placeholder_expression(param: str, default: str | None) -> str:
    """The Grafana expression that takes the place of a ``?`` bound to ``param``."""
    if param == "since":
        return "'${__from:date:iso}'"
    if param == "until":
        return "'${__to:date:iso}'"
    if default is not None and default.isdigit():
        return f"CAST(${{{param}:sqlstring}} AS integer)"
    return f"${{{param}:sqlstring}}"


def placeholder_spans(sql: str) -> list[tuple[int, int]]:
    """Where the ``?`` placeholders are (start, end exclusive), as Athena's parser (Trino) sees them."""
    from sqlglot.dialects.dialect import Dialect
    from sqlglot.tokens import TokenType

    tokens = Dialect.get_or_raise("trino").tokenize(sql)
    return [(t.start, t.end + 1) for t in tokens if t.token_type == TokenType.PLACEHOLDER]


def panel_sql(query: named.NamedQuery) -> str:
    """The query's file with each placeholder replaced by its parameter's Grafana expression."""
    spans = placeholder_spans(query.sql)
    if len(spans) != len(query.placeholders):
        raise named.QueryError(f"{query.name}: {len(spans)} placeholders, {len(query.placeholders)} declared")
    out, at = [], 0
    for (start, end), param in zip(spans, query.placeholders, strict=True):
        out += [query.sql[at:start], placeholder_expression(param, query.params.get(param))]
        at = end
    out.append(query.sql[at:])
    return "".join(out)


def all_queries() -> list[tuple[str, named.NamedQuery]]:
    """(origin, query): the report's aggregates, then the named queries, each in name order."""
    return [("report", queries.load(n)) for n in queries.names()] + [("named", named.load(n)) for n in named.names()]


def _panel(number: int, origin: str, query: named.NamedQuery, y: int) -> dict[str, Any]:
    series = origin == "report" and query.name in TIME_SERIES
    return {
        "id": number,
        "type": "timeseries" if series else "table",
        "title": f"{query.name}" + (f": {TIME_SERIES[query.name]}" if series else ""),
        "description": query.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": _HEIGHT, "w": _WIDTH, "x": 0, "y": y},
        "targets": [
            {
                "refId": "A",
                "datasource": DATASOURCE,
                "format": FORMAT_TIME_SERIES if series else FORMAT_TABLE,
                "connectionArgs": {"region": "__default", "catalog": "__default", "database": "__default"},
                "rawSQL": panel_sql(query),
            }
        ],
        "options": {} if series else {"showHeader": True},
    }


def _variables(found: list[tuple[str, named.NamedQuery]]) -> list[dict[str, Any]]:
    defaults: dict[str, str | None] = {"cluster": ""}
    for _, query in found:
        for param, default in query.params.items():
            defaults.setdefault(param, default)
    variables: list[dict[str, Any]] = [
        {"name": "datasource", "label": "Athena data source", "type": "datasource",
         "query": "grafana-athena-datasource", "hide": 0, "refresh": 1},
    ]  # fmt: skip
    for name in sorted(defaults):
        value = defaults[name] or ""
        if name == "bucket":
            options = ["minute", "hour", "day"]
            variables.append({
                "name": name, "label": name, "type": "custom", "query": ",".join(options), "hide": 0,
                "current": {"text": value, "value": value},
                "options": [{"text": o, "value": o, "selected": o == value} for o in options],
            })  # fmt: skip
            continue
        variables.append({
            "name": name, "label": name, "type": "textbox", "query": value, "hide": 0,
            "current": {"text": value, "value": value},
            "description": "empty: every cluster" if name == "cluster" else f"parameter {name} of the queries below",
        })  # fmt: skip
    return variables


def dashboard() -> dict[str, Any]:
    """The whole dashboard JSON (importable: no id, a fixed uid, the data source chosen on import)."""
    found = all_queries()
    panels = [_panel(n, origin, query, (n - 1) * _HEIGHT) for n, (origin, query) in enumerate(found, 1)]
    return {
        "uid": "auditlake-named-queries",
        "title": "auditlake: Kubernetes audit (named queries)",
        "description": "Generated by python -m auditlake.report.grafana from auditlake's query files; do not edit.",
        "tags": ["auditlake", "kubernetes", "audit", "athena"],
        "timezone": "utc",
        "editable": True,
        "schemaVersion": 39,
        "time": {"from": "now-24h", "to": "now"},
        "refresh": "",
        "templating": {"list": _variables(found)},
        "annotations": {"list": []},
        "panels": panels,
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, help="write here (default: stdout)")
    args = parser.parse_args(argv)
    text = render()
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
