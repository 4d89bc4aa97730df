"""Attack: HTML/JS injection into ``auditlake report`` through names an attacker chooses.

Whoever can send requests chooses their user name (an OIDC claim, a client certificate's CN) and the
object names in the URIs they request, and the audit log keeps both as sent. The report shows them in
HTML tables, in the chart data (JSON inside a ``<script>`` element) and in Plotly's labels, which read
a small HTML subset (``<a href>``, ``<b>``). Each payload, once it runs, marks ``<body data-pwned=...>``.

Canary: ``data-pwned`` never appears on the page's body in a real browser (headless Chromium), no
console message (an uncaught error or a CSP refusal would be one), and the page has exactly its own
three scripts. Neighbours it must not lose: every chart still draws, the hostile names are shown as
text, and the ordinary identities (alice) are still ranked.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from auditlake.query.named import LocalEngine
from auditlake.report.data import gather
from auditlake.report.page import render
from tests import browser, report_lake

NOW = datetime.now(UTC)
MARK = "document.body.setAttribute('data-pwned','{}')"
SCRIPT_USER = f"<script>{MARK.format('script')}</script>"
IMG_USER = f'<img src=x onerror="{MARK.format("img")}">'
LINK_USER = f'<a href="javascript:{MARK.format("link")}">support</a>'
CLOSING_NAME = f"</script><script>{MARK.format('close')}</script>"
HOSTILE = (SCRIPT_USER, IMG_USER, LINK_USER, CLOSING_NAME)


def _hostile_events() -> list[dict[str, object]]:
    events = []
    start = NOW - timedelta(minutes=12)
    for n, user in enumerate((SCRIPT_USER, IMG_USER, LINK_USER)):
        for i in range(12):  # a burst each: the bursts table, a timeline and its tick label
            at = start + timedelta(minutes=2 * n, seconds=3 * i)
            events.append(report_lake.audit_event(user, at=at, code=403, audit_id=f"hostile-{n}-{i}"))
    for i in range(400):  # enough changes to rank among the top objects: its timeline and label
        at = start + timedelta(seconds=i)
        events.append(report_lake.audit_event("mallory", at=at, verb="update", resource="configmaps",
                                              name=CLOSING_NAME, audit_id=f"close-{i}"))  # fmt: skip
    return events


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lake")
    lake = report_lake.build(root, now=NOW, extra=_hostile_events(), seal=False)
    engine = LocalEngine(lake.archive_dir, lake.root, now=NOW)
    data = gather(engine, source=f"lake {root}", since=NOW - timedelta(hours=1), until=NOW, now=NOW, top=5)
    assert {b["identity"] for b in data.bursts} >= {SCRIPT_USER, IMG_USER, LINK_USER}
    assert CLOSING_NAME in {r["name"] for r in data.top_objects}
    out = root / "report.html"
    out.write_text(render(data), encoding="utf-8")
    return out


def test_no_payload_survives_in_the_text(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    assert text.count("<script") == 3  # Plotly's bundle, the figures (JSON), the drawing: none of the lake's
    for payload in HOSTILE:
        assert payload not in text
    assert "&lt;script&gt;document.body.setAttribute(&#x27;data-pwned&#x27;" in text  # the bursts table
    # chart data: escaped for Plotly's labels, then JSON whose &, < and > cannot close its element
    assert "\\u0026lt;img src=x onerror=" in text


def test_a_browser_runs_none_of_it_and_shows_the_names(page: Path) -> None:
    loaded = browser.load(page)
    body = re.search(r"<body[^>]*>", loaded.dom)
    assert body is not None
    assert "data-pwned" not in body.group(0) and "data-render-error" not in body.group(0)
    assert loaded.console == []
    charts = re.search(r'data-charts="(\d+)"', body.group(0))
    assert charts and f'data-rendered="{charts.group(1)}"' in body.group(0) and int(charts.group(1)) >= 8
    # Shown as text: in the tables and in Plotly's tick labels (SVG text), never as elements.
    assert loaded.dom.count("&lt;img src=x onerror=") >= 2
    assert "alice@example.com" in loaded.dom
    assert not re.search(r"<(img|a)\b[^>]*(onerror|javascript:)", loaded.dom)
