"""``auditlake report``'s data and page (auditlake.report) on a lake built as the demo builds one, times
relative to now: the numbers agree with the named queries and with each other, Athena's text answers
take the same shape, coverage gaps are found, the page declares and holds one div per chart, and the
CLI's errors are one line. The browser test is tests/integration/test_report_browser.py."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from auditlake.cli.report import report
from auditlake.demo import synth
from auditlake.local_lake import LocalLake
from auditlake.query import named
from auditlake.report import queries
from auditlake.report.data import ArchiveState, ReportData, gather, hours_without_data
from auditlake.report.page import render
from auditlake.trust.digest import verify
from tests import report_lake

NOW = datetime.now(UTC)
SINCE, UNTIL = NOW - timedelta(hours=1), NOW


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> LocalLake:
    return report_lake.build(tmp_path_factory.mktemp("lake"), now=NOW)


@pytest.fixture(scope="module")
def engine(lake: LocalLake) -> named.LocalEngine:
    return named.LocalEngine(lake.archive_dir, lake.root, now=NOW)


@pytest.fixture(scope="module")
def data(lake: LocalLake, engine: named.LocalEngine) -> ReportData:
    from auditlake.query import findings as found

    def findings(since: str, until: str) -> list[dict[str, Any]]:
        result, _ = found.local_findings(engine, lake.store(), found.FindingsFilter(since, until))
        return list(found.rows(result))

    state = ArchiveState.from_verify(verify(lake.archives(), lake.signer(create=False), now=datetime.now(UTC)))
    return gather(engine, source="lake test", since=SINCE, until=UNTIL, now=NOW, findings=findings, archive=state)


def _scalar(engine: named.LocalEngine, sql: str) -> Any:
    return engine.run(sql).rows[0][0]


def test_every_report_query_declares_its_placeholders() -> None:
    assert set(queries.names()) == {
        "activity",
        "denials_per_minute",
        "top_identities",
        "top_objects",
        "top_resources",
        "top_verbs",
    }
    for name in queries.names():
        query = queries.load(name)
        assert query.description and len(query.placeholders) == named.placeholder_count(query.sql)
    with pytest.raises(named.QueryError, match="no report query"):
        queries.load("nope")


def test_activity_counts_each_request_once(data: ReportData, engine: named.LocalEngine) -> None:
    requests = _scalar(engine, "SELECT count(DISTINCT audit_id) FROM audit_live")
    denied = _scalar(engine, "SELECT count(DISTINCT audit_id) FROM audit_live WHERE response_code = 403")
    assert requests > 1000 and denied > 0
    assert sum(r["requests"] for r in data.activity) == requests
    assert sum(r["denied"] for r in data.activity) == denied
    assert sum(r["denied"] for r in data.denials) == denied
    assert data.bucket == "minute" and {r["cluster"] for r in data.activity} == {report_lake.CLUSTER}


def test_bursts_are_the_named_querys_answer_and_get_a_timeline(data: ReportData, engine: named.LocalEngine) -> None:
    query = named.load("forbidden_bursts")
    window = {"since": SINCE.isoformat(), "until": UNTIL.isoformat()}
    direct = engine.run(query.sql, query.bind(window, NOW))
    assert [b["identity"] for b in data.bursts] == [row[1] for row in direct.rows] == [synth.INCIDENT_DENIED]
    timelines = {t.label: t for t in data.identity_timelines}
    assert synth.INCIDENT_DENIED in timelines  # not among the top 10 by requests, drawn for its burst
    assert {r["response_code"] for r in timelines[synth.INCIDENT_DENIED].rows} == {403}


def test_top_rankings_agree_with_the_timelines(data: ReportData) -> None:
    assert [r["place"] for r in data.top_identities] == list(range(1, 11))
    counts = [r["requests"] for r in data.top_identities]
    assert counts == sorted(counts, reverse=True)
    for row, timeline in zip(data.top_identities, data.identity_timelines, strict=False):
        assert timeline.label == row["identity"] and timeline.total == row["requests"]
    for row, timeline in zip(data.top_objects, data.object_timelines, strict=True):
        audit = [r for r in timeline.rows if r["source"] == "audit"]
        assert len(audit) == row["changes"]
    assert data.top_verbs and data.top_resources


def test_findings_and_archive_state(data: ReportData) -> None:
    assert data.findings is not None and len(data.findings) == len(report_lake.shifted_findings(NOW))
    assert data.archive is not None
    assert data.archive.digests == 1 and data.archive.sealed_files > 0
    assert data.archive.unsealed == [] and data.archive.problems == [] and data.archive.sealed_until


def test_hours_without_data_are_runs_of_empty_whole_hours() -> None:
    hour = datetime(2026, 3, 1, 10, tzinfo=UTC)
    rows = [{"cluster": "a", "bucket_start": hour + timedelta(hours=h)} for h in (0, 1, 4)]
    rows += [{"cluster": "b", "bucket_start": hour + timedelta(hours=3)}]
    end = hour + timedelta(hours=6, minutes=30)  # hour 6 is still running: not a gap
    gaps = hours_without_data(rows, hour, end)
    assert [(g["cluster"], g["start"].hour, g["end"].hour, g["hours"]) for g in gaps] == [
        ("a", 12, 14, 2),
        ("a", 15, 16, 1),
        ("b", 14, 16, 2),
    ]
    assert hours_without_data(rows, hour, hour + timedelta(hours=2)) == []


class AthenaShaped:
    """An engine answering as Athena does: every cell text, times as 'YYYY-MM-DD HH:MM:SS.fff'."""

    def __init__(self, inner: named.LocalEngine) -> None:
        self.inner = inner

    def run(self, sql: str, values: Any = ()) -> named.Result:
        result = self.inner.run(sql, values)
        text = [
            tuple(
                None if v is None else v.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] if isinstance(v, datetime) else str(v)
                for v in row
            )
            for row in result.rows
        ]
        return named.Result(result.columns, text)


def test_athena_text_answers_take_the_same_shape(data: ReportData, engine: named.LocalEngine) -> None:
    athena = gather(AthenaShaped(engine), source="stack test", since=SINCE, until=UNTIL, now=NOW)
    assert athena.activity == data.activity
    assert athena.top_identities == data.top_identities
    assert [b["identity"] for b in athena.bursts] == [b["identity"] for b in data.bursts]
    assert athena.hours_without_data == data.hours_without_data


def test_a_name_that_looks_like_a_number_stays_text() -> None:
    class Fixed:
        def run(self, sql: str, values: Any = ()) -> named.Result:
            if "AS identity, count(DISTINCT audit_id) AS requests" in sql:
                return named.Result(
                    ["place", "identity", "requests", "denied", "clusters", "first_seen", "last_seen"],
                    [("1", "007", "12", "0", "1", "2026-03-01 10:00:00.000", "2026-03-01 10:05:00.000")],
                )
            return named.Result([], [])

    since = datetime(2026, 3, 1, 9, tzinfo=UTC)
    got = gather(Fixed(), source="x", since=since, until=since + timedelta(hours=2), now=since + timedelta(hours=3))
    assert got.top_identities[0]["identity"] == "007" and got.top_identities[0]["requests"] == 12
    assert got.top_identities[0]["first_seen"] == datetime(2026, 3, 1, 10, tzinfo=UTC)
    assert [t.label for t in got.identity_timelines] == ["007"]


def test_the_page_holds_every_chart_it_declares(data: ReportData) -> None:
    page = render(data)
    declared = int(re.search(r'<body data-charts="(\d+)"', page).group(1))  # type: ignore[union-attr]
    charts = re.findall(r'<div class="chart" id="chart-([a-z-]+)" data-chart="\1">', page)
    assert declared == len(charts) == 10
    assert set(charts) == {"activity", "denials", "identities", "objects", "top-identities", "top-verbs",
                           "top-resources", "findings", "coverage", "archive"}  # fmt: skip
    assert page.count("<script") == 3  # Plotly's bundle, the figures (JSON), the drawing
    assert 'http-equiv="Content-Security-Policy"' in page and "default-src 'none'" in page
    own = re.sub(r"<script>.*?</script>", "", page, count=1, flags=re.DOTALL)  # all but Plotly's bundle
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", own)  # the page itself links nothing


def test_an_empty_window_says_so(engine: named.LocalEngine) -> None:
    since = NOW - timedelta(days=30)
    empty = gather(engine, source="lake test", since=since, until=since + timedelta(days=1), now=NOW)
    page = render(empty)
    assert "No audit records in this window." in page and "No request was denied in this window." in page
    assert '<body data-charts="0">' in page  # no empty chart drawn; findings and archive were not asked
    assert "could not be read" in page and "were not read" in page


def test_gather_refuses_a_reversed_window(engine: named.LocalEngine) -> None:
    with pytest.raises(named.QueryError, match="must be before"):
        gather(engine, source="x", since=UNTIL, until=SINCE, now=NOW)


def test_cli_writes_the_page_and_says_where(lake: LocalLake, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = CliRunner(mix_stderr=False).invoke(
        report, ["--lake", str(lake.root), "--since", "1h", "--top", "3", "--out", str(out)]
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == f"report written to {out} (open file://{out.resolve()})"
    assert "1 bursts, 5 findings" in result.stderr
    assert out.read_text(encoding="utf-8").count('class="chart"') == 10


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--lake", "{tmp}/typo"], 1, "error: no lake at {tmp}/typo (create one with auditlake"),
        (["--lake", "{lake}", "--since", "1h", "--until", "2h"], 2, "is not before"),
        (["--lake", "{lake}", "--since", "yesterday"], 2, "Invalid value for --since/--until"),
        (["--lake", "{lake}", "--stack", "s"], 2, "give exactly one of --lake DIR, --stack NAME"),
    ],
)  # fmt: skip
def test_cli_errors_are_one_line(lake: LocalLake, tmp_path: Path, args: list[str], code: int, message: str) -> None:
    fill = {"tmp": str(tmp_path), "lake": str(lake.root)}
    argv = [a.format(**fill) for a in args] + ["--out", str(tmp_path / "r.html")]
    result = CliRunner(mix_stderr=False).invoke(report, argv)
    assert result.exit_code == code
    assert message.format(**fill) in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "r.html").exists() and not (tmp_path / "typo").exists()


def test_cli_on_an_empty_window_names_what_the_lake_holds(lake: LocalLake, tmp_path: Path) -> None:
    out = tmp_path / "old.html"
    result = CliRunner(mix_stderr=False).invoke(
        report, ["--lake", str(lake.root), "--since", "30d", "--until", "29d", "--out", str(out)]
    )
    assert result.exit_code == 0, result.stderr
    day = sorted(p.name.removeprefix("dt=") for p in (lake.archive_dir / "audit").glob("dt=*"))
    assert day, "the test lake is compacted"
    assert f"; this lake holds audit {day[0]}..{day[-1]} (use --since {day[0]} --until {day[-1]}T23:59:59)" in (
        " ".join(result.stderr.split())
    )
    assert "No audit records in this window." in out.read_text(encoding="utf-8")
