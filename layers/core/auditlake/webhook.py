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
from typing import Any

from .alerts import AlertError, Watch
from .jsonio import dumps_str
from .landing import Landing, batch_id
from .metrics import MetricsSink, NoMetrics, batch_counts, emit_counts
from .parse import EnvelopeError
from .pipeline import AuditPipeline, refused_items
from .registry import RegistryError, TokenRegistry, bearer_token, token_hash
from .stores import StoreError
from .timestamps import format_utc

logger = logging.getLogger(__name__)

# Lambda's synchronous payload limit is 6 MB including the event envelope.
MAX_BODY_BYTES = 6_000_000
# What `auditlake cluster add` configures: safely under MAX_BODY_BYTES.
TRUNCATE_MAX_BATCH_BYTES = 4 * 1024 * 1024
TRUNCATE_FLAGS = (
    f"--audit-webhook-truncate-enabled=true --audit-webhook-truncate-max-batch-size={TRUNCATE_MAX_BATCH_BYTES}"
)


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
        raw = base64.b64decode(text) if base64_encoded else text.encode("utf-8", "surrogatepass")
        return self.handle(authorization, raw).http_api()

    def handle(self, authorization: str | None, body: bytes) -> Reply:
        if len(body) > self.max_body_bytes:
            return self.handle_oversize(authorization, len(body))
        cluster = self._authorise(authorization)
        if isinstance(cluster, Reply):
            return cluster
        self.metrics.add_metric("BatchBytes", "Bytes", len(body))
        at = self.clock()
        batch = batch_id(cluster, self.source, body)
        try:
            return self._ingest(cluster, body, at, batch)
        except StoreError:
            logger.exception("storage failed", extra={"cluster": cluster, "batch": batch})
            self.metrics.add_metric("StorageFailures", "Count", 1)
            return Reply(503, {"message": "storage unavailable, retry"})
        except AlertError:
            # Stored, but a 403 burst could not be paged: the retry rewrites the same object and,
            # counting by audit ID, pages once.
            logger.exception("alerting failed", extra={"cluster": cluster, "batch": batch})
            self.metrics.add_metric("AlertFailures", "Count", 1)
            return Reply(503, {"message": "alerting unavailable, retry"})
        except Exception:
            logger.exception("unexpected error", extra={"cluster": cluster, "batch": batch})
            self.metrics.add_metric("InternalErrors", "Count", 1)
            try:
                self.landing.quarantine(cluster, at, batch, source=self.source, reason="internal error", payload=body)
            except Exception:
                logger.exception("quarantine failed too", extra={"cluster": cluster, "batch": batch})
            return Reply(500, {"message": "internal error"})

    def _ingest(self, cluster: str, body: bytes, at: datetime, batch: str) -> Reply:
        try:
            result = self.pipeline.eventlist(body, cluster=cluster, source=self.source, ingested_at=format_utc(at))
        except EnvelopeError as exc:
            # Kept byte for byte only when it is not JSON at all; what parses is kept redacted.
            refused = refused_items(body, exc, self.pipeline.config().redaction)
            self.landing.quarantine(
                cluster, at, batch, source=self.source, reason=exc.reason, payload=body, failures=refused or ()
            )
            self.metrics.add_metric("BatchesRejected", "Count", 1)
            logger.warning("not an EventList", extra={"cluster": cluster, "batch": batch, "reason": exc.reason})
            return Reply(400, {"message": exc.reason, "batch": batch, "quarantined": True})
        raw_key = self.landing.write_raw(cluster, at, batch, result.lines)
        if result.failures:
            self.landing.quarantine(
                cluster,
                at,
                batch,
                source=self.source,
                reason=f"{len(result.failures)} of {result.items} items could not be normalised",
                payload=body,
                failures=result.failures,
            )
        self.watch.stored(cluster, result.denials, self.metrics)
        counts = batch_counts(result)
        emit_counts(self.metrics, counts)
        logger.info("batch stored", extra={"cluster": cluster, "batch": batch, "raw_key": raw_key, **counts})
        return Reply(200, {"batch": batch, **counts})
