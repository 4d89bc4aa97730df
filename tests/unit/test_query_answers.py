"""The pieces of answers that explain themselves (query/named.py): windows, parameters, what a lake
holds from partition names, engine refusals as one line. Times relative to an injected now."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from auditlake.query import named

NOW = datetime(2026, 11, 30, 6, 24, tzinfo=UTC)


def test_a_reversed_window_is_an_error_an_empty_one_is_not() -> None:
    with pytest.raises(
        named.QueryError, match=r"^since 2026-11-30T05:24:00.000Z is after until 2026-11-30T04:24:00.000Z"
    ):
        named.time_bounds("1h", "2h", NOW)  # durations before now: 1h ago is after 2h ago
    assert named.time_bounds("2h", "2h", NOW) == ("2026-11-30T04:24:00.000Z",) * 2
    assert named.time_bounds(None, None, NOW) == ("2026-11-29T06:24:00.000Z", "2026-11-30T06:24:00.000Z")


def test_an_unknown_parameter_suggests_the_closest_only_when_one_is_close() -> None:
    bursts = named.load("forbidden_bursts")
    with pytest.raises(named.QueryError, match=r"did you mean threshold\? it takes: threshold, since, until, cluster"):
        bursts.bind({"treshold": "5"}, now=NOW)
    with pytest.raises(named.QueryError) as raised:
        bursts.bind({"zzz": "5"}, now=NOW)
    assert str(raised.value) == "forbidden_bursts has no parameter 'zzz' (it takes: threshold, since, until, cluster)"


def test_optional_parameters_default_to_empty_and_bind_as_any() -> None:
    changes = named.load("secret_changes")
    assert changes.params == {"name": "", "namespace": ""} and changes.usage() == "name='', namespace=''"
    bound = dict(zip(changes.placeholders, changes.bind({}, now=NOW), strict=True))
    assert (bound["name"], bound["namespace"]) == ("", "")
    assert named.load("object_history").usage() == "resource, namespace, name"
    assert named.load("forbidden_bursts").usage() == "threshold=10"


def test_descriptions_are_the_leading_comment_only() -> None:
    history = named.load("object_history")  # its SQL has comments of its own (the kinds table)
    assert "built-in kinds" not in history.description and "exec, attach" in history.description


def test_held_days_come_from_partition_names() -> None:
    keys = ["audit/dt=2020-04-21/hour=03/a.parquet", "audit/dt=2017-09-11/hour=00/b.parquet", "audit/other"]
    assert named.held_days(keys) == ("2017-09-11", "2020-04-21")
    assert named.held_days(["audit/dt=2020-04-21/", "audit/dt=2019-01-02/"]) == ("2019-01-02", "2020-04-21")
    assert named.held_days([]) is None


def test_engine_refusals_are_one_line_with_the_fix() -> None:
    duck = 'Binder Error: Referenced column "usr" not found in FROM clause!\nLINE 1: SELECT usr FROM audit\n       ^'
    assert named.sql_error(duck) == (
        'Binder Error: Referenced column "usr" not found in FROM clause! '
        "(see the columns: auditlake query --sql 'DESCRIBE audit', or events, findings)"
    )
    athena = "COLUMN_NOT_FOUND: line 1:8: Column 'usr' cannot be resolved or requester is not authorized"
    assert named.sql_error(athena).endswith("'DESCRIBE audit', or events, findings)")
    assert named.sql_error("Invalid expression / Unexpected token. \x1b[4m1\x1b[0m").endswith(
        "(write it in Athena's dialect, Trino SQL)"
    )
    assert named.sql_error("Query exhausted resources") == "Query exhausted resources"


def test_an_unknown_query_names_the_closest() -> None:
    with pytest.raises(
        named.QueryError, match=r"^no named query 'secret-change' \(did you mean secret_changes\? known: "
    ):
        named.load("secret-change")
    with pytest.raises(named.QueryError, match=r"^no named query '\.\./x' \(known: anonymous_allowed, "):
        named.load("../x")
