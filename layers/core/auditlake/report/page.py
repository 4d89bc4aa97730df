"""The report as one self-contained HTML page: ``render(ReportData) -> str``.

Contract:

- Self-contained: Plotly's own bundle (plotly.offline.get_plotlyjs, MIT) is inlined once; the page's
  Content-Security-Policy allows inline scripts and styles and nothing else (no fetch, no image, no
  font from anywhere), so it opens offline and a browser refuses any load a library might attempt.
- Every string from the lake is hostile (an attacker chooses user names, object names, user agents):
  in HTML it is escaped (``_h``); chart data is JSON inside ``<script type="application/json">`` with
  ``<``, ``>`` and ``&`` written as ``\\u003c`` etc., so no value can end the script element; and text
  Plotly draws (tick labels, hover text, legend names) goes through ``_p``, because Plotly reads its own
  small HTML subset there (``<b>``, ``<a href>``) and turns entities back into the characters shown.
- Each chart is a ``<div class="chart" data-chart="NAME">``; ``<body data-charts="N">`` says how many;
  after Plotly drew them all the page sets ``data-rendered="N"`` on ``<body>`` (or ``data-render-error``),
  which is what the browser test checks.
- No secret material: the page shows only the answers of the report's queries (no request or
  response bodies); the lake is redacted at ingest already.
"""

from __future__ import annotations

import html
import json
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from auditlake.report.data import ReportData, Timeline

_CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; font-src data:"
_CONFIG = {"displaylogo": False, "responsive": True, "modeBarButtonsToRemove": ["sendDataToCloud"]}
_MAX_HEATMAP_HOURS = 24 * 62  # hourly coverage cells; a longer window shows the table of gaps alone
_OUTCOME_COLOURS = {"allowed": "#2a9d8f", "denied (403)": "#d62828", "failed": "#f4a261", "no response": "#8d99ae"}
_LEVEL_COLOURS = {
    "critical": "#6a040f",
    "high": "#d62828",
    "medium": "#f77f00",
    "low": "#fcbf49",
    "informational": "#8d99ae",
}


def _h(value: Any) -> str:
    """Text for HTML (element content and attribute values)."""
    return html.escape("" if value is None else str(value), quote=True)


def _p(value: Any) -> str:
    """Text for Plotly's labels: its HTML subset escaped to entities Plotly shows as the characters."""
    return html.escape("" if value is None else str(value), quote=False)


