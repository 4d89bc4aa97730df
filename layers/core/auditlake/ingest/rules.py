"""The detection rules of a running function: the built-in set plus custom rules that change without
a deploy.

A deployed stack's custom rules are one compiled document (``auditlake rules push`` writes it to
``<raw bucket>/<landing.RULES_PREFIX>custom.json``). ``RuleSource`` is the ingest paths' Detector:
it holds the engine compiled from the built-in rules and the custom document, and re-reads the
document at most every ``max_age`` seconds (``settings.rules_cache_seconds``), the way the pipeline
policy is refreshed from SSM (``audit/policy_source.py``). The engine is compiled again only when
the document's bytes change. Reading or loading the document never stops ingestion:

* no document (``fetch`` returns None): the built-in rules only;
* a document that does not load (``load`` raises ValueError), or a read that fails: the last rules
  that loaded stay in force, and one error is logged per distinct problem (not per refresh).

Checking the age costs one monotonic clock read per event; the document is read only on a refresh.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from auditlake.detect.ir import Correlation, RuleSet
from auditlake.detect.matches import Detector, Match

logger = logging.getLogger(__name__)

CUSTOM_RULES = "custom.json"  # under landing.RULES_PREFIX in the raw bucket


def default_compile(rules: RuleSet) -> Detector:
    from auditlake.detect.engine import RuleEngine  # the engine's compile step: once per rule change

    return RuleEngine(rules)


class RuleSource:
    def __init__(
        self,
        builtin: RuleSet,
        fetch: Callable[[], bytes | None],
        *,
        load: Callable[[bytes], RuleSet],
        max_age: float,
        compiler: Callable[[RuleSet], Detector] = default_compile,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._builtin, self._fetch, self._load, self._compile = builtin, fetch, load, compiler
        self._max_age, self._monotonic = max_age, monotonic
        self._document: bytes | None = None  # the custom document in force
        self._problem: str | None = None  # the last problem logged
        self.custom = RuleSet()
        self.detector = compiler(builtin)
        self._refresh()

    @property
    def rules(self) -> int:
        """How many rules (and correlations) are in force."""
        return (
            len(self._builtin.rules)
            + len(self._builtin.correlations)
            + len(self.custom.rules)
            + len(self.custom.correlations)
        )

    def correlations(self) -> Sequence[Correlation]:
        """The correlation rules in force (built-in and custom), for the post-store Watch's counting."""
        return self._builtin.correlations + self.custom.correlations

    def _refresh(self) -> None:
        self._read_at = self._monotonic()
        try:
            document = self._fetch()
        except Exception as exc:  # never fail ingest: the rules in force stay
            self._report(f"cannot read the custom rules: {exc}")
            return
        if document == self._document:
            return
        try:
            custom = self._load(document) if document is not None else RuleSet()
            detector = self._compile(self._builtin + custom)
        except Exception as exc:  # a hand-written document (an RE2 error is no ValueError): never fail ingest
            self._report(f"custom rules rejected, the rules in force stay: {exc}")
            return
        self._document, self.custom, self.detector, self._problem = document, custom, detector, None
        logger.info("detection rules loaded", extra={"custom_rules": len(custom.rules), "rules": self.rules})

    def _report(self, problem: str) -> None:
        if problem != self._problem:
            self._problem = problem
            logger.error(problem)

    def _current(self) -> Detector:
        if self._monotonic() - self._read_at >= self._max_age:
            self._refresh()
        return self.detector

    def audit(self, event: Any, cluster: str, ingested_at: str) -> Sequence[Match]:
        return self._current().audit(event, cluster, ingested_at)

    def events(self, event: Mapping[str, Any], cluster: str, observed_at: str) -> Sequence[Match]:
        return self._current().events(event, cluster, observed_at)
