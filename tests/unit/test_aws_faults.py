"""The AWS fault injector without a network: its failures parse to the codes botocore's retry logic
retries, its choices replay from the Random, kills stop the process, and sleeps never wait.

Clients point at an address nothing listens on and sockets are blocked: an attempt the injector lets
through is answered in-process by a responder registered after it (``answer``), so "sent" means "reached
the responder"."""

from __future__ import annotations

import contextlib
import json
import random
import threading
import time
import zlib
from collections.abc import Iterator
from io import BytesIO
from typing import Any, cast

import botocore.endpoint
import botocore.session
import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.config import Config
from botocore.endpoint import convert_to_response_dict
from botocore.exceptions import ClientError, ConnectionClosedError
from botocore.parsers import create_parser
from urllib3.response import HTTPResponse

from tests.chaos.aws_faults import ERRORS, KINDS, SERVICES, AwsFaults, FailsOnce, Fault, Killed, error_response

NOWHERE = "http://127.0.0.1:9"  # never reached: sockets are blocked in this tier
SENDLESS = ("500", "503", "throttle", "reset-before")  # the kinds that send nothing
# One call per service, with its botocore service name (client) and hyphenized id (event names).
CALLS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "s3": ("s3", "put_object", {"Bucket": "b", "Key": "k", "Body": b"x"}),
    "dynamodb": ("dynamodb", "get_item", {"TableName": "t", "Key": {"pk": {"S": "a"}}}),
    "sqs": ("sqs", "send_message", {"QueueUrl": f"{NOWHERE}/123456789012/q", "MessageBody": "m"}),
    "sns": ("sns", "publish", {"TopicArn": "arn:aws:sns:us-east-1:123456789012:t", "Message": "m"}),
    "kms": ("kms", "describe_key", {"KeyId": "alias/k"}),
    "secrets-manager": ("secretsmanager", "get_secret_value", {"SecretId": "s"}),
}
# What botocore's default (legacy) retry allows per call: _retry.json's max_attempts.
LEGACY_ATTEMPTS = {"dynamodb": 10}
EXPECTED_CODES = {service: {kind: code for kind, (_, code, _) in kinds.items()} for service, kinds in ERRORS.items()}


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[botocore.session.Session]:
    """One session for the module (it caches the service models: clients are made in milliseconds)."""
    with pytest.MonkeyPatch.context() as patch:
        # The default client config, whatever the machine's: no config file, no retry settings in the env.
        nothing = str(tmp_path_factory.mktemp("aws") / "none")
        patch.setenv("AWS_CONFIG_FILE", nothing)
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", nothing)
        for name in ("AWS_RETRY_MODE", "AWS_MAX_ATTEMPTS", "AWS_ENDPOINT_URL", "AWS_PROFILE"):
            patch.delenv(name, raising=False)
        core = botocore.session.Session()
        core.set_credentials("testing", "testing")
        yield core


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def faults(session: botocore.session.Session, sleeps: list[float]) -> Iterator[AwsFaults]:
    injector = AwsFaults(sleep=sleeps.append)
    injector.install(session)
    yield injector
    injector.uninstall()


