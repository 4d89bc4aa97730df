"""Fault injection at the AWS boundary: a chosen fraction of botocore attempts fail as AWS fails.

Contract:
- ``AwsFaults.install(session)`` registers two hooks on a (boto3 or botocore) session's event emitter;
  every client created from that session afterwards carries them (botocore copies the session's emitter
  into each new client). ``attach(client)`` does the same for a client created before. ``uninstall()``
  unregisters them and restores botocore's sleep; clients created meanwhile keep inert copies.
- Outside ``step()`` the hooks do nothing and count nothing. Inside ``step(rnd, rate=...)`` every attempt
  (one HTTP request: each botocore retry is an attempt of its own) of every client of the process counts,
  and an attempt to a service in ``services`` (default: all of ``SERVICES``) fails with probability
  ``rate`` with a kind drawn uniformly from ``kinds`` (repeat a kind to weight it):

  ============== ========================================================== =====================
  kind           what the caller sees                                        did the call happen?
  ============== ========================================================== =====================
  500            the service's internal error, status 500, shaped as its      no
                 protocol shapes it (S3 InternalError, DynamoDB
                 InternalServerError, KMS KMSInternalException, Secrets
                 Manager InternalServiceError, SNS/SQS InternalError)
  503            S3 ``SlowDown``, the others ``ServiceUnavailable``: 503      no
  throttle       DynamoDB ProvisionedThroughputExceededException, S3          no
                 SlowDown (503), SNS ``Throttling``, the others
                 ThrottlingException (400)
  reset-before   botocore ConnectionClosedError; nothing was sent             no
  timeout-after  the request IS sent to the real endpoint, its answer         yes (``applied``):
                 discarded, then ReadTimeoutError                             the caller cannot know
  reset-after    the same, then ConnectionClosedError                         yes (``applied``)
  ============== ========================================================== =====================

  Each is what botocore's retry logic (legacy, the default, and standard) retries: the caller's own
  retries run exactly as against AWS, and a call fails only when every attempt failed.
- ``kill_at=k`` (1-based, counting every attempt of the step across all clients and threads): the k-th
  attempt is sent and applied (``kill_applied``, the default) or not sent, then ``Killed`` is raised; the
  process is dead from then on: every later attempt of the step raises ``Killed`` unsent and uncounted,
  and an attempt another thread had in flight raises ``Killed`` when its answer arrives (logged as
  ``killed-in-flight``, applied, when it had really been sent). ``Killed`` is a BaseException: botocore
  (which catches ``Exception`` per attempt) and ``except Exception`` in the product let it through, as a
  killed process runs no handler at all.
- Sleeping: while installed, botocore's retry sleeps (``time.sleep`` in botocore.endpoint, for every
  client in the process) go to the ``sleep`` given to the constructor, so thousands of retries cost no
  real time. Adaptive mode's client-side rate limiter waits on a Condition and is not redirected.
- Idempotency tokens, as AWS keeps them and moto does not: DynamoDB answers a transaction
  (TransactWriteItems, ExecuteTransaction) whose ClientRequestToken it applied within 10 minutes with
  success and applies nothing (botocore fills the token once per call, so its retries carry it). moto
  ignores the token, so a retry after a sent-then-lost attempt would fail its own conditions there, a
  failure AWS never produces: an attempt carrying a token this injector saw applied (within 10 minutes
  of the clock ``time.time``) is answered here, with success, and never re-sent.
- Reproducible: the step's Random is consulted only under a lock, once per attempt in scope when
  ``0 < rate < 1`` and once more for the kind when ``kinds`` has more than one; in one thread, the faults
  are a function of the Random's state and the sequence of calls. (botocore's backoff delays come from the
  global ``random``, which Hypothesis seeds per example.)
"""

from __future__ import annotations

import email.utils
import json
import os
import random
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any, cast
from xml.sax.saxutils import escape

import boto3
import botocore.endpoint
import botocore.session
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.exceptions import ConnectionClosedError, ReadTimeoutError
from botocore.httpsession import URLLib3Session
from urllib3.response import HTTPResponse

