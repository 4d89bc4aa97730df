"""The `auditlake` CLI: cluster registration on AWS (moto server), ingest, policy tools, synth."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from auditlake.cli import main
from auditlake.clusters.registry import DynamoRegistry, token_hash
from auditlake.clusters.webhook_kubeconfig import asset
from auditlake.landing import decode_lines, raw_prefix
from auditlake.stores.local import LocalStore
from tests.helpers import (
    AUDIT_STREAM,
    AwsStack,
    as_row,
    awslogs_event,
    complete_events,
    corpus_path,
    eks_messages,
    forbidden_events,
    landed,
    subscription_document,
)


def run(*args: str) -> Any:
    return CliRunner(mix_stderr=False).invoke(main, list(args), catch_exceptions=False)


def records(lake: Path) -> list[dict[str, Any]]:
    store = LocalStore(lake)
    return [as_row(line) for key in store.list(raw_prefix("audit")) for line in decode_lines(store.get(key))]


def manifests(lake: Path) -> list[dict[str, Any]]:
    store = LocalStore(lake)
    return [json.loads(store.get(k)) for k in store.list("quarantine/") if k.endswith(".json")]


# ---------------------------------------------------------------- cluster add


def test_cluster_add_on_a_table_stores_only_the_hash(aws: AwsStack) -> None:
    result = run("cluster", "add", "prod-eu", "--table", aws.table, "--url", "https://hook.example/v1/audit")
    assert result.exit_code == 0, result.output
    kubeconfig = yaml.safe_load(result.stdout)
    token = kubeconfig["users"][0]["user"]["token"]
    assert (
        token.startswith("alk_") and kubeconfig["clusters"][0]["cluster"]["server"] == "https://hook.example/v1/audit"
    )
    assert "--audit-webhook-truncate-enabled=true" in result.stderr
    registry = DynamoRegistry(aws.dynamodb, aws.table)
    assert registry.cluster_for(token_hash(token)) == "prod-eu"
    assert token not in json.dumps(aws.dynamodb.scan(TableName=aws.table)["Items"])
    again = run("cluster", "add", "prod-eu", "--table", aws.table, "--url", "https://hook.example/v1/audit")
    assert again.exit_code == 1 and "already registered" in again.stderr


def test_cluster_add_from_stack_outputs(aws: AwsStack, tmp_path: Path) -> None:
    import boto3

    template = {
        "Resources": {"Placeholder": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {
            "StateTableName": {"Value": aws.table},
            "WebhookUrl": {"Value": "https://abc.execute-api.us-east-1.amazonaws.com/v1/audit"},
        },
    }
    boto3.client("cloudformation").create_stack(StackName="auditlake-test", TemplateBody=json.dumps(template))
    out = tmp_path / "hook.kubeconfig"
    result = run("cluster", "add", "edge", "--stack", "auditlake-test", "--kubeconfig-out", str(out))
    assert result.exit_code == 0, result.output
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    assert "abc.execute-api" in out.read_text() and result.stdout == ""


def test_cluster_add_refuses_bad_names_and_ambiguous_targets(tmp_path: Path) -> None:
    assert run("cluster", "add", "Prod_EU", "--lake", str(tmp_path)).exit_code == 2
    assert run("cluster", "add", "a", "--lake", str(tmp_path), "--table", "t").exit_code == 2


def test_cluster_add_for_a_local_lake(tmp_path: Path) -> None:
    result = run("cluster", "add", "kind", "--lake", str(tmp_path))
    assert result.exit_code == 0
    token_file = tmp_path / "tokens" / "kind.token"
    assert oct(token_file.stat().st_mode & 0o777) == "0o600"
    assert yaml.safe_load(result.stdout)["users"][0]["user"]["token"] == token_file.read_text().strip()
    assert run("cluster", "add", "kind", "--lake", str(tmp_path)).exit_code == 1


# ---------------------------------------------------------------- ingest


def test_ingest_jsonl_files(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    files = [
        corpus_path("audit/liggitt__audit2rbac__demo_v1beta1_original.jsonl"),
        corpus_path("audit/kubernetes__kubernetes__pr110112_panic_legacy_format.log"),
        corpus_path("audit/panther-labs__panther-analysis__eks_k8s_rule_tests__partial_events.jsonl"),
    ]
    result = run("ingest", *map(str, files), "--cluster", "lab", "--lake", str(lake))
    assert result.exit_code == 0, result.output
    assert len(records(lake)) == 757
    items = [item for manifest in manifests(lake) for item in manifest["items"]]
    assert len(items) == 1 + 168
    (legacy,) = [item for item in items if "line" in item]
    # A line that is not JSON is kept byte for byte, with its line number and a hint.
    assert legacy["line"] == corpus_path(files[1].relative_to(corpus_path("."))).read_text().strip()
    assert legacy["index"] == 1 and "legacy text audit format" in legacy["reason"]
    # Ingesting the same files again rewrites the same objects.
    before = sorted(LocalStore(lake).list(""))
    run("ingest", *map(str, files), "--cluster", "lab", "--lake", str(lake))
    assert sorted(LocalStore(lake).list("")) == before


def test_ingest_eventlist_files(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    listing = tmp_path / "list.json"
    events = complete_events("audit/falcosecurity__falco__trace_files_k8s_audit.jsonl")
    listing.write_text(json.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": events}))
    malformed = corpus_path("audit/falcosecurity__falco__malformed_fal_01_003.json")
    result = run(
        "ingest", str(listing), str(malformed), "--format", "eventlist", "--cluster", "lab", "--lake", str(lake)
    )
    assert result.exit_code == 0, result.output
    assert len(records(lake)) == 51
    store = LocalStore(lake)
    # It parses, so it is kept as a redacted item, never as bytes (nothing in it to redact here).
    assert [k for k in store.list("quarantine/") if k.endswith(".body")] == []
    manifests = [json.loads(store.get(k)) for k in store.list("quarantine/") if k.endswith(".json")]
    assert [item["item"] for m in manifests for item in m["items"]] == [json.loads(malformed.read_bytes())]


def test_ingest_applies_the_pipeline_policy(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(asset("audit-policy.yaml"))
    lake = tmp_path / "lake"
    log = corpus_path("audit/liggitt__audit2rbac__demo_v1beta1_original.jsonl")
    result = run("ingest", str(log), "--cluster", "lab", "--lake", str(lake), "--policy", str(policy))
    assert result.exit_code == 0
    landed = records(lake)
    assert landed and not [r for r in landed if r["stage"] == "RequestReceived"]
    assert "filtered 320" in result.stderr


# ---------------------------------------------------------------- policy tools


def test_policy_eval_reports_level_and_omission_per_event(tmp_path: Path) -> None:
    result = run(
        "policy",
        "eval",
        "--policy",
        str(corpus_path("policy/liggitt-audit2rbac__demo-policy.yaml")),
        "--events",
        str(corpus_path("audit/liggitt__audit2rbac__demo_v1beta1_original.jsonl")),
    )
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 757
    assert {(line["level"], line["omitted"]) for line in lines if line["stage"] == "RequestReceived"} == {
        ("Metadata", True)
    }
    assert {(line["level"], line["omitted"]) for line in lines if line["stage"] == "ResponseComplete"} == {
        ("Metadata", False)
    }


@pytest.mark.parametrize(
    ("name", "args", "code", "text"),
    [
        ("kubernetes-website__audit-policy.yaml", [], 0, "logs Request bodies of configmaps"),
        ("kubernetes-website__audit-policy.yaml", ["--strict"], 1, "warning"),
        ("kubernetes-gce__configure-helper__audit-policy.heredoc.yaml", [], 1, "must be a list"),
        ("openshift-library-go__base-policy.yaml", ["--strict"], 0, "no findings"),
    ],
)
def test_policy_lint_exit_codes(name: str, args: list[str], code: int, text: str) -> None:
    result = run("policy", "lint", str(corpus_path(f"policy/{name}")), *args)
    assert result.exit_code == code and text in result.stderr


def test_synth_then_summary(tmp_path: Path) -> None:
    out = tmp_path / "synth.jsonl"
    assert (
        run(
            "synth", "--minutes", "1", "--rate", "20", "--seed", "1", "--start", "2026-11-01T00:00", "--out", str(out)
        ).exit_code
        == 0
    )
    lines = out.read_text().splitlines()
    assert 1100 < len(lines) < 1300 and json.loads(lines[0])["requestReceivedTimestamp"].startswith("2026-11-01T00:00")
    lake = tmp_path / "lake"
    run("ingest", str(out), "--cluster", "synthetic", "--lake", str(lake))
    summary = run("summary", "--lake", str(lake))
    assert f"{len(lines)} audit records" in summary.stdout and "synthetic" in summary.stdout


# ---------------------------------------------------------------- EKS: saved payloads and backfill


def test_ingest_cloudwatch_payloads_takes_the_cluster_from_the_log_group(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    real = corpus_path("eks-cloudwatch/aws__aws-lambda-go__events_testdata__cloudwatch-logs-event.json")
    saved = tmp_path / "payloads.jsonl"
    documents = [subscription_document(eks_messages(), log_group="/aws/eks/Prod_EU/cluster")]
    saved.write_text("\n".join(json.dumps(awslogs_event(d)) for d in documents) + "\n")
    result = run("ingest", str(real), str(saved), "--format", "cloudwatch", "--lake", str(lake))
    assert result.exit_code == 0, result.output
    assert "accepted 5" in result.stderr and "quarantined 1" in result.stderr
    assert {r["cluster"] for r in records(lake)} == {"prod-eu"}
    (refused,) = manifests(lake)
    assert refused["cluster"] == "_unrouted" and "testLogGroup" in refused["reason"]
    wrong = run("ingest", str(saved), "--format", "cloudwatch", "--cluster", "x", "--lake", str(lake))
    assert wrong.exit_code == 2 and "log group" in wrong.stderr
    assert run("ingest", str(saved), "--lake", str(lake)).exit_code == 2  # other formats need --cluster


def put_history(eks: str, messages: list[str], start_ms: int) -> None:
    import boto3

    logs = boto3.client("logs")
    group = f"/aws/eks/{eks}/cluster"
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName=AUDIT_STREAM)
    events = [{"timestamp": start_ms + i * 60_000, "message": m} for i, m in enumerate(messages)]
    logs.put_log_events(logGroupName=group, logStreamName=AUDIT_STREAM, logEvents=events)


def test_backfill_into_a_lake_resumes_an_unfinished_run(aws: AwsStack, tmp_path: Path) -> None:
    from auditlake.ingest.checkpoints import LocalCheckpoints

    eks = f"Lab_{uuid.uuid4().hex[:6]}"
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    start_ms = int(start.timestamp() * 1000)
    put_history(eks, eks_messages(), start_ms)
    lake = tmp_path / "lake"
    # An earlier run stopped after its first page, three events in.
    LocalCheckpoints(lake / "checkpoints").save(
        f"backfill/{eks}",
        {"eks_cluster": eks, "start_ms": start_ms, "end_ms": start_ms + 3_600_000, "cursor_ms": start_ms + 180_000,
         "pages": 1, "totals": {"events": 3, "accepted": 3}},
        0,
    )  # fmt: skip
    result = run("backfill", "--eks-cluster", eks, "--since", "7d", "--lake", str(lake))
    assert result.exit_code == 0, result.output
    assert "resuming the unfinished backfill" in result.stderr
    assert {r["audit_id"][:8] for r in records(lake)} == {"e8a2d4f1", "2f6b9c1d"}  # only what was left
    assert "events 5" in result.stderr  # the total carried over from the checkpoint
    assert {r["cluster"] for r in records(lake)} == {eks.lower().replace("_", "-")}
    again = run("backfill", "--eks-cluster", eks, "--since", start.isoformat(), "--lake", str(lake))
    assert again.exit_code == 0 and "resuming" not in again.stderr and "events 5" in again.stderr
    missing = run("backfill", "--eks-cluster", "nope", "--since", "1d", "--lake", str(lake))
    assert missing.exit_code == 1 and "/aws/eks/nope/cluster not found" in missing.stderr
    assert run("backfill", "--eks-cluster", "bad name", "--since", "1d", "--lake", str(lake)).exit_code == 2


def test_backfill_with_a_stack_uses_the_deployed_forwarders_settings(aws: AwsStack) -> None:
    """The stack's raw bucket and state table, and its forwarder's own policy: backfilled events are
    filtered exactly like live ones."""
    import boto3

    eks = f"prod-{uuid.uuid4().hex[:6]}"
    start = datetime.now(UTC) - timedelta(hours=1)
    put_history(eks, eks_messages(), int(start.timestamp() * 1000))
    policy = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: None\n  verbs: [patch]\n- level: Metadata\n"
    aws.ssm.put_parameter(Name=f"/{eks}/policy", Value=policy, Type="String")
    role = boto3.client("iam").create_role(RoleName=f"r-{eks}", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    function = boto3.client("lambda").create_function(
        FunctionName=f"fwd-{eks}", Runtime="python3.13", Role=role, Handler="app.lambda_handler",
        Code={"ZipFile": b"PK\x05\x06" + b"\0" * 18},
        Environment={"Variables": {"AUDITLAKE_RAW_BUCKET": aws.bucket, "AUDITLAKE_POLICY_PARAMETER": f"/{eks}/policy"}},
    )["FunctionName"]  # fmt: skip
    template = {
        "Resources": {"Placeholder": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {"StateTableName": {"Value": aws.table}, "CloudWatchFunctionName": {"Value": function}},
    }
    boto3.client("cloudformation").create_stack(StackName=f"s-{eks}", TemplateBody=json.dumps(template))
    result = run("backfill", "--eks-cluster", eks, "--since", "2h", "--stack", f"s-{eks}")
    assert result.exit_code == 0, result.output
    assert "accepted 4" in result.stderr and "filtered 1" in result.stderr
    rows = list(landed(aws))
    assert len(rows) == 4 and all(r["level"] == "Metadata" for r in rows)
    state = aws.dynamodb.get_item(
        TableName=aws.table, Key={"pk": {"S": f"CHECKPOINT#backfill/{eks}"}, "sk": {"S": "CHECKPOINT"}}
    )
    assert json.loads(state["Item"]["state"]["S"])["done"] is True
    refused = run("backfill", "--eks-cluster", eks, "--since", "2h", "--stack", f"s-{eks}", "--keep-configmaps")
    assert refused.exit_code == 2 and "policy, redaction and rules apply" in refused.stderr


def test_ingest_reports_403_bursts(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    log.write_text("".join(json.dumps(e) + "\n" for e in forbidden_events(4, resource="secrets")
                           + forbidden_events(9, resource="pods", first=10)))  # fmt: skip
    lake = tmp_path / "lake"
    result = run("ingest", str(log), "--cluster", "c1", "--lake", str(lake), "--secrets-alert-threshold", "3")
    assert result.exit_code == 0, result.stderr
    assert "alerts 2" in result.stderr  # 13 denials >= 10, and 4 on secrets >= 3
    assert result.stderr.count("ALERT") == 2
    lines = (lake / "alerts" / "2026-11-21.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["rule"] for line in lines) == ["forbidden", "forbidden-secrets"]


def test_last_weeks_log_reports_its_burst_once(tmp_path: Path) -> None:
    """The forensic case: a burst of 34 denials a week ago pages when the log is ingested today,
    and ingesting the same log again reports nothing new."""
    week_ago = (datetime.now(UTC) - timedelta(days=7)).replace(microsecond=0)
    log = tmp_path / "audit.log"
    log.write_text("".join(json.dumps(e) + "\n" for e in forbidden_events(34, start=week_ago, every=1.5)))
    lake = tmp_path / "lake"
    first = run("ingest", str(log), "--cluster", "c1", "--lake", str(lake))
    assert first.exit_code == 0, first.stderr
    assert "alerts 1" in first.stderr and first.stderr.count("ALERT") == 1
    [alert] = [json.loads(line) for line in (lake / "alerts" / f"{week_ago:%Y-%m-%d}.jsonl").read_text().splitlines()]
    assert (alert["count"], alert["window_start"]) == (34, f"{week_ago:%Y-%m-%dT%H:%M:%SZ}")
    again = run("ingest", str(log), "--cluster", "c1", "--lake", str(lake))
    assert "alerts 0" in again.stderr and "ALERT" not in again.stderr


def test_token_rotation_keeps_the_cluster_connected(aws: AwsStack) -> None:
    hook = ("--table", aws.table, "--url", "https://hook.example/v1/audit")
    first = yaml.safe_load(run("cluster", "add", "prod", *hook).stdout)["users"][0]["user"]["token"]
    rotated = run("cluster", "rotate-token", "prod", *hook)
    assert rotated.exit_code == 0, rotated.stderr
    second = yaml.safe_load(rotated.stdout)["users"][0]["user"]["token"]
    assert f"revoke-token prod {token_hash(first)} --table {aws.table}" in rotated.stderr
    registry = DynamoRegistry(aws.dynamodb, aws.table)
    assert registry.cluster_for(token_hash(first)) == registry.cluster_for(token_hash(second)) == "prod"
    revoked = run("cluster", "revoke-token", "prod", token_hash(first), "--table", aws.table)
    assert revoked.exit_code == 0, revoked.stderr
    fresh = DynamoRegistry(aws.dynamodb, aws.table)  # no cache
    assert fresh.cluster_for(token_hash(first)) is None and fresh.cluster_for(token_hash(second)) == "prod"
    last = run("cluster", "revoke-token", "prod", token_hash(second), "--table", aws.table)
    assert last.exit_code == 1 and "only token" in last.stderr
    assert run("cluster", "rotate-token", "nope", *hook).exit_code == 1
