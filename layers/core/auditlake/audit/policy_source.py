"""The pipeline configuration of a running function: a policy that can change without a deploy.

The policy text is fetched on every batch (the fetcher caches, e.g. Powertools parameters with
``max_age``) and compiled only when it changes. A policy that fails to load never stops ingestion:
the last valid one stays in force, or, if there never was one, events are kept as received.
Redaction does not depend on the policy and always applies.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from auditlake.audit.pipeline import PipelineConfig
from auditlake.audit.policy import PolicyError, load_policy
from auditlake.audit.redact import RedactionConfig

logger = logging.getLogger(__name__)


class PolicySource:
    def __init__(self, fetch: Callable[[], str | None], redaction: RedactionConfig) -> None:
        self._fetch = fetch
        self._redaction = redaction
        self._text: str | None = None
        self._config = PipelineConfig(None, redaction)

    def __call__(self) -> PipelineConfig:
        try:
            text = self._fetch()
        except Exception:
            logger.exception("cannot read the pipeline policy; keeping the one in force")
            return self._config
        if text == self._text:
            return self._config
        self._text = text
        if not text or not text.strip():
            self._config = PipelineConfig(None, self._redaction)
            return self._config
        try:
            self._config = PipelineConfig(load_policy(text), self._redaction)
            logger.info("pipeline policy loaded", extra={"rules": len(self._config.policy.rules)})  # type: ignore[union-attr]
        except PolicyError as exc:
            logger.error("pipeline policy rejected; keeping the one in force", extra={"errors": exc.errors})
        return self._config