KINDS: tuple[str, ...] = ("500", "503", "throttle", "reset-before", "timeout-after", "reset-after")
# botocore service ids, hyphenized as botocore's event names spell them (before-send.<id>.<Operation>).
SERVICES: frozenset[str] = frozenset({"s3", "dynamodb", "sqs", "sns", "kms", "secrets-manager"})
# Kinds whose request reached the service: the write happened, the caller was told it failed.
APPLIED: frozenset[str] = frozenset({"timeout-after", "reset-after"})
# Operations AWS deduplicates by an idempotency token in the request body, and for how long.
IDEMPOTENT: dict[tuple[str, str], str] = {
    ("dynamodb", "TransactWriteItems"): "ClientRequestToken",
    ("dynamodb", "ExecuteTransaction"): "ClientRequestToken",
}
TOKEN_SECONDS = 600


class Killed(BaseException):
    """The function's process died (a kill, or a Lambda timeout): it makes no further call, not even the
    AWS calls of its ``finally:`` blocks. A BaseException so no ``except Exception`` handles it."""


@dataclass(frozen=True)
class Fault:
    service: str  # hyphenized service id: "s3", "secrets-manager"
    operation: str  # botocore's operation name: "PutObject"
    kind: str  # one of KINDS, "kill", or "killed-in-flight"
    applied: bool  # the request reached the service (what it did there the caller never learnt)


# (status, code, message) by service and kind, as each service answers: real codes where the service
# models its own (DynamoDB's InternalServerError, KMS's KMSInternalException, ...), AWS's common errors
# otherwise. The throttles are 400 with a code botocore's legacy retry matches on (code AND status).
_S3_SLOWDOWN = (503, "SlowDown", "Please reduce your request rate.")
_UNAVAILABLE = (503, "ServiceUnavailable", "The service is unavailable. Please try again shortly.")
_THROTTLED = (400, "ThrottlingException", "Rate exceeded")
ERRORS: dict[str, dict[str, tuple[int, str, str]]] = {
    "s3": {
        "500": (500, "InternalError", "We encountered an internal error. Please try again."),
        "503": _S3_SLOWDOWN,
        "throttle": _S3_SLOWDOWN,
    },
    "dynamodb": {
        "500": (500, "InternalServerError", "Internal server error"),
        "503": _UNAVAILABLE,
        "throttle": (
            400,
            "ProvisionedThroughputExceededException",
            "The level of configured provisioned throughput for the table was exceeded.",
        ),
    },
    "kms": {
        "500": (500, "KMSInternalException", "An internal error occurred."),
        "503": _UNAVAILABLE,
        "throttle": _THROTTLED,
    },
    "secrets-manager": {
        "500": (500, "InternalServiceError", "An error occurred on the server side."),
        "503": _UNAVAILABLE,
        "throttle": _THROTTLED,
    },
    "sqs": {
        "500": (500, "InternalError", "We encountered an internal error. Please try again."),
        "503": _UNAVAILABLE,
        "throttle": _THROTTLED,
    },
    "sns": {
        "500": (500, "InternalError", "Internal Error"),
        "503": _UNAVAILABLE,
        "throttle": (400, "Throttling", "Rate exceeded"),
    },
}
# JSON-protocol services prefix __type with their Smithy namespace (botocore keeps what follows '#').
_JSON_NAMESPACE = {"dynamodb": "com.amazonaws.dynamodb.v20120810#", "sqs": "com.amazonaws.sqs#"}
_JSON_VERSION = {"kms": "1.1", "secrets-manager": "1.1"}  # awsJson 1.0 otherwise (DynamoDB, SQS)
_SNS_XMLNS = "http://sns.amazonaws.com/doc/2010-03-31/"