def _t(moment: datetime | None) -> str | None:
    """A time as Plotly reads it (no zone: every time on the page is UTC, and the axes say so)."""
    return None if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def _when(moment: datetime | None) -> str:
    return "" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _script_json(value: Any) -> str:
    """JSON that is safe as the content of a ``<script>`` element: nothing in it can close the element."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return (
        text.replace("&", "\\u0026")
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def _outcome(code: int | None) -> str:
    if code is None:
        return "no response"
    if code == 403:
        return "denied (403)"
    return "allowed" if code < 400 else "failed"


class _Page:
    def __init__(self, data: ReportData) -> None:
        self.data = data
        self.figures: dict[str, dict[str, Any]] = {}
        self.sections: list[str] = []
        self.toc: list[tuple[str, str]] = []

    def chart(self, name: str, traces: list[dict[str, Any]], layout: dict[str, Any]) -> str:
        base = {
            "margin": {"l": 60, "r": 20, "t": 30, "b": 50},
            "height": 360,
            "hovermode": "closest",
            "legend": {"orientation": "h", "y": -0.2},
            "font": {"family": "system-ui, sans-serif", "size": 12},
        }
        self.figures[f"chart-{name}"] = {"data": traces, "layout": {**base, **layout}}
        return f'<div class="chart" id="chart-{name}" data-chart="{name}"></div>'

    def section(self, anchor: str, title: str, body: str) -> None:
        self.toc.append((anchor, title))
        self.sections.append(f'<section id="{anchor}"><h2>{_h(title)}</h2>{body}</section>')

    # ------------------------------------------------------------ sections

    def activity(self) -> None:
        d = self.data
        by_cluster: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in d.activity:
            by_cluster[str(row["cluster"])].append(row)
        if not by_cluster:
            self.section("activity", "Activity per cluster", _empty("No audit records in this window."))
            return
        traces = [
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": _p(cluster),
                "x": [_t(r["bucket_start"]) for r in rows],
                "y": [r["requests"] for r in rows],
                "line": {"shape": "hv"},
                "marker": {"size": 4},
                "hovertemplate": f"{_p(cluster)}<br>%{{x}} UTC<br>%{{y}} requests<extra></extra>",
            }
            for cluster, rows in sorted(by_cluster.items())
        ]
        layout = {
            "xaxis": {"title": {"text": f"time (UTC), per {d.bucket}"}, "type": "date"},
            "yaxis": {"title": {"text": "requests"}, "rangemode": "tozero"},
        }
        total = sum(int(r["requests"]) for r in d.activity)
        body = f"<p>{total:,} requests (each request once, whatever stages were logged), per {d.bucket}.</p>"
        self.section("activity", "Activity per cluster", body + self.chart("activity", traces, layout))

    def denials(self) -> None:
        d = self.data
        by_cluster: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in d.denials:
            by_cluster[str(row["cluster"])].append(row)
        if not by_cluster:
            self.section("denials", "Denied requests (403) per minute", _empty("No request was denied in this window."))
            return
        traces: list[dict[str, Any]] = [
            {
                "type": "bar",
                "name": f"403 in {_p(cluster)}",
                "x": [_t(r["minute"]) for r in rows],
                "y": [r["denied"] for r in rows],
                "hovertemplate": f"{_p(cluster)}<br>%{{x}} UTC<br>%{{y}} denied<extra></extra>",
            }
            for cluster, rows in sorted(by_cluster.items())
        ]
        shapes = []
        if d.bursts:
            traces.append(
                {
                    "type": "scatter",
                    "mode": "markers",
                    "name": "burst: threshold reached",
                    "x": [_t(b["threshold_reached_at"]) for b in d.bursts],
                    "y": [b["max_per_minute"] for b in d.bursts],
                    "marker": {"symbol": "x", "size": 14, "color": "#6a040f"},
                    "hovertext": [
                        f"{_p(b['identity'])} in {_p(b['cluster'])}<br>{b['max_per_minute']} denied in a minute, "
                        f"{b['denied_in_range']} in all"
                        for b in d.bursts
                    ],
                    "hoverinfo": "text",
                }
            )
            shapes = [
                {
                    "type": "rect",
                    "xref": "x",
                    "yref": "paper",
                    "x0": _t(b["first_denied"]),
                    "x1": _t(b["last_denied"]),
                    "y0": 0,
                    "y1": 1,
                    "fillcolor": "#d62828",
                    "opacity": 0.12,
                    "line": {"width": 0},
                }
                for b in d.bursts
            ]
        layout = {
            "barmode": "stack",
            "shapes": shapes,
            "xaxis": {"title": {"text": "time (UTC), per minute"}, "type": "date"},
            "yaxis": {"title": {"text": "denied requests"}, "rangemode": "tozero"},
        }
        rows = "".join(
            f"<tr><td>{_h(b['cluster'])}</td><td>{_h(b['identity'])}</td><td>{_h(_when(b['threshold_reached_at']))}</td>"
            f"<td class=n>{_h(b['max_per_minute'])}</td><td class=n>{_h(b['denied_in_range'])}</td>"
            f"<td>{_h(_join(b.get('verbs')))}</td><td>{_h(_join(b.get('resources')))}</td>"
            f"<td>{_h(_join(b.get('source_ips')))}</td></tr>"
            for b in d.bursts
        )
        table = (
            _table(
                [
                    "cluster",
                    "identity",
                    "threshold reached",
                    "most in a minute",
                    "denied in window",
                    "verbs",
                    "resources",
                    "source IPs",
                ],
                rows,
            )
            if d.bursts
            else "<p>No burst: no identity reached the threshold within a minute.</p>"
        )
        body = "<p>Bursts (shaded, marked &times;) are the named query <code>forbidden_bursts</code>'s answer.</p>"
        self.section(
            "denials", "Denied requests (403) per minute", body + self.chart("denials", traces, layout) + table
        )

    def timelines(self, anchor: str, title: str, timelines: list[Timeline], kind: str) -> None:
        drawn = [t for t in timelines if t.rows]
        if not drawn:
            self.section(anchor, title, _empty("Nothing to draw in this window."))
            return
        groups: dict[str, dict[str, list[Any]]] = defaultdict(lambda: {"x": [], "y": [], "text": []})
        for timeline in drawn:
            label = _p(timeline.label)
            for row in timeline.rows:
                if kind == "identity":
                    group = _outcome(row.get("response_code"))
                    what = " ".join(
                        _p(v)
                        for v in (row.get("verb"), row.get("resource"), _ref(row.get("namespace"), row.get("name")))
                        if v
                    )
                    extra = f"as {_p(row['impersonating'])}<br>" if row.get("impersonating") else ""
                    text = f"{what}<br>{extra}code {_p(row.get('response_code'))} in {_p(row.get('cluster'))}"
                else:
                    group = "Event" if row.get("source") == "event" else _outcome(row.get("code"))
                    text = f"{_p(row.get('what'))}<br>by {_p(row.get('who'))} in {_p(row.get('cluster'))}"
                groups[group]["x"].append(_t(row["at"]))
                groups[group]["y"].append(label)
                groups[group]["text"].append(text)
        traces = [
            {
                "type": "scatter",
                "mode": "markers",
                "name": name,
                "x": g["x"],
                "y": g["y"],
                "hovertext": g["text"],
                "hoverinfo": "x+text",
                "marker": {"size": 7, "opacity": 0.7, "color": _OUTCOME_COLOURS.get(name, "#3a86ff")},
            }
            for name, g in sorted(groups.items())
        ]
        order = [_p(t.label) for t in drawn]
        layout = {
            "height": 140 + 34 * len(drawn),
            "margin": {"l": 260, "r": 20, "t": 30, "b": 50},
            "xaxis": {"title": {"text": "time (UTC)"}, "type": "date"},
            "yaxis": {"type": "category", "categoryorder": "array", "categoryarray": order[::-1], "automargin": True},
        }
        query = "identity_timeline" if kind == "identity" else "object_history"
        ranked = len(self.data.top_identities if kind == "identity" else self.data.top_objects)
        also = " and every identity of a burst" if kind == "identity" and len(timelines) > ranked else ""
        body = (
            f"<p>The top {ranked} by {'requests' if kind == 'identity' else 'changes'}{also}, each drawn from "
            f"the named query <code>{query}</code>.</p>"
        )
        capped = [t for t in drawn if t.total > len(t.rows)]
        if capped:
            body += (
                "<p class=note>"
                + "; ".join(f"{_h(t.label)}: the first {len(t.rows):,} of {t.total:,} drawn" for t in capped)
                + "</p>"
            )
        self.section(anchor, title, body + self.chart(anchor, traces, layout))

    def tops(self) -> None:
        d = self.data
        parts = []
        for name, key, rows in (
            ("identities", "identity", d.top_identities),
            ("verbs", "verb", d.top_verbs),
            ("resources", "resource", d.top_resources),
        ):
            if not rows:
                parts.append(_empty(f"No {name} in this window."))
                continue
            labels = [_p(r[key]) for r in rows]
            traces = [
                {
                    "type": "bar",
                    "orientation": "h",
                    "name": "allowed or failed",
                    "y": labels,
                    "x": [r["requests"] - r["denied"] for r in rows],
                    "marker": {"color": "#2a9d8f"},
                },
                {
                    "type": "bar",
                    "orientation": "h",
                    "name": "denied (403)",
                    "y": labels,
                    "x": [r["denied"] for r in rows],
                    "marker": {"color": "#d62828"},
                },
            ]
            layout = {
                "barmode": "stack",
                "height": 120 + 26 * len(rows),
                "margin": {"l": 260, "r": 20, "t": 30, "b": 40},
                "title": {"text": f"top {name}", "x": 0},
                "xaxis": {"title": {"text": "requests"}},
                "yaxis": {"type": "category", "autorange": "reversed", "automargin": True},
            }
            parts.append(self.chart(f"top-{name}", traces, layout))
        table = ""
        if d.top_identities:
            rows_html = "".join(
                f"<tr><td class=n>{_h(r['place'])}</td><td>{_h(r['identity'])}</td><td class=n>{r['requests']:,}</td>"
                f"<td class=n>{r['denied']:,}</td><td class=n>{_h(r['clusters'])}</td>"
                f"<td>{_h(_when(r['first_seen']))}</td>"
                f"<td>{_h(_when(r['last_seen']))}</td></tr>"
                for r in d.top_identities
            )
            table = _table(["#", "identity", "requests", "denied", "clusters", "first", "last"], rows_html)
        self.section("top", "Top identities, verbs and resources", "".join(parts) + table)

    def findings(self) -> None:
        found = self.data.findings
        if found is None:
            self.section("findings", "Findings", _empty("This lake's findings could not be read."))
            return
        if not found:
            self.section("findings", "Findings", _empty("No detection rule matched in this window."))
            return
        by_level: dict[str, dict[str, list[Any]]] = defaultdict(lambda: {"x": [], "y": [], "text": []})
        for f in found:
            group = by_level[str(f.get("level") or "-")]
            group["x"].append(_t(f["at"]) if isinstance(f.get("at"), datetime) else f.get("at"))
            group["y"].append(_p(f.get("title") or f.get("rule_id")))
            group["text"].append(
                f"{_p(f.get('identity'))} {_p(f.get('verb'))} {_p(f.get('resource'))} "
                f"{_p(_ref(f.get('namespace'), f.get('name')))} in {_p(f.get('cluster'))}"
            )
        traces = [
            {
                "type": "scatter",
                "mode": "markers",
                "name": _p(level),
                "x": g["x"],
                "y": g["y"],
                "hovertext": g["text"],
                "hoverinfo": "x+text",
                "marker": {"size": 10, "symbol": "diamond", "color": _LEVEL_COLOURS.get(level, "#3a86ff")},
            }
            for level, g in sorted(by_level.items())
        ]
        rules = {str(f.get("title") or f.get("rule_id")) for f in found}
        layout = {
            "height": 160 + 30 * len(rules),
            "margin": {"l": 320, "r": 20, "t": 30, "b": 50},
            "xaxis": {"title": {"text": "time (UTC)"}, "type": "date"},
            "yaxis": {"type": "category", "automargin": True},
        }
        rows = "".join(
            f"<tr><td>{_h(_when(f['at']) if isinstance(f.get('at'), datetime) else f.get('at'))}</td>"
            f"<td>{_h(f.get('level'))}</td><td>{_h(f.get('title'))}</td><td>{_h(f.get('cluster'))}</td>"
            f"<td>{_h(f.get('identity'))}</td><td>{_h(f.get('verb'))}</td><td>{_h(f.get('resource'))}</td>"
            f"<td>{_h(_ref(f.get('namespace'), f.get('name')))}</td></tr>"
            for f in found
        )
        table = _table(["at", "level", "rule", "cluster", "identity", "verb", "resource", "object"], rows)
        self.section("findings", f"Findings ({len(found):,})", self.chart("findings", traces, layout) + table)

    def coverage(self) -> None:
        d = self.data
        parts = []
        hours = _hours(d.since, d.until)
        clusters = sorted({str(r["cluster"]) for r in d.hourly})
        if clusters and len(hours) <= _MAX_HEATMAP_HOURS:
            counts = {(str(r["cluster"]), r["bucket_start"]): r["requests"] for r in d.hourly}
            z = [[counts.get((c, h), 0) for h in hours] for c in clusters]
            traces = [
                {
                    "type": "heatmap",
                    "x": [_t(h) for h in hours],
                    "y": [_p(c) for c in clusters],
                    "z": z,
                    "colorscale": [[0, "#ffffff"], [1e-9, "#caf0f8"], [1, "#03045e"]],
                    "xgap": 1,
                    "ygap": 2,
                    "hovertemplate": "%{y}<br>%{x} UTC<br>%{z} requests<extra></extra>",
                    "colorbar": {"title": {"text": "requests"}},
                }
            ]
            layout = {
                "height": 140 + 40 * len(clusters),
                "margin": {"l": 160, "r": 20, "t": 30, "b": 50},
                "xaxis": {"title": {"text": "hour (UTC); white: no audit record"}, "type": "date"},
                "yaxis": {"type": "category", "automargin": True},
            }
            parts.append(self.chart("coverage", traces, layout))
        elif clusters:
            parts.append(f"<p class=note>The window spans {len(hours):,} hours: the hourly chart is left out.</p>")
        if d.hours_without_data:
            rows = "".join(
                f"<tr><td>{_h(r['cluster'])}</td><td>{_h(_when(r['start']))}</td><td>{_h(_when(r['end']))}</td>"
                f"<td class=n>{r['hours']}</td></tr>"
                for r in d.hours_without_data
            )
            parts.append("<h3>Hours without audit records</h3>" + _table(["cluster", "from", "to", "hours"], rows))
        else:
            parts.append("<p>Every hour since each cluster's first record in the window holds audit records.</p>")
        if d.gaps:
            rows = "".join(
                f"<tr><td>{_h(g['cluster'])}</td><td>{_h(_when(g['gap_from']))}</td><td>{_h(_when(g['gap_to']))}</td>"
                f"<td>{_h(g['reason'])}</td><td>{_h(_when(g['recorded_at']))}</td></tr>"
                for g in d.gaps
            )
            parts.append(
                "<h3>Events the poller could not recover</h3>"
                + _table(["cluster", "from", "to", "why", "recorded"], rows)
            )
        else:
            parts.append("<p>Events: no coverage gap recorded (named query <code>coverage_gaps</code>).</p>")
        self.section("coverage", "Coverage", "".join(parts))

    def archive(self) -> None:
        state = self.data.archive
        if state is None:
            self.section(
                "archive", "Archive: sealed and not yet sealed", _empty("The archive's digests were not read.")
            )
            return
        traces = [
            {
                "type": "bar",
                "orientation": "h",
                "name": "sealed",
                "y": ["files"],
                "x": [state.sealed_files],
                "marker": {"color": "#2a9d8f"},
            },
            {
                "type": "bar",
                "orientation": "h",
                "name": "not yet sealed",
                "y": ["files"],
                "x": [len(state.unsealed)],
                "marker": {"color": "#f4a261"},
            },
        ]
        layout = {"barmode": "stack", "height": 170, "margin": {"l": 60, "r": 20, "t": 20, "b": 40}}
        facts = [
            ("sealed until", state.sealed_until or "never (no digest yet: run auditlake digest)"),
            ("digests", state.digests),
            ("files sealed", state.sealed_files),
            ("files not yet sealed", len(state.unsealed)),
            ("chain head", state.head or "-"),
            ("problems", len(state.problems) or "none"),
        ]
        body = (
            "<table class=facts>" + "".join(f"<tr><th>{_h(k)}</th><td>{_h(v)}</td></tr>" for k, v in facts) + "</table>"
        )
        if state.problems:
            body += (
                "<h3>Problems (auditlake verify)</h3><ul class=problems>"
                + "".join(f"<li>{_h(p)}</li>" for p in state.problems)
                + "</ul>"
            )
        if state.unsealed:
            shown = state.unsealed[:50]
            more = (
                f"<li>... and {len(state.unsealed) - len(shown):,} more</li>"
                if len(state.unsealed) > len(shown)
                else ""
            )
            body += (
                "<details><summary>Files not yet sealed</summary><ul>"
                + "".join(f"<li><code>{_h(k)}</code></li>" for k in shown)
                + more
                + "</ul></details>"
            )
        self.section("archive", "Archive: sealed and not yet sealed", self.chart("archive", traces, layout) + body)

    def html(self, plotly_js: str) -> str:
        d = self.data
        window = f"{_when(d.since)} to {_when(d.until)}"
        scope = f"cluster {_h(d.cluster)}" if d.cluster else "every cluster"
        total = sum(int(r["requests"]) for r in d.activity)
        denied = sum(int(r["denied"]) for r in d.activity)
        cards = [
            (f"{total:,}", "requests"),
            (f"{denied:,}", "denied (403)"),
            (f"{len(d.bursts):,}", "bursts"),
            ("-" if d.findings is None else f"{len(d.findings):,}", "findings"),
            (f"{len(d.gaps) + len(d.hours_without_data):,}", "coverage gaps"),
            ("-" if d.archive is None else f"{len(d.archive.unsealed):,}", "files not yet sealed"),
        ]
        cards_html = "".join(f"<div class=card><b>{v}</b><span>{_h(k)}</span></div>" for v, k in cards)
        toc = "".join(f'<a href="#{a}">{_h(t)}</a>' for a, t in self.toc)
        notes = "".join(f"<li>{_h(n)}</li>" for n in d.notes)
        notes_html = f"<ul class=note>{notes}</ul>" if notes else ""
        return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="auditlake report">
<title>auditlake report: {_h(d.source)}, {_h(window)}</title>
<style>{_STYLE}</style>
<script>{plotly_js}</script>
</head>
<body data-charts="{len(self.figures)}">
<header><h1>auditlake report</h1>
<p>{_h(d.source)}, {scope}: {_h(window)}. Generated {_h(_when(d.generated_at))}.</p>
<div class=cards>{cards_html}</div><nav>{toc}</nav>{notes_html}</header>
<main>{"".join(self.sections)}</main>
<script type="application/json" id="figures">{_script_json(self.figures)}</script>
<script>{_DRAW}</script>
</body>
</html>
"""


