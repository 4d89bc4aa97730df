"""Answers that explain themselves (issue 17), on a lake built from tests/fixtures/answers/: the named
queries users asked for (object_history with exec/attach logged at ResponseStarted and Events matched
by their kind's resource, secret_changes without a name, denials, who of a core/v1 Event), a query
with no rows saying its window and what the lake holds (locally and on Athena), a reversed window,
unknown parameters and SQL as one line, ``query --help`` listing the named queries, and ``summary``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner

from auditlake.audit.pipeline import AuditPipeline, PipelineConfig
from auditlake.cli import main
from auditlake.detect import ir
from auditlake.events.files import ingest_events
from auditlake.ingest.files import FileIngest
from auditlake.local_lake import LocalLake
from auditlake.query import hunt
from auditlake.query.named import AthenaEngine, LocalEngine
from tests.helpers import AwsStack

FIXTURES = Path(__file__).parent.parent / "fixtures" / "answers"
DAY = ["--param", "since=2019-03-10T00:00:00Z", "--param", "until=2019-03-11T00:00:00Z"]


def run(*args: str) -> Any:
    return CliRunner(mix_stderr=False).invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    local = LocalLake(tmp_path_factory.mktemp("answers") / "lake")
    FileIngest(AuditPipeline(PipelineConfig()), local.landing(), "fx").jsonl(FIXTURES / "audit.jsonl")
    for events in ("events.json", "events-k8s-io.jsonl"):
        ingest_events(FIXTURES / events, local.landing("events"), "fx")
    compacted = run("compact", "--lake", str(local.root))
    assert compacted.exit_code == 0, compacted.stderr
    yield str(local.root)


def rows(lake: str, name: str, *params: str) -> list[dict[str, Any]]:
    result = run("query", name, "--lake", lake, "--format", "json", *DAY, *params)
    assert result.exit_code == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


# ------------------------------------------------------------------ the named queries


def test_object_history_has_exec_logged_only_at_response_started(lake: str) -> None:
    history = rows(lake, "object_history", "--param", "resource=pods", "--param", "namespace=prod",
                   "--param", "name=web-0")  # fmt: skip
    audit = [(r["what"], r["who"], r["code"]) for r in history if r["source"] == "audit"]
    # the exec (only ResponseStarted), the patch, the attach once (two stages); the read is no change
    assert audit == [("create exec", "bob@example.com", 101), ("patch", "alice@example.com", 200),
                     ("get attach", "carol@example.com", 101)]  # fmt: skip
    events = [(r["what"], r["who"]) for r in history if r["source"] == "event"]
    assert events == [
        ('Pulled: Container image "nginx:1.25" already present on machine', "kubelet"),  # core/v1: source.component
        ("Scanned: image scanned: clean", "example.com/scanner"),  # events.k8s.io: reportingController
    ]


def test_object_history_matches_events_by_their_kinds_resource(lake: str) -> None:
    policy = rows(lake, "object_history", "--param", "resource=networkpolicies", "--param", "namespace=prod",
                  "--param", "name=deny-all")  # fmt: skip
    assert [(r["source"], r["what"], r["who"]) for r in policy] == [
        ("audit", "create", "alice@example.com"),
        ("event", "PolicyApplied: policy programmed on 3 nodes", "network-policy-agent"),
    ]  # the Service of the same name is another object
    endpoints = rows(lake, "object_history", "--param", "resource=endpoints", "--param", "namespace=prod",
                     "--param", "name=web")  # fmt: skip
    assert [r["source"] for r in endpoints] == ["audit", "event"]
    service = rows(lake, "object_history", "--param", "resource=services", "--param", "namespace=prod",
                   "--param", "name=deny-all")  # fmt: skip
    assert [r["what"] for r in service] == ["Synced: service synced"]


def test_secret_changes_without_a_name_lists_every_secret_write(lake: str) -> None:
    every = rows(lake, "secret_changes")
    assert [(r["verb"], r["namespace"], r["secret"], r["identity"], r["response_code"]) for r in every] == [
        ("create", "prod", "db-pass", "ci@example.com", 201),
        ("delete", "staging", "api-key", "mallory@example.com", 200),
        ("patch", "prod", "tls", "eve@example.com", 403),
    ]  # the read is not a write
    in_prod = rows(lake, "secret_changes", "--param", "namespace=prod")
    assert [r["secret"] for r in in_prod] == ["db-pass", "tls"]
    one = rows(lake, "secret_changes", "--param", "namespace=staging", "--param", "name=api-key")
    assert [r["verb"] for r in one] == ["delete"]


def test_denials(lake: str) -> None:
    denied = rows(lake, "denials")
    assert [(r["identity"], r["verb"], r["resource"], r["response_code"]) for r in denied] == [
        ("eve@example.com", "patch", "secrets", 403),
        ("eve@example.com", "list", "secrets", 403),  # one row for its two stages
        ("system:anonymous", "get", "/api/v1/nodes", 401),
    ]
    assert "cannot list resource" in denied[1]["reason"]
    assert [r["audit_id"] for r in rows(lake, "denials", "--param", "identity=system:anonymous")] == ["deny-2"]


def test_hunt_reads_a_core_v1_events_source_component_as_its_reporting_controller(lake: str) -> None:
    """As the ingest engine does (detect/engine.py): a core/v1 Event's source.component is its
    reportingController when it has none, so a hunt over history matches it and names it."""
    condition = ir.Leaf("reportingController", "glob", ("network-policy-agent",))
    rule = ir.Rule("e-1", "policy agent", "low", "events", condition)
    window = hunt.Window(datetime(2019, 3, 10, tzinfo=UTC), datetime(2019, 3, 11, tzinfo=UTC))
    outcome = hunt.run_hunt(hunt.compile_rule(rule, window), LocalEngine(Path(lake) / "archive"))
    assert outcome.error is None
    assert [(r["audit_id"], r["identity"], r["name"]) for r in outcome.rows] == [
        ("ev-np-1", "network-policy-agent", "deny-all")
    ]


# ------------------------------------------------------------------ no rows, explained


def test_no_rows_says_the_window_and_what_the_lake_holds(lake: str) -> None:
    result = run("query", "pod_exec", "--lake", lake, "--param", "since=2026-11-29T06:24:00Z",
                 "--param", "until=2026-11-30T06:24:00Z")  # fmt: skip
    assert result.exit_code == 0 and result.stdout == ""
    assert result.stderr.strip() == (
        "0 rows between 2026-11-29T06:24Z and 2026-11-30T06:24Z; this lake holds audit 2019-03-10..2019-03-10 "
        "(use --param since=2019-03-10 --param until=2019-03-11)"
    )
    # a query reading both data classes names both; csv keeps its header on stdout
    both = run("query", "node_membership", "--lake", lake, "--format", "csv", "--param", "since=2020-01-01T00:00:00Z")
    assert both.stdout.splitlines() == ["at,cluster,source,node,what,who"]
    assert "this lake holds audit 2019-03-10..2019-03-10, events 2019-03-10..2019-03-10" in both.stderr
    # inside the held days: no hint to move the window
    inside = run("query", "impersonation", "--lake", lake, *DAY)
    assert inside.stderr.strip() == (
        "0 rows between 2019-03-10T00:00Z and 2019-03-11T00:00Z; this lake holds audit 2019-03-10..2019-03-10"
    )


def test_no_rows_on_a_lake_with_nothing_compacted(tmp_path: Path) -> None:
    local = LocalLake(tmp_path / "lake")
    FileIngest(AuditPipeline(PipelineConfig()), local.landing(), "fx").jsonl(FIXTURES / "audit.jsonl")
    result = run("query", "pod_exec", "--lake", str(local.root), *DAY)
    assert result.exit_code == 0
    said = " ".join(result.stderr.split())
    assert (
        f"archive holds no audit yet; 1 raw objects are not compacted yet (auditlake compact --lake {local.root})"
        in said
    )


def test_a_reversed_window_is_an_error(lake: str) -> None:
    result = run("query", "pod_exec", "--lake", lake, "--param", "since=2019-03-11T00:00:00Z",
                 "--param", "until=2019-03-10T00:00:00Z")  # fmt: skip
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.strip() == (
        "error: since 2019-03-11T00:00:00.000Z is after until 2019-03-10T00:00:00.000Z "
        "(swap them, or give since=7d for the last 7 days)"
    )


def test_an_unknown_parameter_names_the_closest_and_all(lake: str) -> None:
    result = run("query", "secret_changes", "--lake", lake, "--param", "namespce=prod")
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "error: secret_changes has no parameter 'namespce' (did you mean namespace? it takes: name, namespace, "
        "since, until, cluster)"
    )


def test_sql_with_an_unknown_column_is_one_line_naming_describe(lake: str) -> None:
    result = run("query", "--sql", "SELECT usr FROM audit", "--lake", lake)
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ") and '"usr" not found' in line
    assert line.endswith("(see the columns: auditlake query --sql 'DESCRIBE audit', or events, findings)")
    described = run("query", "--sql", "DESCRIBE audit", "--lake", lake, "--format", "csv")
    assert "user_name,VARCHAR" in described.stdout
    syntax = run("query", "--sql", "SELEC 1", "--lake", lake)
    assert syntax.exit_code == 1 and len(syntax.stderr.splitlines()) == 1 and "Trino SQL" in syntax.stderr


def test_athena_no_rows_names_the_days_its_tables_hold(aws: AwsStack) -> None:
    """Deployed, what the lake holds is the tables' dt= prefixes (Glue says where, S3 lists them)."""
    glue = boto3.client("glue")
    database = f"answers_{aws.bucket.replace('-', '_')}"
    glue.create_database(DatabaseInput={"Name": database})
    for kind, days in {"audit": ["2017-09-11", "2020-04-21", "2019-01-01"], "events": []}.items():
        location = f"s3://{aws.bucket}/{kind}/"
        glue.create_table(DatabaseName=database, TableInput={"Name": kind, "StorageDescriptor": {"Location": location}})
        for day in days:
            aws.s3.put_object(Bucket=aws.bucket, Key=f"{kind}/dt={day}/hour=00/x.parquet", Body=b"x")
    engine = AthenaEngine(boto3.client("athena"), "wg", database, glue=glue, s3=aws.s3)
    assert engine.held() == {"audit": ("2017-09-11", "2020-04-21"), "events": None}
    assert AthenaEngine(boto3.client("athena"), "wg", "no_such_database", glue=glue, s3=aws.s3).held() is None