class Responder:
    """The service, in-process: the HTTP session of the clients it answers, so what it records is exactly
    what botocore sent (an attempt the injector answered or raised for never gets here)."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self._lock = threading.Lock()

    def session(self, service: str) -> Any:
        responder = self

        class Session:
            def send(self, request: AWSPreparedRequest) -> AWSResponse:
                return responder.answer(service, request)

            def close(self) -> None:
                pass

        return Session()

    def answer(self, service: str, request: AWSPreparedRequest) -> AWSResponse:
        with self._lock:
            self.requests.append(service)
        if service == "s3":
            return _response(200, b"", {"ETag": '"0"'})
        if service == "sns":
            body = b"<PublishResponse><PublishResult><MessageId>1</MessageId></PublishResult></PublishResponse>"
            return _response(200, body, {"Content-Type": "text/xml"})
        body = json.dumps({"MessageId": "1", "MD5OfMessageBody": "0"} if service == "sqs" else {}).encode()
        crc = str(zlib.crc32(body))
        return _response(200, body, {"Content-Type": "application/x-amz-json-1.0", "x-amz-crc32": crc})


def _response(status: int, body: bytes, headers: dict[str, str]) -> AWSResponse:
    headers = {**headers, "Content-Length": str(len(body)), "x-amzn-RequestId": "ok"}
    raw = HTTPResponse(body=BytesIO(body), status=status, preload_content=False)
    return AWSResponse("", status, cast(Any, headers), raw)


def client(session: botocore.session.Session, service: str, answer: Responder | None = None, **config: Any) -> Any:
    made = session.create_client(
        CALLS[service][0], region_name="us-east-1", endpoint_url=NOWHERE, config=Config(**config) if config else None
    )
    if answer is not None:  # what botocore sends (no hook answered) goes to the responder
        cast(Any, made)._endpoint.http_session = answer.session(service)
    return made


def call(made: Any, service: str) -> Any:
    _, method, params = CALLS[service]
    return getattr(made, method)(**params)


# ---------------------------------------------------------------- the shapes


@pytest.mark.parametrize("kind", ["500", "503", "throttle"])
@pytest.mark.parametrize("service", sorted(SERVICES))
def test_each_error_parses_to_its_code_with_the_protocols_parser(
    session: botocore.session.Session, service: str, kind: str
) -> None:
    name, method, _ = CALLS[service]
    response = error_response(service, kind, request_id="REQ1")
    parsed = parse(session, name, xform(method), response)
    assert parsed["Error"]["Code"] == EXPECTED_CODES[service][kind]
    assert parsed["ResponseMetadata"]["RequestId"] == "REQ1"
    assert response.status_code == ERRORS[service][kind][0]


def test_sqs_spoken_as_query_gets_a_query_error() -> None:
    """SQS is awsJson in current botocore; an older one speaks query to it: the answer follows the request."""
    response = error_response(
        "sqs", "throttle", request_id="REQ2", request_content_type="application/x-www-form-urlencoded; charset=utf-8"
    )
    assert response.content.startswith(b"<ErrorResponse><Error><Type>Sender</Type><Code>ThrottlingException</Code>")


def test_an_s3_head_answer_has_no_body_and_parses_to_its_status(session: botocore.session.Session) -> None:
    response = error_response("s3", "503", request_id="REQ3", method="HEAD")
    parsed = parse(session, "s3", "HeadObject", response)
    assert response.content == b""
    assert parsed["Error"]["Code"] == "503"


def parse(session: botocore.session.Session, name: str, operation_name: str, response: AWSResponse) -> Any:
    """What the endpoint does with an answer: the protocol's parser over the response dict."""
    model = session.get_service_model(name)
    operation = model.operation_model(operation_name)
    shape = cast(Any, operation.output_shape)
    return create_parser(model.resolved_protocol).parse(convert_to_response_dict(response, operation), shape)


def xform(method: str) -> str:
    """put_object -> PutObject: the operation a client method calls (event names and Fault spell it so)."""
    return method.title().replace("_", "")


# ---------------------------------------------------------------- botocore retries them


@pytest.mark.parametrize("kind", ["500", "503", "throttle"])
@pytest.mark.parametrize("service", sorted(SERVICES))
def test_the_default_client_retries_every_error_kind_until_it_gives_up(
    session: botocore.session.Session, faults: AwsFaults, sleeps: list[float], service: str, kind: str
) -> None:
    made = client(session, service, Responder())
    with faults.step(random.Random(0), rate=1.0, kinds=(kind,)) as injected, pytest.raises(ClientError) as caught:
        call(made, service)
    attempts = LEGACY_ATTEMPTS.get(service, 5)
    assert caught.value.response["Error"]["Code"] == EXPECTED_CODES[service][kind]
    assert caught.value.response["ResponseMetadata"]["RetryAttempts"] == attempts - 1
    assert injected == [Fault(service, xform(CALLS[service][1]), kind, False)] * attempts
    assert len(sleeps) == attempts - 1 and all(delay > 0 for delay in sleeps)


@pytest.mark.parametrize("kind", ["500", "503", "throttle", "reset-before"])
def test_standard_retry_mode_retries_every_kind_too(
    session: botocore.session.Session, faults: AwsFaults, sleeps: list[float], kind: str
) -> None:
    made = client(session, "dynamodb", Responder(), retries={"mode": "standard"})
    with faults.step(random.Random(0), rate=1.0, kinds=(kind,)), pytest.raises((ClientError, ConnectionClosedError)):
        call(made, "dynamodb")
    assert faults.attempts == 3 and len(sleeps) == 2  # standard: 3 attempts


def test_a_fault_on_the_first_attempt_only_is_absorbed_by_the_retry(
    session: botocore.session.Session, faults: AwsFaults, sleeps: list[float]
) -> None:
    answer = Responder()
    made = client(session, "s3", answer)
    with faults.step(FailsOnce(), rate=0.5, kinds=("throttle",)) as injected:
        call(made, "s3")
    assert [f.kind for f in injected] == ["throttle"]
    assert answer.requests == ["s3"]
    assert len(sleeps) == 1