def error_response(
    service: str, kind: str, *, request_id: str, method: str = "POST", request_content_type: str = ""
) -> AWSResponse:
    """The AWSResponse ``service`` answers a failed attempt with, for kind "500", "503" or "throttle".

    The protocol follows the request (``request_content_type``: awsJson 1.0/1.1 or a query form), with
    S3 rest-xml and SNS query as the default, so SQS is shaped right whichever protocol botocore speaks."""
    status, code, message = ERRORS[service][kind]
    date = email.utils.formatdate(usegmt=True)
    headers: dict[str, str] = {"Date": date}
    if service == "s3":
        headers |= {"x-amz-request-id": request_id, "x-amz-id-2": f"{request_id}/fault", "Server": "AmazonS3"}
        body = b""  # a HEAD answer has no body: botocore then takes the status as the code
        if method != "HEAD":
            headers["Content-Type"] = "application/xml"
            body = (
                '<?xml version="1.0" encoding="UTF-8"?>\n'
                f"<Error><Code>{code}</Code><Message>{escape(message)}</Message>"
                f"<RequestId>{request_id}</RequestId><HostId>{request_id}/fault</HostId></Error>"
            ).encode()
    elif request_content_type.startswith("application/x-amz-json-") or (
        service != "sns" and "x-www-form-urlencoded" not in request_content_type
    ):
        version = request_content_type.removeprefix("application/x-amz-json-") or _JSON_VERSION.get(service, "1.0")
        body = json.dumps({"__type": _JSON_NAMESPACE.get(service, "") + code, "message": message}).encode()
        headers |= {"x-amzn-RequestId": request_id, "Content-Type": f"application/x-amz-json-{version}"}
        if service == "dynamodb":  # DynamoDB signs every body with a CRC32 botocore checks
            headers["x-amz-crc32"] = str(zlib.crc32(body) & 0xFFFFFFFF)
    else:  # the query protocol (SNS; SQS when botocore speaks query to it)
        xmlns = f' xmlns="{_SNS_XMLNS}"' if service == "sns" else ""
        fault = "Receiver" if status >= 500 else "Sender"
        body = (
            f"<ErrorResponse{xmlns}><Error><Type>{fault}</Type><Code>{code}</Code>"
            f"<Message>{escape(message)}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        ).encode()
        headers |= {"x-amzn-RequestId": request_id, "Content-Type": "text/xml"}
    headers["Content-Length"] = str(len(body))
    raw = HTTPResponse(body=BytesIO(body), headers=headers, status=status, preload_content=False)
    return AWSResponse("", status, cast(Any, headers), raw)


# The module botocore's retry loop sleeps through (``time.sleep`` in Endpoint._needs_retry).
_ENDPOINT_GLOBALS = vars(botocore.endpoint)


class _EndpointTime:
    """botocore.endpoint's ``time`` while installed: the module itself, but ``sleep`` is the injected one."""

    def __init__(self, sleep: Callable[[float], None]) -> None:
        self.sleep = sleep

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


@dataclass
class _Step:
    rnd: random.Random
    rate: float
    kill_at: int | None
    kill_applied: bool
    services: frozenset[str]
    kinds: tuple[str, ...]
    faults: list[Fault] = field(default_factory=list)
    attempts: int = 0
    dead: bool = False


# What before-send decided for one attempt.
_PASS, _DEAD, _KILL = "pass", "dead", "kill"


class AwsFaults:
    def __init__(self, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self._sleep = sleep
        self._lock = threading.Lock()
        self._step: _Step | None = None
        self._installed = False
        self._sessions: list[botocore.session.Session] = []
        self._clients: list[Any] = []
        self._local = threading.local()  # per thread: was this thread's current attempt really sent?
        self._http: URLLib3Session | None = None
        self._ids = 0
        self._tokens: dict[tuple[str, str, str], float] = {}  # applied idempotency tokens: when
        self.attempts = 0
        self.log: list[Fault] = []

    # ---------------------------------------------------------------- installing

    def install(self, session: boto3.session.Session | botocore.session.Session) -> None:
        core = session._session if isinstance(session, boto3.session.Session) else session
        if not self._installed:
            if isinstance(_ENDPOINT_GLOBALS["time"], _EndpointTime):
                raise RuntimeError("another AwsFaults is installed: botocore's sleep is redirected already")
            _ENDPOINT_GLOBALS["time"] = _EndpointTime(self._sleep)
            # The sent-then-lost kinds send through a session of their own, as the endpoint would (TLS
            # verified, with the bundle botocore would use).
            self._http = URLLib3Session(verify=cast(Any, os.environ.get("AWS_CA_BUNDLE") or True))
            self._installed = True
        self._register(core)
        self._sessions.append(core)

    def attach(self, client: Any) -> None:
        self._register(client.meta.events)
        self._clients.append(client)

    def uninstall(self) -> None:
        for session in self._sessions:
            self._unregister(session)
        for client in self._clients:
            self._unregister(client.meta.events)
        self._sessions.clear()
        self._clients.clear()
        if self._installed:
            _ENDPOINT_GLOBALS["time"] = time
            if self._http is not None:
                self._http.close()
                self._http = None
            self._installed = False

    def _register(self, target: Any) -> None:
        target.register("before-send", self._before_send, unique_id=self._uid("send"))
        target.register("response-received", self._response_received, unique_id=self._uid("received"))

    def _unregister(self, target: Any) -> None:
        target.unregister("before-send", self._before_send, unique_id=self._uid("send"))
        target.unregister("response-received", self._response_received, unique_id=self._uid("received"))

    def _uid(self, hook: str) -> str:
        return f"auditlake-chaos-{id(self)}-{hook}"

    # ---------------------------------------------------------------- steps

    @contextmanager
    def step(
        self,
        rnd: random.Random,
        *,
        rate: float,
        kill_at: int | None = None,
        kill_applied: bool = True,
        services: frozenset[str] | None = None,
        kinds: tuple[str, ...] = KINDS,
    ) -> Iterator[list[Fault]]:
        unknown = set(kinds) - set(KINDS)
        if unknown or not kinds:
            raise ValueError(f"fault kinds must be a non-empty choice of {KINDS}, not {sorted(unknown)}")
        services = SERVICES if services is None else services
        if not services <= SERVICES:
            # A typo ("secretsmanager") would silently fault nothing.
            raise ValueError(f"services must be among {sorted(SERVICES)}: {sorted(services - SERVICES)}")
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be within [0, 1]: {rate}")
        if kill_at is not None and kill_at < 1:
            raise ValueError(f"kill_at counts attempts from 1: {kill_at}")
        state = _Step(rnd, rate, kill_at, kill_applied, services, kinds)
        with self._lock:
            if self._step is not None:
                raise RuntimeError("fault steps do not nest")
            self._step = state
        try:
            yield state.faults
        finally:
            with self._lock:
                self._step = None

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(Counter(fault.kind for fault in self.log))

    def ambiguous(self, service: str, operation: str) -> int:
        """Faults of that call whose request reached the service: it may have happened more often than
        the caller knows (a publish the caller retried after a timeout pages twice)."""
        with self._lock:
            return sum(1 for f in self.log if f.applied and f.service == service and f.operation == operation)

    # ---------------------------------------------------------------- the hooks

    def _decide(self, state: _Step, service: str) -> str:
        """Under the lock: what happens to this attempt."""
        if state.dead:
            return _DEAD
        state.attempts += 1
        self.attempts += 1
        if state.kill_at is not None and state.attempts == state.kill_at:
            state.dead = True
            return _KILL
        if service not in state.services or state.rate <= 0.0:
            return _PASS
        if state.rate < 1.0 and state.rnd.random() >= state.rate:
            return _PASS
        return state.kinds[0] if len(state.kinds) == 1 else state.rnd.choice(state.kinds)

    def _record(self, state: _Step, fault: Fault) -> None:
        with self._lock:
            state.faults.append(fault)
            self.log.append(fault)

    def _before_send(self, request: AWSPreparedRequest, event_name: str, **kwargs: Any) -> AWSResponse | None:
        self._local.sent = False
        if not self._installed:
            return None  # an inert copy in a client created while installed
        _, service, operation = event_name.split(".", 2)
        with self._lock:
            state = self._step
            if state is None:
                return None
            decision = self._decide(state, service)
            if decision in ("500", "503", "throttle"):
                self._ids += 1
                request_id = f"FAULT{self._ids:011X}"
        if decision == _PASS:
            if self._replayed(service, operation, request):
                return _idempotent_success()  # AWS applied it already and answers again: so does the injector
            self._local.sent = True
            return None
        if decision == _DEAD:
            raise Killed(f"{service} {operation}: the process is dead")
        if decision == _KILL:
            if state.kill_applied:
                self._send(service, operation, request)
            self._record(state, Fault(service, operation, "kill", state.kill_applied))
            raise Killed(f"{service} {operation}: killed")
        applied = decision in APPLIED
        if applied:
            self._send(service, operation, request)  # an error here is the attempt's error, as botocore's own
        self._record(state, Fault(service, operation, decision, applied))
        if decision in {"reset-before", "reset-after"}:
            raise ConnectionClosedError(endpoint_url=request.url)
        if decision == "timeout-after":
            raise ReadTimeoutError(endpoint_url=request.url, error="Read timed out (injected)")
        content_type = request.headers.get("Content-Type") or ""
        if isinstance(content_type, bytes):
            content_type = content_type.decode("latin-1")
        return error_response(
            service, decision, request_id=request_id, method=request.method or "POST", request_content_type=content_type
        )

    def _send(self, service: str, operation: str, request: AWSPreparedRequest) -> None:
        assert self._http is not None, "installed without an HTTP session"
        if self._replayed(service, operation, request):
            return  # AWS would not apply it again
        response = self._http.send(request)
        token = _token(service, operation, request)
        if token is not None:
            with self._lock:
                self._tokens[token] = time.time()
        response.content  # noqa: B018 - read it whole (a streamed GET too), then drop it: the answer is lost

    def _replayed(self, service: str, operation: str, request: AWSPreparedRequest) -> bool:
        token = _token(service, operation, request)
        if token is None:
            return False
        with self._lock:
            applied = self._tokens.get(token)
        return applied is not None and time.time() - applied < TOKEN_SECONDS

    def _response_received(self, event_name: str, **kwargs: Any) -> None:
        """An attempt's answer arrived (or its error): a process that died meanwhile never sees it."""
        if not self._installed:
            return
        with self._lock:
            state = self._step
            if state is None or not state.dead:
                return
        if getattr(self._local, "sent", False):
            _, service, operation = event_name.split(".", 2)
            self._record(state, Fault(service, operation, "killed-in-flight", True))
        raise Killed(f"{event_name}: the process died while the call was in flight")


def _token(service: str, operation: str, request: AWSPreparedRequest) -> tuple[str, str, str] | None:
    """The idempotency token AWS would deduplicate this request by, if the operation has one."""
    name = IDEMPOTENT.get((service, operation))
    if name is None or not isinstance(request.body, bytes | str):
        return None
    value = json.loads(request.body or "{}").get(name)
    return (service, operation, value) if isinstance(value, str) else None


def _idempotent_success() -> AWSResponse:
    """DynamoDB's answer to a transaction it applied already: success, and nothing asked for."""
    body = b"{}"
    headers = {
        "Content-Type": "application/x-amz-json-1.0",
        "Content-Length": str(len(body)),
        "x-amz-crc32": str(zlib.crc32(body) & 0xFFFFFFFF),
        "x-amzn-RequestId": "idempotent-replay",
    }
    raw = HTTPResponse(body=BytesIO(body), headers=headers, status=200, preload_content=False)
    return AWSResponse("", 200, cast(Any, headers), raw)


class FailsOnce(random.Random):
    """The first draw is a fault, every later one is not: the first attempt fails, the retry goes through."""

    def __init__(self) -> None:
        super().__init__(0)
        self.draws = 0

    def random(self) -> float:
        self.draws += 1
        return 0.0 if self.draws == 1 else 0.999
