"""The invocation event API Gateway's HTTP API (payload format 2.0) hands the webhook function, built
and measured as Lambda counts it.

Lambda refuses a synchronous invocation whose request (the whole event, serialised as JSON) is
``LAMBDA_MAX_REQUEST_BYTES`` or more; API Gateway then answers 500 itself and the function never
runs. The body is only part of that event: it travels as a JSON string (each ``"`` and ``\\``
escaped, so a valid JSON body grows by up to 2x) or, when API Gateway treats the content type as
binary, base64 (4/3), next to the headers and ``requestContext``. ``http_api_event`` builds the
event a kube-apiserver POST becomes (its headers, the ones API Gateway adds, the request context);
``invocation_bytes`` measures it. The webhook's size limits (webhook.py) are derived from these, and
the tests check them with this builder.
"""

from __future__ import annotations

import base64
import json
from typing import Any

# Lambda: "Request must be smaller than 6291456 bytes for the InvokeFunction operation" (6 MiB).
LAMBDA_MAX_REQUEST_BYTES = 6_291_456
# HTTP API quota: request line and header values together at most 10,240 bytes (not adjustable).
HTTP_API_MAX_HEADER_BYTES = 10_240
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