_DRAW = """(function () {
  var figures = JSON.parse(document.getElementById("figures").textContent);
  var config = %s;
  var ids = Object.keys(figures);
  Promise.all(ids.map(function (id) {
    return Plotly.newPlot(id, figures[id].data, figures[id].layout, config);
  })).then(function () {
    document.body.setAttribute("data-rendered", String(ids.length));
  }, function (error) {
    document.body.setAttribute("data-render-error", String(error));
    console.error("auditlake report: a chart failed to draw:", error);
  });
})();""" % json.dumps(_CONFIG)  # noqa: UP031 - the JS braces would all need doubling in an f-string

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1d2433;background:#f6f7f9}
header{background:#1d2433;color:#fff;padding:16px 28px}header h1{margin:0 0 4px;font-size:22px}
header p{margin:0 0 12px;color:#cfd6e4}.cards{display:flex;flex-wrap:wrap;gap:10px;margin-bottom:10px}
.card{background:#2c354a;border-radius:6px;padding:8px 14px;min-width:110px}.card b{display:block;font-size:20px}
.card span{font-size:12px;color:#cfd6e4}nav a{color:#9ecbff;margin-right:14px;font-size:13px}
main{padding:8px 28px 40px}section{background:#fff;border-radius:8px;padding:12px 18px;margin:16px 0;
box-shadow:0 1px 2px rgba(0,0,0,.08)}h2{font-size:17px;margin:4px 0 8px}h3{font-size:14px;margin:14px 0 6px}
table{border-collapse:collapse;font-size:12px;margin:8px 0;width:100%}th,td{text-align:left;padding:3px 8px;
border-bottom:1px solid #e4e7ec;vertical-align:top;word-break:break-all}th{background:#f0f2f5}td.n{text-align:right}
table.facts{width:auto}.note{color:#7a5c00;font-size:12px}.empty{color:#5c667a;font-style:italic}
ul.problems li{color:#a4161a}code{font-size:12px}
"""


def _empty(text: str) -> str:
    return f"<p class=empty>{_h(text)}</p>"


def _table(headers: list[str], rows: str) -> str:
    head = "".join(f"<th>{_h(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _join(values: Any) -> str:
    if isinstance(values, list | tuple):
        return ", ".join(str(v) for v in values)
    return "" if values is None else str(values)


def _ref(namespace: Any, name: Any) -> str:
    return "/".join(str(part) for part in (namespace, name) if part)


def _hours(since: datetime, until: datetime) -> list[datetime]:
    hour = since.replace(minute=0, second=0, microsecond=0)
    out = []
    while hour < until:
        out.append(hour)
        hour += timedelta(hours=1)
    return out


def render(data: ReportData) -> str:
    """The whole page. Plotly's bundle is read from the installed plotly package (about 4.8 MB)."""
    from plotly.offline import get_plotlyjs  # the report's only use of plotly: its JS, inlined

    page = _Page(data)
    page.activity()
    page.denials()
    page.timelines("identities", "Timeline per identity", data.identity_timelines, "identity")
    page.timelines("objects", "Timeline per object", data.object_timelines, "object")
    page.tops()
    page.findings()
    page.coverage()
    page.archive()
    return page.html(get_plotlyjs())
