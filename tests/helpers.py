"""Shared test paths and helpers (plain functions and classes: pytest advises against importing conftest,
which keeps only the fixtures). The shared corpus is read in place, never copied."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from auditlake.stores import Store
from auditlake.timestamps import format_utc

ROOT = Path(__file__).resolve().parents[1]
# The venv's tools (cfn-lint, sam) and the environment they run in: the template tier.
BIN = Path(sys.executable).parent
TOOL_ENV = {**os.environ, "SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": "us-east-1"}
# The shared sample corpus sits beside the repository; AUDITLAKE_CORPUS points elsewhere.
CORPUS = Path(os.environ.get("AUDITLAKE_CORPUS", ROOT / ".." / "shared" / "corpus")).resolve()
EVENTS = ROOT / "tests" / "events"
COMPLETE_AUDIT_FILES = (
    "audit/falcosecurity__falco__trace_files_k8s_audit.jsonl",
    "audit/kubernetes__kubernetes__issue126466_watch_RequestReceived.jsonl",
    "audit/liggitt__audit2rbac__demo_v1.jsonl",
    "audit/liggitt__audit2rbac__demo_v1beta1_original.jsonl",
    "audit/openshift__openshift-docs__audit-log-basic-viewing.jsonl",
    "audit/panther-labs__panther-analysis__eks_k8s_rule_tests__complete_events.jsonl",
)


def corpus_path(relative: str) -> Path:
    path = CORPUS / relative
    if not path.exists():
        # A missing corpus is a broken checkout, not a reason to skip: fail loudly.
        raise FileNotFoundError(f"shared corpus file missing: {path}")
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open("rb") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def as_row(line: bytes | dict[str, Any]) -> dict[str, Any]:
    """A raw record as the archive reads it with the schema: every column, null where absent."""
    from auditlake.model import AUDIT_COLUMN_NAMES

    record = json.loads(line) if isinstance(line, bytes) else line
    unknown = set(record) - set(AUDIT_COLUMN_NAMES)
    assert not unknown, f"record has keys outside the schema: {unknown}"
    return {column: record.get(column) for column in AUDIT_COLUMN_NAMES}


def fixture(name: str) -> Any:
    return json.loads((EVENTS / name).read_text())


def eventlist_body(items: list[dict[str, Any]]) -> bytes:
    """An EventList as kube-apiserver sends it: items without their own kind/apiVersion."""
    stripped = [{k: v for k, v in item.items() if k not in ("kind", "apiVersion")} for item in items]
    return json.dumps(
        {"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": stripped}
    ).encode()


BURST_START = datetime(2026, 11, 21, 10, 5, tzinfo=UTC)


def forbidden_events(count: int, *, start: datetime = BURST_START, every: float = 1.0,
                     user: str = "mallory@example.com", resource: str = "secrets",
                     first: int = 0) -> list[dict[str, Any]]:  # fmt: skip
    """``count`` audit events of 403 answers to one identity (distinct audit IDs from ``first``), the
    first at ``start`` and one every ``every`` seconds after it."""
    events = []
    for n in range(first, first + count):
        event = fixture("forbidden_secret_get.json")
        event["auditID"] = f"00000000-0000-0000-0000-{n:012d}"
        event["user"]["username"] = user
        event["objectRef"]["resource"] = resource
        event["sourceIPs"] = [f"203.0.113.{n % 3}"]
        at = start + timedelta(seconds=every * (n - first))
        event["requestReceivedTimestamp"] = format_utc(at)
        events.append(event)
    return events


def complete_events(relative: str) -> list[dict[str, Any]]:
    """The corpus' complete audit events (auditID, level and stage present)."""
    return [e for e in read_jsonl(corpus_path(relative)) if all(k in e for k in ("auditID", "level", "stage"))]


def nested(depth: int) -> bytes:
    """An EventList whose envelope (not an item: those are split out and quarantined alone) is too deep."""
    return b'{"kind":"EventList","items":[],"metadata":' + b"[" * depth + b"]" * depth + b"}"