def test_a_reset_before_sending_never_reaches_the_service(
    session: botocore.session.Session, faults: AwsFaults, sleeps: list[float]
) -> None:
    answer = Responder()
    made = client(session, "kms", answer)
    with faults.step(random.Random(0), rate=1.0, kinds=("reset-before",)), pytest.raises(ConnectionClosedError):
        call(made, "kms")
    assert answer.requests == []
    assert faults.counts() == {"reset-before": 5}
    assert faults.ambiguous("kms", "DescribeKey") == 0


# ---------------------------------------------------------------- reproducible


def _run(session: botocore.session.Session, seed: int) -> list[Fault]:
    injector = AwsFaults(sleep=lambda _: None)
    injector.install(session)
    try:
        clients = {service: client(session, service, Responder()) for service in sorted(SERVICES)}
        with injector.step(random.Random(seed), rate=0.5, kinds=SENDLESS) as injected:
            for index in range(30):
                service = sorted(SERVICES)[index % len(SERVICES)]
                with contextlib.suppress(ClientError, ConnectionClosedError):  # every attempt failed: go on
                    call(clients[service], service)
        return injected
    finally:
        injector.uninstall()


def test_the_same_random_gives_the_same_faults(session: botocore.session.Session) -> None:
    first, again, other = _run(session, 7), _run(session, 7), _run(session, 8)
    assert first == again
    assert len({f.kind for f in first}) == len(SENDLESS)  # every kind drawn
    assert first != other


# ---------------------------------------------------------------- steps, kills, sleeping


def test_outside_a_step_nothing_fails_and_nothing_counts(session: botocore.session.Session, faults: AwsFaults) -> None:
    answer = Responder()
    made = client(session, "s3", answer)
    call(made, "s3")
    with faults.step(random.Random(0), rate=1.0, kinds=("500",)), pytest.raises(ClientError):
        call(made, "s3")
    call(made, "s3")
    assert answer.requests == ["s3", "s3"]
    assert faults.attempts == 5
    assert faults.counts() == {"500": 5}


def test_services_outside_the_choice_pass_but_count_toward_the_kill(
    session: botocore.session.Session, faults: AwsFaults
) -> None:
    answer = Responder()
    sns = client(session, "sns", answer)  # at rate 1.0, but not among the step's services
    with faults.step(random.Random(0), rate=1.0, kill_at=2, kill_applied=False, services=frozenset({"s3"})):
        call(sns, "sns")
        with pytest.raises(Killed):
            call(sns, "sns")
    assert answer.requests == ["sns"]
    assert faults.log == [Fault("sns", "Publish", "kill", False)]


def test_kill_unapplied_sends_nothing_and_the_process_stays_dead(
    session: botocore.session.Session, faults: AwsFaults
) -> None:
    answer = Responder()
    made = client(session, "dynamodb", answer)
    outcomes = []
    with faults.step(random.Random(0), rate=0.0, kill_at=2, kill_applied=False) as injected:
        for _ in range(3):
            try:
                call(made, "dynamodb")
                outcomes.append("ok")
            except Killed:
                outcomes.append("killed")
    assert outcomes == ["ok", "killed", "killed"]
    assert answer.requests == ["dynamodb"]
    assert injected == [Fault("dynamodb", "GetItem", "kill", False)]
    assert faults.attempts == 2  # a dead process makes no calls: the third is not an attempt
    call(made, "dynamodb")  # the step is over: the next invocation lives
    assert answer.requests == ["dynamodb", "dynamodb"]


def test_a_kill_ends_a_retry_loop_and_killed_passes_every_except_exception(
    session: botocore.session.Session, faults: AwsFaults, sleeps: list[float]
) -> None:
    made = client(session, "sqs", Responder())
    caught = None
    with faults.step(random.Random(0), rate=1.0, kinds=("throttle",), kill_at=3, kill_applied=False):
        try:
            try:
                call(made, "sqs")
            except Exception:  # the product's broadest handler: a dead process runs none
                caught = "exception"
        except Killed:
            caught = "killed"
    assert caught == "killed"
    assert faults.counts() == {"throttle": 2, "kill": 1}
    assert len(sleeps) == 2


