"""Reads from one cluster's API server: GET and watch, answers kept as raw bytes.

The transport is the official client's REST layer (``kubernetes.client.rest``) and its
``Configuration`` (TLS, client certificates, proxies, bearer token with its refresh hook); the
generated models are never used, because real API servers send Events they reject (``eventTime:
null`` on objects written through core/v1). The poller parses every answer itself.

A 401 makes the credentials re-read (a rotated token) and the request is sent once more.
urllib3 (the client's default ``Retry``) already sends a GET again after a connection failure
before any answer, and after a 429 or 503 with ``Retry-After`` (waiting as told), three times at
most. Every error says whether it is ``transient`` (429, 5xx, a connection reset or read timeout, a
watch stream cut: the same request may well succeed in a moment); TLS failures, 401, 403, 404
and unreadable answers are not.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterator, Mapping
from typing import Any, Protocol
from urllib.parse import urlencode

import urllib3
from kubernetes.client.configuration import Configuration
from kubernetes.client.exceptions import ApiException
from kubernetes.client.rest import RESTClientObject

from auditlake.jsonio import JSONError, loads

logger = logging.getLogger(__name__)
CONNECT_TIMEOUT = 10.0
BEARER = "BearerToken"  # the client's name for the bearer token in Configuration.api_key


TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})  # overload, etcd leader change, proxy trouble


class KubeError(RuntimeError):
    def __init__(self, message: str, status: int = 0, *, transient: bool | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.transient = status in TRANSIENT_STATUSES if transient is None else transient


class Gone(KubeError):
    """410: the resourceVersion asked for is older than the server keeps; list again."""


class NotServed(KubeError):
    """404 on an API path: this API group/version is not served by the cluster."""


class Unauthorized(KubeError):
    """401 even after the credentials were read again."""


class Credentials(Protocol):
    def configuration(self) -> Configuration:
        """Server, TLS settings and the bearer token (``api_key[BEARER]``, refreshed by the
        configuration's ``refresh_api_key_hook`` when stale)."""
        ...

    def invalidate(self) -> None:
        """The server answered 401: read the token (or its source) again before the next request."""
        ...


def _connection_error(what: str, exc: BaseException) -> KubeError:
    """A failure below HTTP: transient (reset, refused, timed out, cut), except TLS, which a retry
    does not mend (a wrong CA, a man in the middle)."""
    reason = getattr(exc, "reason", None)
    tls = isinstance(exc, ssl.SSLError | urllib3.exceptions.SSLError) or isinstance(
        reason, ssl.SSLError | urllib3.exceptions.SSLError
    )
    return KubeError(f"{what}: {type(exc).__name__}: {exc}", transient=not tls)


def status_error(status: int, body: bytes, what: str) -> KubeError:
    """The error for an answer that is not 2xx, with the API server's own message when it sent one."""
    message = f"{what}: HTTP {status}"
    try:
        doc = loads(body)
        if isinstance(doc, dict) and isinstance(doc.get("message"), str):
            message += f" ({doc['message'][:300]})"
    except JSONError:
        pass
    kind = {410: Gone, 404: NotServed, 401: Unauthorized}.get(status, KubeError)
    return kind(message, status)


class KubeApi:
    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials
        self._configuration: Configuration | None = None
        self._rest: RESTClientObject | None = None

    @property
    def server(self) -> str:
        return str(self.credentials.configuration().host)

    @property
    def verifies_tls(self) -> bool:
        return bool(self.credentials.configuration().verify_ssl)

    def _client(self) -> tuple[Configuration, RESTClientObject]:
        configuration = self.credentials.configuration()
        if configuration is not self._configuration or self._rest is None:
            self._configuration, self._rest = configuration, RESTClientObject(configuration)
        return configuration, self._rest

    def _open(self, path: str, query: Mapping[str, Any], read_timeout: float) -> Any:
        """The urllib3 response of a 2xx answer, unread; one retry after a 401."""
        for attempt in (1, 2):
            configuration, rest = self._client()
            headers = {"Accept": "application/json"}
            # As the client's ApiClient does: this runs the configuration's token refresh hook.
            token = configuration.get_api_key_with_prefix(BEARER, alias="authorization")
            if token:
                headers["Authorization"] = token
            url = f"{str(configuration.host).rstrip('/')}{path}"
            if query:
                url += "?" + urlencode(query)
            try:
                response = rest.request("GET", url, headers=headers, _request_timeout=(CONNECT_TIMEOUT, read_timeout))
            except ApiException as exc:  # TLS failures come back as status 0
                raise KubeError(f"GET {path}: {exc.reason}", transient=False) from None
            except urllib3.exceptions.HTTPError as exc:
                raise _connection_error(f"GET {path}", exc) from None
            raw = response.response
            if 200 <= raw.status < 300:
                return raw
            body = raw.read()
            raw.release_conn()
            if raw.status == 401 and attempt == 1:
                logger.info("401 from the API server: reading the credentials again")
                self.credentials.invalidate()
                continue
            raise status_error(raw.status, body, f"GET {path}")
        raise AssertionError("unreachable")

    def get(self, path: str, query: Mapping[str, Any] | None = None, *, timeout: float = 60.0) -> bytes:
        raw = self._open(path, query or {}, timeout)
        try:
            return bytes(raw.read())
        except urllib3.exceptions.HTTPError as exc:
            raise _connection_error(f"GET {path}", exc) from None
        finally:
            raw.release_conn()

    def stream(self, path: str, query: Mapping[str, Any], *, timeout: float) -> Iterator[bytes]:
        """The lines of a watch, as they arrive, until the server ends it (or ``timeout`` passes
        without a byte)."""
        raw = self._open(path, query, timeout)
        try:
            for chunk in raw:
                line = chunk.strip()
                if line:
                    yield line
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            # A stream cut mid-way (a proxy's idle timeout, an API server going away): transient even
            # when TLS reports it, since the handshake succeeded and the next watch resumes.
            raise KubeError(f"watch {path}: {type(exc).__name__}: {exc}", transient=True) from None
        finally:
            raw.release_conn()
