"""``auditlake report`` in a real browser: headless Chromium (Debian's ``chromium``, tests/browser.py)
opens the page the CLI wrote for a lake built as the demo builds one (synthetic traffic with its
incidents, Events, findings, compacted and sealed; times relative to now), from file:// with the
network cut. Every chart the page declares is drawn (Plotly's own ``js-plotly-plot`` nodes, each with
its SVG), nothing is written to the console (no error, no CSP refusal), and a screenshot is not blank.
In tests/integration because Chromium is a subprocess that may open sockets of its own."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from auditlake.cli.report import report
from tests import browser, report_lake

NOW = datetime.now(UTC)
CHARTS = ("activity", "denials", "identities", "objects", "top-identities", "top-verbs", "top-resources", "findings",
          "coverage", "archive")  # fmt: skip


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lake")
    report_lake.build(root, now=NOW)
    out = root / "report.html"
    result = CliRunner(mix_stderr=False).invoke(report, ["--lake", str(root), "--since", "1h", "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    return out


def test_every_chart_renders_without_a_console_message(page: Path) -> None:
    loaded = browser.load(page)
    assert loaded.console == []
    body = re.search(r"<body[^>]*>", loaded.dom)
    assert body is not None and f'data-charts="{len(CHARTS)}"' in body.group(0)
    assert f'data-rendered="{len(CHARTS)}"' in body.group(0), body.group(0)
    drawn = re.findall(r'<div class="chart js-plotly-plot" id="chart-([a-z-]+)" data-chart="\1"', loaded.dom)
    assert sorted(drawn) == sorted(CHARTS)
    # Each drawn chart holds Plotly's SVG with its data: markers, bars, lines or heatmap cells.
    assert loaded.dom.count('class="main-svg"') >= len(CHARTS)
    assert len(re.findall(r'class="(point|trace bars|scatterlayer|hm)', loaded.dom)) >= len(CHARTS)


def test_a_screenshot_is_not_blank(page: Path, tmp_path: Path) -> None:
    shot = browser.screenshot(page, tmp_path / "report.png", width=1200, height=2400)
    image = browser.read_png(shot)
    colours, variance = browser.colour_stats(image)
    assert (image.width, image.height) == (1200, 2400)
    # A blank page is one colour; an unstyled or chartless one a few dozen (text antialiasing).
    assert colours > 300 and variance > 1000, (colours, variance)
    # The header band is the page's dark blue, the charts below it on white sections.
    assert sum(image.pixel(5, 5)) < 150 and sum(image.pixel(600, 600)) > 600