# ------------------------------------------------------------------ help and summary


def test_query_help_lists_each_named_query_with_its_parameters() -> None:
    text = " ".join(run("query", "--help").stdout.split())
    assert "forbidden_bursts [threshold=10] Identities denied (403)" in text
    assert "secret_changes [name='', namespace='']" in text and "object_history [resource, namespace, name]" in text
    assert "denials [identity='']" in text and "Examples:" in text
    assert "Every query also takes since and until" in text


def test_summary_tells_what_the_lake_holds(lake: str) -> None:
    result = run("summary", "--lake", lake, "--json")
    assert result.exit_code == 0, result.stderr
    held = json.loads(result.stdout)
    assert held["audit"]["archived_rows"] == 15 and held["audit"]["raw_rows_pending"] == 0
    assert held["audit"]["raw_objects"] == held["audit"]["raw_objects_archived"] == 1
    assert held["events"]["archived_rows"] == 5 and held["events"]["unsealed_files"] == held["events"]["archived_files"]
    assert held["audit"]["clusters"]["fx"] == {
        "archived": 15, "raw": 0, "first": "2019-03-10T10:00:00.000000Z", "last": "2019-03-10T13:10:00.000000Z"
    }  # fmt: skip
    table = run("summary", "--lake", lake)
    assert table.stdout.startswith("15 audit records, 5 Events, 0 findings\n")
    assert "2019-03-10" in table.stdout and "403 responses 2" in " ".join(table.stdout.split())
    assert held["audit_rows"]["forbidden_403"] == 2 and held["audit_rows"]["stages"]["ResponseStarted"] == 2


