"""The deployed functions' rules (ingest.rules.RuleSource): the built-in set plus the custom document,
re-read every max_age seconds; a missing document is no custom rules, a bad one or a failed read
keeps the rules in force and logs one error per problem; ingest never fails for them."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from auditlake.detect.ir import Correlation, Leaf, Rule, RuleSet
from auditlake.detect.matches import Match
from auditlake.ingest.rules import RuleSource
from tests.helpers import ManualClock


def ruleset(*ids: str) -> RuleSet:
    return RuleSet(tuple(Rule(i, i, "low", "audit", Leaf("verb", "glob", ("create",))) for i in ids))


class Compiled:
    """What the compiler double made: the ids it was given; answers with no matches."""

    def __init__(self, rules: RuleSet) -> None:
        self.ids = [rule.id for rule in rules.rules]

    def audit(self, event: Any, cluster: str, ingested_at: str) -> Sequence[Match]:
        return []

    def events(self, event: Mapping[str, Any], cluster: str, observed_at: str) -> Sequence[Match]:
        return []


def load(document: bytes) -> RuleSet:
    if not document.startswith(b"rules:"):
        raise ValueError("not a compiled rule set")
    return ruleset(*document.removeprefix(b"rules:").decode().split(","))


def source(documents: list[Any], clock: ManualClock) -> RuleSource:
    def fetch() -> bytes | None:
        item = documents[0] if len(documents) == 1 else documents.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    return RuleSource(ruleset("builtin-1"), fetch, load=load, max_age=300, compiler=Compiled, monotonic=clock)


def ids(rules: RuleSource) -> list[str]:
    detector = rules.detector
    assert isinstance(detector, Compiled)
    return detector.ids


def test_no_document_means_the_builtin_rules_only() -> None:
    rules = source([None], ManualClock())
    assert ids(rules) == ["builtin-1"] and rules.rules == 1


def test_custom_rules_are_added_and_re_read_only_after_max_age() -> None:
    clock = ManualClock()
    rules = source([b"rules:a", b"rules:a,b"], clock)
    assert ids(rules) == ["builtin-1", "a"]
    clock.now = 299
    rules.audit(object(), "prod", "t")
    assert ids(rules) == ["builtin-1", "a"]  # not re-read yet
    clock.now = 300
    rules.audit(object(), "prod", "t")
    assert ids(rules) == ["builtin-1", "a", "b"] and rules.rules == 3


def test_the_correlations_in_force_are_the_builtin_and_the_custom_ones() -> None:
    def burst(name: str) -> Correlation:
        return Correlation(name, name, "high", "event_count", ("base",), ("user.username",), 60, ("gte", 10))

    def load_with_correlation(document: bytes) -> RuleSet:
        return RuleSet((), (burst("custom"),)) if document else RuleSet()

    rules = RuleSource(
        RuleSet((), (burst("forbidden"),)), lambda: b"x", load=load_with_correlation, max_age=300, compiler=Compiled
    )
    assert [c.id for c in rules.correlations()] == ["forbidden", "custom"]


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """caplog on the rules' own logger: a Lambda adapter imported earlier in the session (Powertools)
    may have stopped ``auditlake`` loggers propagating to the root, where caplog listens."""
    log = logging.getLogger("auditlake")
    before, log.propagate = log.propagate, True
    yield caplog
    log.propagate = before


def test_a_document_the_compiler_refuses_keeps_the_rules_in_force() -> None:
    """A hand-written custom.json (not pushed, so not linted) whose rule cannot compile: any error,
    not only ValueError (RE2's is not), keeps the rules in force instead of failing ingest."""
    import re2

    class Refusing(Compiled):
        def __init__(self, rules: RuleSet) -> None:
            if "bad" in [rule.id for rule in rules.rules]:
                raise re2.error("missing )")
            super().__init__(rules)

    clock = ManualClock()
    documents: list[Any] = [b"rules:a", b"rules:bad"]

    def fetch() -> bytes | None:
        return documents.pop(0) if len(documents) > 1 else documents[0]

    rules = RuleSource(ruleset("builtin-1"), fetch, load=load, max_age=300, compiler=Refusing, monotonic=clock)
    clock.now = 300
    rules.audit(object(), "prod", "t")
    assert ids(rules) == ["builtin-1", "a"]


def test_a_bad_document_keeps_the_last_good_rules_and_logs_once(logged: pytest.LogCaptureFixture) -> None:
    caplog = logged
    clock = ManualClock()
    rules = source([b"rules:a", b"garbage", b"garbage", b"garbage"], clock)
    with caplog.at_level(logging.ERROR, logger="auditlake.ingest.rules"):
        for step in (1, 2, 3):
            clock.now = 300 * step
            rules.events({}, "prod", "t")
    assert ids(rules) == ["builtin-1", "a"]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == [
        "custom rules rejected, the rules in force stay: not a compiled rule set"
    ]


def test_a_failed_read_keeps_the_rules_and_a_later_good_read_replaces_them(logged: pytest.LogCaptureFixture) -> None:
    caplog = logged
    clock = ManualClock()
    rules = source([b"rules:a", RuntimeError("AccessDenied"), RuntimeError("AccessDenied"), None], clock)
    with caplog.at_level(logging.ERROR, logger="auditlake.ingest.rules"):
        for step in (1, 2):
            clock.now = 300 * step
            assert rules.audit(object(), "prod", "t") == []
    assert ids(rules) == ["builtin-1", "a"] and len([r for r in caplog.records if r.levelno >= logging.ERROR]) == 1
    clock.now = 900
    rules.audit(object(), "prod", "t")
    assert ids(rules) == ["builtin-1"]  # the document was removed: no custom rules


def test_a_function_cold_start_loads_the_compiled_rules_without_pysigma(tmp_path: Path) -> None:
    """What the Lambda runs at init (assembly.rules_from_settings) with the layer's builtin.json in
    place: the built-in rules in force, a missing custom document read as none, and pySigma never
    imported (the layer does not carry it)."""
    from auditlake.detect.rulesets import compile_builtin

    compiled = tmp_path / "builtin.json"
    loaded = compile_builtin(compiled)
    probe = f"""
import sys
from botocore.exceptions import ClientError
from auditlake.detect import rulesets
rulesets.COMPILED_BUILTIN = rulesets.Path({str(compiled)!r})
from auditlake.assembly import rules_from_settings
from auditlake.settings import Settings

class S3:
    def get_object(self, Bucket, Key):
        assert (Bucket, Key) == ("raw", "rules/custom.json")
        raise ClientError({{"Error": {{"Code": "NoSuchKey"}}}}, "GetObject")

rules = rules_from_settings(Settings.from_env({{"AUDITLAKE_RAW_BUCKET": "raw"}}), S3())
print(rules.rules, sorted(m for m in sys.modules if m == "sigma" or m.startswith("sigma.")))
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert out == [str(loaded), "[]"]
