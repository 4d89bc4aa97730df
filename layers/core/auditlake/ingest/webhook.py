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

from auditlake import http_api
from auditlake.audit.parse import EnvelopeError
from auditlake.audit.pipeline import AuditPipeline, refused_items
from auditlake.clusters.registry import RegistryError, TokenRegistry, bearer_token, token_hash
from auditlake.jsonio import dumps_str
from auditlake.landing import Landing, batch_id
from auditlake.metrics import MetricsSink, NoMetrics, batch_counts, emit_counts
from auditlake.stores import StoreError
from auditlake.timestamps import format_utc
from auditlake.trust.alerts import AlertError, Watch

logger = logging.getLogger(__name__)

# Size limits: the one place for these numbers (http_api.py builds and measures the envelope).
# On AWS the body reaches the function inside API Gateway's payload 2.0 event, as an escaped JSON
# string (each " and \ doubles: up to 2x for a valid JSON body; 10-15% on the corpus as
# kube-apiserver serialises it, ~32% on kubectl-apply writes, whose requests carry themselves again
# as an escaped annotation) or as base64 (4/3) when API Gateway deems the content type binary, next
# to headers and requestContext. Lambda refuses an invocation of LAMBDA_MAX_REQUEST_BYTES or more:
# API Gateway then answers 500 before the function runs, kube-apiserver retries and drops the batch.
# * ENVELOPE_BUDGET, what surrounds the body: a kube-apiserver request measures ~1,050 bytes; HTTP
#   API caps request line + header values at 10,240 bytes, each may appear three times (headers,
#   requestContext, rawQueryString + queryStringParameters) and escape to 2x: 61,440; 64 KiB in all.
# * MAX_BODY_BYTES (the 413): 2 x 3,000,000 + 65,536 < 6,291,456, so any body up to the limit
#   reaches the function whatever its content, and is taken. A body over it still reaches the
#   function, and gets the 413 with the advice, up to (6,291,456 - 65,536) / 2 = 3,112,960 bytes
#   whatever its content, to ~4.67 MB when it grows by a third or less (base64; kubectl-apply
#   batches), to ~5.5 MB for the corpus' batches. Larger: API Gateway's 500 (its own 413 over 10 MB).
# * The advice: in batch mode kube-apiserver POSTs up to --audit-webhook-batch-max-size events, each
#   at most --audit-webhook-truncate-max-event-size bytes (bigger ones lose their request/response
#   objects, or are dropped). --audit-webhook-truncate-max-batch-size does not bound a POST: the
#   truncating backend sits before the batching one and sees events one at a time. So
#   45 x 65,536 + EVENTLIST_SLACK <= MAX_BODY_BYTES bounds every batch, whatever it escapes to.
LAMBDA_MAX_REQUEST_BYTES = http_api.LAMBDA_MAX_REQUEST_BYTES
ENVELOPE_BUDGET = 64 * 1024
MAX_BODY_BYTES = 3_000_000
BATCH_MAX_EVENTS = 45
TRUNCATE_MAX_EVENT_BYTES = 64 * 1024
EVENTLIST_SLACK = 4096  # {"kind":"EventList",...,"items":[ ]} and a comma per item: ~125 bytes at 45 events
TRUNCATE_MAX_BATCH_BYTES = BATCH_MAX_EVENTS * TRUNCATE_MAX_EVENT_BYTES  # 2,949,120: for blocking mode, and replay
TRUNCATE_FLAGS = (
    f"--audit-webhook-batch-max-size={BATCH_MAX_EVENTS} --audit-webhook-truncate-enabled=true "
    f"--audit-webhook-truncate-max-event-size={TRUNCATE_MAX_EVENT_BYTES} "
    f"--audit-webhook-truncate-max-batch-size={TRUNCATE_MAX_BATCH_BYTES}"
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