def load_function(monkeypatch: pytest.MonkeyPatch, function: str, env: dict[str, str]) -> ModuleType:
    """Import functions/<function>/app.py afresh, as a cold start with this environment would (plus
    the Powertools settings template.yaml gives every function)."""
    powertools = {"POWERTOOLS_SERVICE_NAME": function, "POWERTOOLS_METRICS_NAMESPACE": "auditlake-test"}
    for key, value in {**powertools, **env}.items():
        monkeypatch.setenv(key, value)
    name = f"{function}_app"
    spec = importlib.util.spec_from_file_location(name, ROOT / "functions" / function / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    from tests.iam.recorder import cold_start

    # The IAM check (tests/iam) judges the calls made importing and inside the handler as this function's.
    with cold_start(function) as run:
        spec.loader.exec_module(module)
    module.lambda_handler = run.attribute(module.lambda_handler)  # type: ignore[attr-defined]
    return module


@dataclass
class LambdaContext:
    function_name: str = "auditlake-test"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:auditlake-test"
    aws_request_id: str = "c6af9ac6-7b61-11e6-9a41-93e812345678"
    remaining_ms: int = 60_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


# ---------------------------------------------------------------- AWS (moto)

# What every client of moto server is given: fake credentials, one region (plus AWS_ENDPOINT_URL).
MOTO_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


@contextmanager
def moto_server() -> Iterator[str]:
    """moto in server mode on a free port, the AWS environment pointed at it; everything restored and
    the server stopped on leaving (the tests' ``moto_endpoint``, the chaos model outside pytest)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        with environment({**MOTO_ENV, "AWS_ENDPOINT_URL": endpoint}):
            yield endpoint
    finally:
        server.stop()


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """``os.environ`` with ``values`` set; each restored, or removed, on leaving."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@dataclass
class AwsStack:
    """The resources template.yaml creates, made on moto for one test."""

    s3: Any
    dynamodb: Any
    ssm: Any
    bucket: str
    table: str


def landed(aws: AwsStack) -> Iterator[dict[str, Any]]:
    """Every record in the stack's audit raw landing, as the archive reads it."""
    from auditlake.landing import decode_lines
    from auditlake.stores.s3 import S3Store

    store = S3Store(aws.s3, aws.bucket)
    for key in store.list("raw/audit/"):
        for line in decode_lines(store.get(key)):
            yield as_row(line)


# ---------------------------------------------------------------- CloudWatch Logs (EKS)

AUDIT_STREAM = "kube-apiserver-audit-4e9f9d6f9d15381d05d77c5df3f7d329"  # names as FORMAT.md observed them
API_STREAM = "kube-apiserver-e503271cd443efdbd2050ae8ca0794eb"


def eks_messages() -> list[str]:
    """EKS-shaped audit events (FORMAT.md's facts), one line each as the API server's log backend writes."""
    return [json.dumps(event, separators=(",", ":")) for event in fixture("eks_audit_events.json")]


def subscription_document(
    messages: list[str], *, log_group: str = "/aws/eks/prod/cluster", stream: str = AUDIT_STREAM, first_id: int = 0
) -> dict[str, Any]:
    return {
        "messageType": "DATA_MESSAGE",
        "owner": "123456789012",
        "logGroup": log_group,
        "logStream": stream,
        "subscriptionFilters": ["auditlake-test"],
        "logEvents": [
            {
                "id": f"{37000000000000000000000000000000000000000000000000000000 + first_id + i}",
                "timestamp": 1795600000000 + i,
                "message": m,
            }
            for i, m in enumerate(messages)
        ],
    }


def awslogs_event(document: dict[str, Any]) -> dict[str, Any]:
    """A CloudWatch Logs subscription's Lambda event: base64(gzip(JSON))."""
    import base64
    import gzip

    return {"awslogs": {"data": base64.b64encode(gzip.compress(json.dumps(document).encode())).decode()}}


# ---------------------------------------------------------------- Kubernetes API (the Events poller)


def corpus_kube_events() -> list[dict[str, Any]]:
    """The real core/v1 Events of the corpus (kubectl get events -o json), one per uid."""
    events: dict[str, dict[str, Any]] = {}
    for path in sorted(corpus_path("events").glob("*.eventlist.json")):
        for item in json.loads(path.read_text())["items"]:
            events.setdefault(item["metadata"]["uid"], item)
    return list(events.values())


def archived_events(lake: Path) -> list[dict[str, Any]]:
    """Compact a local lake's raw Events and return every row of its events archive."""
    import pyarrow.dataset as ds

    from auditlake.archive.compactor import Compactor
    from auditlake.local_lake import LocalLake

    local = LocalLake(lake)
    store = local.store()
    Compactor(store, local.archives(), local.locks()).compact(list(store.list("raw/events/")))
    events = local.archive_dir / "events"
    if not events.exists():
        return []
    return ds.dataset(events, format="parquet", partitioning="hive").to_table().to_pylist()


def findings_fixture() -> list[dict[str, Any]]:
    """tests/fixtures/findings/findings.jsonl: five findings (two clusters, four rules, every level but
    informational) of 2026-03-01 and 2026-03-02, as raw landing lines hold them."""
    return read_jsonl(ROOT / "tests" / "fixtures" / "findings" / "findings.jsonl")


def land_findings(lake: Path, records: list[dict[str, Any]], batch: str = "b-findings") -> list[str]:
    """Land ``records`` as raw findings in a local lake (one raw object per cluster, as ingest lands a
    batch's findings: ``Landing(store, "findings").write_raw`` of model.FindingRecord lines)."""
    import msgspec

    from auditlake.local_lake import LocalLake
    from auditlake.model import FindingRecord
    from auditlake.timestamps import parse

    landing = LocalLake(lake).landing("findings")
    keys = []
    for cluster in sorted({record["cluster"] for record in records}):
        mine = [record for record in records if record["cluster"] == cluster]
        lines = [msgspec.json.encode(msgspec.convert(record, FindingRecord)) for record in mine]
        key = landing.write_raw(cluster, parse(mine[0]["ingested_at"]), batch, lines)
        assert key is not None
        keys.append(key)
    return keys


# ---------------------------------------------------------------- detections (rule matches, alerts)

FORBIDDEN_RULES_FILE = ROOT / "layers" / "core" / "auditlake" / "detect" / "builtin" / "forbidden.yml"


@functools.cache
def builtin_rules() -> Any:
    """The built-in rule set (``ir.RuleSet``), loaded once per test session."""
    from auditlake.detect.sigma import load_rules

    rules = load_rules([], builtin=True)
    assert not rules.problems, rules.problems
    return rules


@functools.cache
def builtin_engine() -> Any:
    """The engine over the built-in rules, compiled once per test session."""
    from auditlake.detect.engine import RuleEngine

    return RuleEngine(builtin_rules())


def builtin_ids() -> dict[str, str]:
    """The built-in rules' names -> ids (findings carry the id)."""
    return {rule.name: rule.id for rule in builtin_rules().rules if rule.name}


@functools.cache
def forbidden_rules() -> Any:
    """The 403-burst rules of detect/builtin/forbidden.yml as the rule IR (``ir.RuleSet``)."""
    from auditlake.detect import ir

    loaded = builtin_rules()
    mine = str(FORBIDDEN_RULES_FILE.name)
    return ir.RuleSet(
        tuple(rule for rule in loaded.rules if rule.source.endswith(mine)),
        tuple(corr for corr in loaded.correlations if corr.source.endswith(mine)),
    )


def forbidden_matches(count: int, *, cluster: str = "prod", **kwargs: Any) -> list[Any]:
    """The rule matches (``detect.matches.Match``) of ``count`` 403 events (forbidden_events' options)
    for the forbidden rules, evaluated by the engine through the audit pipeline."""
    from auditlake.audit.pipeline import AuditPipeline, PipelineConfig
    from auditlake.detect.engine import RuleEngine

    result = AuditPipeline(PipelineConfig(), RuleEngine(forbidden_rules())).process(
        forbidden_events(count, **kwargs), cluster=cluster, source="webhook", ingested_at="2026-11-21T10:06:00.000000Z"
    )
    return list(result.matches)


class Pager:
    """An alert topic that records what it is sent, failing the first ``fail`` publishes; in the first
    ``die`` publishes the caller's process dies before SNS has the alert (tests.chaos.aws_faults.Killed:
    a Lambda timeout between the claim and the publish)."""

    def __init__(self, fail: int = 0, *, die: int = 0) -> None:
        self.sent: list[dict[str, Any]] = []
        self.fail, self.die = fail, die

    def __call__(self, alert: dict[str, Any]) -> None:
        if self.die:
            from tests.chaos.aws_faults import Killed

            self.die -= 1
            raise Killed("the Lambda timed out between the claim and the publish")
        if self.fail:
            self.fail -= 1
            raise ConnectionError("SNS unreachable")
        self.sent.append(alert)


# ---------------------------------------------------------------- a deployed stack's Outputs (moto)


def stack_with_outputs(outputs: dict[str, str], *, prefix: str = "auditlake") -> str:
    """A CloudFormation stack on moto holding only ``outputs`` (names of cli/stack.py), for the CLI's
    ``--stack`` lookups; returns its name. The one resource is a placeholder: moto wants one."""
    import uuid

    import boto3

    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    template = {"Resources": {"Placeholder": {"Type": "AWS::SNS::Topic"}},
                "Outputs": {key: {"Value": value} for key, value in outputs.items()}}  # fmt: skip
    boto3.client("cloudformation").create_stack(StackName=name, TemplateBody=json.dumps(template))
    return name


def raw_keys_of(store: Store, kind: str, cluster: str) -> list[str]:
    """One cluster's raw objects of one kind (raw keys are hour-first: ``raw/<kind>/<hour>/<cluster>/...``)."""
    from auditlake.landing import parse_raw_key, raw_prefix

    return [key for key in store.list(raw_prefix(kind)) if (raw := parse_raw_key(key)) and raw.cluster == cluster]


def scheduled_event(at: datetime) -> dict[str, Any]:
    """What an EventBridge schedule (template.yaml's Schedule events) invokes a function with."""
    return {"version": "0", "id": "e1", "detail-type": "Scheduled Event", "source": "aws.events",
            "time": at.strftime("%Y-%m-%dT%H:%M:%SZ"), "resources": [], "detail": {}}  # fmt: skip


class ManualClock:
    """Epoch seconds a test moves by hand (``clock.now += 60``): what the stores' ``clock=`` takes."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def sqs_event(bucket: str, keys: list[str]) -> dict[str, Any]:
    """An SQS batch of S3 ObjectCreated notifications (one message per key), as the compactor's event
    source mapping delivers it."""
    import copy
    import urllib.parse

    records = []
    for number, key in enumerate(keys):
        notification = fixture("s3_object_created.json")
        notification["Records"][0]["s3"]["bucket"]["name"] = bucket
        notification["Records"][0]["s3"]["object"]["key"] = urllib.parse.quote_plus(key, safe="/")
        message = copy.deepcopy(fixture("sqs_message.json"))
        message["messageId"], message["body"] = f"m{number}", json.dumps(notification)
        records.append(message)
    return {"Records": records}


def parse_sam_yaml(text: str) -> dict[str, Any]:
    """samcli.yamlhelper.yaml_parse (CloudFormation's short tags), without its side effect: it registers
    an OrderedDict mapping constructor, a ``!`` multi-constructor and timestamps-as-strings on PyYAML's
    global SafeLoader, after which every ``yaml.safe_load`` in the process returns OrderedDicts that
    ``yaml.safe_dump`` cannot write: product code that loads and dumps YAML then fails in the test run
    only. The loader's tables are put back."""
    import yaml
    from samcli.yamlhelper import yaml_parse

    saved = {
        (cls, name): dict(cls.__dict__[name]) if name in cls.__dict__ else None
        for cls in (yaml.SafeLoader, yaml.constructor.SafeConstructor)
        for name in ("yaml_constructors", "yaml_multi_constructors")
    }
    try:
        parsed: dict[str, Any] = yaml_parse(text)
        return parsed
    finally:
        for (cls, name), table in saved.items():
            if table is not None:
                setattr(cls, name, table)
            elif name in cls.__dict__:
                delattr(cls, name)