def test_summary_counts_quarantined_items_until_retried(tmp_path: Path) -> None:
    from auditlake.ingest.quarantine import marker_key

    local = LocalLake(tmp_path / "lake")
    broken = tmp_path / "audit.jsonl"
    broken.write_bytes((FIXTURES / "audit.jsonl").read_bytes() + b'{"kind": "Event", "cut here\n')
    FileIngest(AuditPipeline(PipelineConfig()), local.landing(), "fx").jsonl(broken)
    held = json.loads(run("summary", "--lake", str(local.root), "--json").stdout)
    assert (held["audit"]["quarantined_items"], held["audit"]["quarantined_retried"]) == (1, 0)
    assert held["audit"]["raw_rows_pending"] == 15 and held["audit"]["clusters"]["fx"]["raw"] == 15
    table = run("summary", "--lake", str(local.root)).stdout
    assert f"see them: auditlake quarantine list --lake {local.root}" in " ".join(table.split())
    (manifest,) = [key for key in local.store().list("quarantine/audit/") if key.endswith(".json")]
    local.store().put(marker_key(manifest), b"")  # what `auditlake quarantine retry` leaves once it landed them
    held = json.loads(run("summary", "--lake", str(local.root), "--json").stdout)
    assert (held["audit"]["quarantined_items"], held["audit"]["quarantined_retried"]) == (1 - 1, 1)


