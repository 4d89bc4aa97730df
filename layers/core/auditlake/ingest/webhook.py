"""What the audit webhook answers, independent of Lambda or the local server.

kube-apiserver retries a batch on *any* error (5 attempts, 10 s backoff growing 1.5x) and then drops
it, so the answers are chosen for that sender:

* 401 - no or unknown token (no detail why); nothing is stored.
* 413 - body over the limit, with the flags that keep batches under it.
* 400 - not an EventList at all (an envelope that is not JSON or not UTF-8, wrong kind, too deep; a
  second top-level ``items`` key): quarantined, its items one by one, redacted; byte for byte only
  when its items cannot be told apart and it is not JSON.
* 200 - envelope valid: good events stored, bad ones quarantined, counts in the body; an item read
  as Go reads it (a lone surrogate escape, bytes not UTF-8: U+FFFD) is stored; one too deep fails alone.
* 503 - storage or registry failed: nothing acknowledged, the sender retries.
* 500 - an unexpected error; the body is quarantined first when storage allows.

2xx is only sent after every object of the batch is durably stored.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from auditlake.audit.parse import EnvelopeError
from auditlake.audit.pipeline import AuditPipeline, refused_items
from auditlake.clusters.registry import RegistryError, TokenRegistry, bearer_token, token_hash
from auditlake.http_api import MAX_BODY_BYTES, TRUNCATE_FLAGS
from auditlake.ingest.intake import Batch, Failure, failed, land, quarantine
from auditlake.jsonio import dumps_str
from auditlake.landing import Landing, batch_id
from auditlake.metrics import MetricsSink, NoMetrics
from auditlake.timestamps import format_utc
from auditlake.trust.alerts import Watch

logger = logging.getLogger(__name__)

# The body limit (MAX_BODY_BYTES) and the advice (TRUNCATE_FLAGS) are http_api.py's, beside the
# Lambda limits they follow from. What each rung of the failure ladder answers: a 503 makes
# kube-apiserver retry; a 500 comes after the body is quarantined.
_FAILED = {
    Failure.STORAGE: (503, "storage unavailable, retry"),
    Failure.ALERTING: (503, "alerting unavailable, retry"),
    Failure.INTERNAL: (500, "internal error"),
}


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any]

    def http_api(self) -> dict[str, Any]:
        """As an API Gateway HTTP API (payload 2.0) Lambda response."""
        headers = {"Content-Type": "application/json"}
        return {"statusCode": self.status, "headers": headers, "body": dumps_str(self.body)}


class AuditWebhook:
    def __init__(
        self,
        registry: TokenRegistry,
        pipeline: AuditPipeline,
        landing: Landing,
        *,
        source: str = "webhook",
        max_body_bytes: int = MAX_BODY_BYTES,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        metrics: MetricsSink | None = None,
        watch: Watch | None = None,
    ) -> None:
        self.watch = watch or Watch()
        self.registry = registry
        self.pipeline = pipeline
        self.landing = landing
        self.source = source
        self.max_body_bytes = max_body_bytes
        self.clock = clock
        self.metrics = metrics or NoMetrics()

    def _authorise(self, authorization: str | None) -> str | Reply:
        """The cluster the bearer token belongs to, or the reply that refuses the request."""
        token = bearer_token(authorization)
        if token is None:
            self.metrics.add_metric("UnauthorizedRequests", "Count", 1)
            return Reply(401, {"message": "Unauthorized"})
        try:
            cluster = self.registry.cluster_for(token_hash(token))
        except RegistryError:
            logger.exception("token registry unavailable")
            return Reply(503, {"message": "registry unavailable, retry"})
        if cluster is None:
            self.metrics.add_metric("UnauthorizedRequests", "Count", 1)
            return Reply(401, {"message": "Unauthorized"})
        return cluster

    def handle_oversize(self, authorization: str | None, size: int) -> Reply:
        """Answer a request whose declared length is over the limit without reading its body."""
        cluster = self._authorise(authorization)
        if isinstance(cluster, Reply):
            return cluster
        self.metrics.add_metric("RequestsTooLarge", "Count", 1)
        logger.warning("batch too large", extra={"cluster": cluster, "bytes": size})
        return Reply(
            413,
            {
                "message": f"batch of {size} bytes exceeds the {self.max_body_bytes}-byte limit",
                "fix": f"run kube-apiserver with {TRUNCATE_FLAGS}",
            },
        )

    def handle_http_api(self, authorization: str | None, body: str | None, *, base64_encoded: bool) -> dict[str, Any]:
        """A request as API Gateway hands it over: the body base64-encoded or as text (bytes that are not
        UTF-8 kept as surrogates, so they still reach the 400 for not being UTF-8)."""
        text = body or ""
        if base64_encoded:
            # The limit is on the bytes sent, not on their base64 (4/3 larger): known before decoding.
            size = len(text) * 3 // 4 - (len(text) - len(text.rstrip("=")))
            if size > self.max_body_bytes:
                return self.handle_oversize(authorization, size).http_api()
        raw = base64.b64decode(text) if base64_encoded else text.encode("utf-8", "surrogatepass")
        return self.handle(authorization, raw).http_api()

    def handle(self, authorization: str | None, body: bytes) -> Reply:
        if len(body) > self.max_body_bytes:
            return self.handle_oversize(authorization, len(body))
        cluster = self._authorise(authorization)
        if isinstance(cluster, Reply):
            return cluster
        self.metrics.add_metric("BatchBytes", "Bytes", len(body))
        batch = Batch(cluster, self.clock(), batch_id(cluster, self.source, body), self.source, payload=body)
        try:
            return self._ingest(batch, body)
        except Exception as exc:
            keep = partial(quarantine, self.landing, batch)
            status, message = _FAILED[failed(exc, self.metrics, keep, cluster=cluster, batch=batch.id)]
            return Reply(status, {"message": message})

    def _ingest(self, batch: Batch, body: bytes) -> Reply:
        cluster, at = batch.cluster, batch.at
        try:
            result = self.pipeline.eventlist(body, cluster=cluster, source=self.source, ingested_at=format_utc(at))
        except EnvelopeError as exc:
            # Kept byte for byte only when it is not JSON at all; what parses is kept redacted.
            refused = refused_items(body, exc, self.pipeline.config().redaction)
            quarantine(self.landing, batch, exc.reason, refused or ())
            self.metrics.add_metric("BatchesRejected", "Count", 1)
            logger.warning("not an EventList", extra={"cluster": cluster, "batch": batch.id, "reason": exc.reason})
            return Reply(400, {"message": exc.reason, "batch": batch.id, "quarantined": True})
        stats = land(
            self.landing,
            batch,
            result.lines,
            result.failures,
            reason=f"{len(result.failures)} of {result.items} items could not be normalised",
            result=result,
            watch=self.watch,
            metrics=self.metrics,
            logged="batch stored",
        )
        return Reply(200, {"batch": batch.id, **stats.counts()})
