"""Every hostile input of the attack corpus, delivered as a user's input arrives: no canary in any
stored byte, output or log line; the good neighbours archived; the bad item quarantined."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.attacks.corpus import Case, cases, leaks
from tests.attacks.delivery import deliver, log_text

CASES = cases()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_attack_input(case: Case, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    lake = tmp_path / "lake"
    outcome = deliver(case, lake, tmp_path)
    expect = case.expect
    if "status" in expect:
        assert outcome.status == expect["status"], outcome.text
    archived = outcome.archived_ids()
    if "archived" in expect:
        assert len(archived) == expect["archived"], (archived, outcome.text)
    for audit_id in expect.get("archived_ids", []):
        assert audit_id in archived, (audit_id, archived, outcome.text)
    if "quarantined" in expect:
        assert outcome.quarantined() == expect["quarantined"], outcome.text
    assert leaks(case, tmp_path / "lake", outcome.text + log_text(caplog.records)) == []


def test_every_case_names_its_issue_and_path() -> None:
    assert CASES, "the attack corpus is empty"
    for case in CASES:
        assert case.issue.startswith("11."), case.name
        assert case.via in {"webhook", "jsonl", "eventlist", "cloudwatch", "events", "compact"}, case.name
        assert case.what and case.expect, case.name