def test_summary_of_a_deployed_stack_from_listings(aws: AwsStack) -> None:
    """summary --stack: archive files, size and days per data class, raw objects, quarantine waiting
    and retried, digests, all from S3 listings (moto records no GetObject: nothing is read)."""
    suffix = aws.bucket.removeprefix("raw-")
    archives = {kind: f"{kind}-archive-{suffix}" for kind in ("audit", "events", "findings")}
    for bucket in archives.values():
        aws.s3.create_bucket(Bucket=bucket)
    for key, body in {
        "audit/dt=2026-11-01/hour=03/a.parquet": b"x" * 2048,
        "audit/dt=2026-11-20/hour=23/b.parquet": b"x" * 1024,
        "audit/dt=2026-11-20/hour=23/.tmp-c.parquet": b"x",  # not a partition's file
        "digests/0000000001.json": b"{}",
        "digests/0000000002.json": b"{}",
    }.items():
        aws.s3.put_object(Bucket=archives["audit"], Key=key, Body=body)
    aws.s3.put_object(Bucket=archives["events"], Key="events/dt=2026-11-19/hour=00/e.parquet", Body=b"e")
    hour = "2026/11/20/23/fx"
    for key in (f"raw/audit/{hour}/b1.ndjson.zst", f"quarantine/audit/{hour}/q1.json",
                f"quarantine/audit/{hour}/q2.json", f"quarantine/audit/{hour}/q2.retried"):  # fmt: skip
        aws.s3.put_object(Bucket=aws.bucket, Key=key, Body=b"{}")
    outputs = {"RawBucketName": aws.bucket, **{f"{kind.capitalize()}ArchiveBucketName": bucket
                                               for kind, bucket in archives.items()}}  # fmt: skip
    template = {"Resources": {"Placeholder": {"Type": "AWS::SNS::Topic"}},
                "Outputs": {k: {"Value": v} for k, v in outputs.items()}}  # fmt: skip
    stack = f"answers-{suffix}"
    boto3.client("cloudformation").create_stack(StackName=stack, TemplateBody=json.dumps(template))
    result = run("summary", "--stack", stack, "--json")
    assert result.exit_code == 0, result.stderr
    held = json.loads(result.stdout)
    assert held["audit"] == {"files": 2, "bytes": 3072, "first_day": "2026-11-01", "last_day": "2026-11-20",
                             "raw_objects": 1, "quarantined": 1, "retried": 1}  # fmt: skip
    assert (held["events"]["files"], held["events"]["first_day"], held["findings"]["files"]) == (1, "2026-11-19", 0)
    assert (held["digests"], held["newest_digest"]) == (2, "digests/0000000002.json")
    table = " ".join(run("summary", "--stack", stack).stdout.split())
    assert "3.0 KiB" in table and f"see them: auditlake quarantine list --stack {stack}" in table
    neither = run("summary")
    assert neither.exit_code != 0 and "give --lake DIR (or set AUDITLAKE_LAKE) or --stack NAME" in neither.stderr
