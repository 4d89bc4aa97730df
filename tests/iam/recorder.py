"""Records the AWS calls each Lambda function makes in a test, through botocore's event hooks.

Contract:
- ``cold_start(function)``: a context manager around the import of functions/<function>/app.py
  (tests/helpers.py's ``load_function``). It yields a ``Run``: the function, the environment
  variables it started with, and (once its handler has been called) the ARN it was invoked as.
  Calls made while importing are the function's. ``Run.attribute(handler)`` wraps the module's
  ``lambda_handler`` so calls made during each invocation are the function's too.
- Attribution is a ContextVar; a call made in a worker thread (the compactor's thread pools do
  not copy the context) belongs to the run whose code created the client, while that run is
  importing or handling. Any other call (the test's own setup and assertions) is not recorded.
- ``RECORDER.install()`` hooks every botocore client created afterwards (idempotent); without it,
  nothing is recorded and ``cold_start`` costs nothing.
- ``RECORDER.take()`` hands over (and forgets) the calls recorded so far, with their runs;
  ``RECORDER.peek()`` copies them and forgets nothing.
"""

from __future__ import annotations

import contextvars
import functools
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.iam.actions import Call


@dataclass(eq=False)
class Run:
    """One cold start of one function: what it was started with, and its invocations."""

    function: str
    env: dict[str, str]
    function_arn: str | None = None
    active: int = 0  # > 0 while importing or inside the handler

    def attribute(self, handler: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(handler)
        def invoke(event: Any, context: Any, *args: Any, **kwargs: Any) -> Any:
            arn = getattr(context, "invoked_function_arn", None)
            if isinstance(arn, str):
                self.function_arn = arn
            with self._running():
                return handler(event, context, *args, **kwargs)

        return invoke

    @contextmanager
    def _running(self) -> Iterator[None]:
        token = _CURRENT.set(self)
        with _LOCK:
            self.active += 1
        try:
            yield
        finally:
            with _LOCK:
                self.active -= 1
            _CURRENT.reset(token)


_CURRENT: contextvars.ContextVar[Run | None] = contextvars.ContextVar("iam_run", default=None)
_LOCK = threading.Lock()


@contextmanager
def cold_start(function: str) -> Iterator[Run]:
    run = Run(function, dict(os.environ))
    with run._running():
        yield run


@dataclass
class Recorder:
    calls: list[tuple[Run, Call]] = field(default_factory=list)
    installed: bool = False

    def install(self) -> None:
        if self.installed:
            return
        import botocore.session

        original = botocore.session.Session.create_client
        recorder = self

        @functools.wraps(original)
        def create_client(session: Any, *args: Any, **kwargs: Any) -> Any:
            client = original(session, *args, **kwargs)
            recorder.hook(client, _CURRENT.get())
            return client

        botocore.session.Session.create_client = create_client  # type: ignore[method-assign,assignment]
        self.installed = True

    def hook(self, client: Any, creator: Run | None) -> None:
        service = client.meta.service_model.service_name
        region = client.meta.region_name or os.environ.get("AWS_REGION", "us-east-1")

        def attributed() -> Run | None:
            run = _CURRENT.get()
            if (
                run is None
                and creator is not None
                and creator.active
                and threading.current_thread() is not threading.main_thread()
            ):
                run = creator  # a worker thread of the function's own code
            return run

        def before(params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
            run = attributed()
            if run is not None:
                # The body is not needed to judge a permission; keep the rest as the caller passed it.
                context["iam_record"] = (run, model.name, {k: v for k, v in params.items() if k != "Body"})

        def after(http_response: Any, parsed: Any, context: dict[str, Any], **_: Any) -> None:
            record = context.get("iam_record")
            if record is not None:
                error = parsed.get("Error", {}).get("Code") if isinstance(parsed, dict) else None
                arn = parsed.get("ARN") if isinstance(parsed, dict) and isinstance(parsed.get("ARN"), str) else None
                self._add(record, service, region, http_response.status_code, error, arn)

        def failed(context: dict[str, Any], exception: Exception, **_: Any) -> None:
            record = context.get("iam_record")
            if record is not None:  # sent but unanswered: still a call the role must allow
                self._add(record, service, region, None, type(exception).__name__, None)

        events = client.meta.events
        events.register("before-parameter-build", before)
        events.register("after-call", after)
        events.register("after-call-error", failed)

    def _add(self, record: tuple[Run, str, dict[str, Any]], service: str, region: str,
             status: int | None, error: str | None, arn: str | None) -> None:  # fmt: skip
        run, operation, params = record
        call = Call(service, operation, params, region, status, error, arn)
        with _LOCK:
            self.calls.append((run, call))

    def peek(self) -> list[tuple[Run, Call]]:
        with _LOCK:
            return list(self.calls)

    def take(self) -> list[tuple[Run, Call]]:
        with _LOCK:
            taken, self.calls = self.calls, []
        return taken


RECORDER = Recorder()
