"""The invocation event API Gateway's HTTP API (payload format 2.0) hands the webhook function, built
and measured as Lambda counts it.

Lambda refuses a synchronous invocation whose request (the whole event, serialised as JSON) is
``LAMBDA_MAX_REQUEST_BYTES`` or more; API Gateway then answers 500 itself and the function never
runs. The body is only part of that event: it travels as a JSON string (each ``"`` and ``\\``
escaped, so a valid JSON body grows by up to 2x) or, when API Gateway treats the content type as
binary, base64 (4/3), next to the headers and ``requestContext``. ``http_api_event`` builds the
event a kube-apiserver POST becomes (its headers, the ones API Gateway adds, the request context);
``invocation_bytes`` measures it. The webhook's size limits are derived from these, here, and the
tests check them with this builder.
"""

from __future__ import annotations

import base64
import json
from typing import Any

# Lambda: "Request must be smaller than 6291456 bytes for the InvokeFunction operation" (6 MiB).
LAMBDA_MAX_REQUEST_BYTES = 6_291_456
# HTTP API quota: request line and header values together at most 10,240 bytes (not adjustable).
HTTP_API_MAX_HEADER_BYTES = 10_240

# The webhook's size limits: the one place for these numbers (http_api_event builds and measures the
# envelope they are derived from).
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

ROUTE = "POST /v1/audit"
PATH = "/v1/audit"
# What kube-apiserver's audit webhook client (client-go's REST client) sends besides the token.
KUBE_APISERVER_HEADERS = {
    "accept": "application/json, */*",
    "accept-encoding": "gzip",
    "content-type": "application/json",
    "user-agent": "kube-apiserver/v1.31.2 (linux/amd64) kubernetes/5864a46",
}


def http_api_event(
    body: bytes,
    *,
    token: str = "alk_" + "x" * 43,
    base64_encoded: bool = False,
    headers: dict[str, str] | None = None,
    api_id: str = "abc123defg",
    region: str = "eu-west-1",
) -> dict[str, Any]:
    """The payload 2.0 event for a POST of ``body`` to the webhook route: the body as text (it must be
    UTF-8, as kube-apiserver's JSON is) or, with ``base64_encoded``, as API Gateway encodes a body it
    treats as binary. ``headers`` replace kube-apiserver's own set (the token is added to either)."""
    domain = f"{api_id}.execute-api.{region}.amazonaws.com"
    sent = dict(KUBE_APISERVER_HEADERS if headers is None else headers)
    user_agent = sent.get("user-agent", "")
    return {
        "version": "2.0",
        "routeKey": ROUTE,
        "rawPath": PATH,
        "rawQueryString": "",
        "headers": {
            **sent,
            "authorization": f"Bearer {token}",
            "content-length": str(len(body)),
            "host": domain,
            "x-amzn-trace-id": "Root=1-6740a3e8-4c1f3b2a9d8e7f6a5b4c3d2e",
            "x-forwarded-for": "203.0.113.250",
            "x-forwarded-port": "443",
            "x-forwarded-proto": "https",
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": api_id,
            "domainName": domain,
            "domainPrefix": api_id,
            "http": {
                "method": "POST",
                "path": PATH,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.250",
                "userAgent": user_agent,
            },
            "requestId": "CWm3qg1ToAMEbXw=",
            "routeKey": ROUTE,
            "stage": "$default",
            "time": "30/Nov/2026:12:00:00 +0000",
            "timeEpoch": 1796040000000,
        },
        "body": base64.b64encode(body).decode("ascii") if base64_encoded else body.decode("utf-8"),
        "isBase64Encoded": base64_encoded,
    }


def invocation_bytes(event: dict[str, Any], *, ascii_only: bool = False) -> int:
    """The size of the invocation request Lambda checks: the event as compact JSON, non-ASCII as
    UTF-8 (or, with ``ascii_only``, as six-byte ``\\u00e9``-style escapes: the pessimistic reading of how API
    Gateway serialises, up to 3x for a 2-byte character)."""
    return len(json.dumps(event, separators=(",", ":"), ensure_ascii=ascii_only).encode("utf-8"))


def fits_lambda(event: dict[str, Any], *, ascii_only: bool = False) -> bool:
    """Whether Lambda accepts the invocation (smaller than the limit), so the function runs."""
    return invocation_bytes(event, ascii_only=ascii_only) < LAMBDA_MAX_REQUEST_BYTES