def test_a_kill_across_threads_counts_every_attempt_once_and_stops_every_thread(
    session: botocore.session.Session, faults: AwsFaults
) -> None:
    answer = Responder()
    made = client(session, "s3", answer)  # botocore clients are thread-safe: one shared, as the compactor does
    killed: list[int] = []

    def work(index: int) -> None:
        try:
            for _ in range(100):
                call(made, "s3")
        except Killed:
            killed.append(index)

    with faults.step(random.Random(0), rate=0.0, kill_at=40, kill_applied=False) as injected:
        threads = [threading.Thread(target=work, args=(index,)) for index in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sorted(killed) == list(range(8))
    assert faults.attempts == 40
    assert [f.kind for f in injected].count("kill") == 1
    # Attempts another thread had in flight when the process died reached the service: applied, unanswered.
    in_flight = [f for f in injected if f.kind == "killed-in-flight"]
    assert all(f.applied for f in in_flight)
    assert len(answer.requests) == 39
    assert faults.ambiguous("s3", "PutObject") == len(in_flight)


def test_retry_sleeps_go_to_the_injected_sleep_and_come_back_on_uninstall(session: botocore.session.Session) -> None:
    sleeps: list[float] = []
    injector = AwsFaults(sleep=sleeps.append)
    injector.install(session)
    made = client(session, "dynamodb", Responder())
    started = time.monotonic()
    with injector.step(random.Random(0), rate=1.0, kinds=("throttle",)), pytest.raises(ClientError):
        call(made, "dynamodb")
    assert len(sleeps) == 9 and sum(sleeps) > 10  # DynamoDB: 10 attempts, 0.05 s doubling: 25 s in all
    assert time.monotonic() - started < sum(sleeps) / 2  # and none of it waited
    injector.uninstall()
    assert vars(botocore.endpoint)["time"] is time
    with injector.step(random.Random(0), rate=1.0):  # clients made while installed are inert now
        call(made, "dynamodb")
    assert injector.attempts == 10


def test_a_client_made_before_install_is_attached(
    session: botocore.session.Session, sleeps: list[float], faults: AwsFaults
) -> None:
    faults.uninstall()
    made = client(session, "secrets-manager", Responder())
    faults.install(session)
    with faults.step(random.Random(0), rate=1.0, kinds=("500",)):
        call(made, "secrets-manager")  # made before install: no hook
        faults.attach(made)
        with pytest.raises(ClientError, match="InternalServiceError"):
            call(made, "secrets-manager")


def test_installed_on_boto3s_default_session_the_module_level_clients_fault(
    session: botocore.session.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the deployed functions do: ``boto3.client(...)`` at import, from boto3's default session."""
    import boto3

    default = boto3.session.Session(botocore_session=session)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", default)
    injector = AwsFaults(sleep=lambda _: None)
    injector.install(default)
    try:
        made = boto3.client("sns", region_name="us-east-1", endpoint_url=NOWHERE)
        with injector.step(random.Random(0), rate=1.0, kinds=("throttle",)), pytest.raises(ClientError) as caught:
            call(made, "sns")
    finally:
        injector.uninstall()
    assert caught.value.response["Error"]["Code"] == "Throttling"
    assert injector.counts() == {"throttle": 5}


def test_two_injectors_cannot_both_redirect_the_sleep(session: botocore.session.Session, faults: AwsFaults) -> None:
    with pytest.raises(RuntimeError, match="another AwsFaults"):
        AwsFaults().install(session)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"kinds": ("500", "timeout")}, "fault kinds"),
        ({"kinds": ()}, "fault kinds"),
        ({"services": frozenset({"secretsmanager"})}, "services must be among"),
        ({"rate": 1.5}, "rate must be"),
        ({"kill_at": 0}, "kill_at counts"),
    ],
)
def test_a_step_refuses_what_would_silently_fault_nothing(
    faults: AwsFaults, kwargs: dict[str, Any], error: str
) -> None:
    arguments: dict[str, Any] = {"rate": 0.5, **kwargs}
    with pytest.raises(ValueError, match=error), faults.step(random.Random(0), **arguments):
        pass


def test_steps_do_not_nest(faults: AwsFaults) -> None:
    outer = faults.step(random.Random(0), rate=0.1)
    with outer, pytest.raises(RuntimeError, match="nest"), faults.step(random.Random(0), rate=0.1):
        pass


def test_killed_is_a_base_exception_that_no_except_exception_catches() -> None:
    assert issubclass(Killed, BaseException)
    assert not issubclass(Killed, Exception)
    assert set(KINDS) == {"500", "503", "throttle", "reset-before", "timeout-after", "reset-after"}
