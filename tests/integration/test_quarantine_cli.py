"""``auditlake quarantine list|show|retry`` on a local lake and on a stack's raw bucket (moto server):
what was quarantined and why, shown redacted, and re-ingested after a fix exactly once."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from auditlake.cli import main
from auditlake.cli.quarantine import quarantine
from auditlake.ingest.intake import INTERNAL_ERROR
from auditlake.ingest.quarantine import RETRIED_SUFFIX
from auditlake.landing import Landing, decode_lines
from auditlake.model import SOURCE_WEBHOOK
from auditlake.stores import Store
from auditlake.stores.local import LocalStore
from tests.helpers import AwsStack, corpus_path, eventlist_body, forbidden_events, stack_with_outputs

AT = datetime(2026, 11, 30, 6, 24, tzinfo=UTC)
SECRET = "aHVudGVyMg=="  # base64 of a password: must never be printed
AUDIT_FILE = "audit/panther-labs__panther-analysis__eks_k8s_rule_tests__complete_events.jsonl"
EVENTS_FILE = "events/replicatedhq__troubleshoot__analyze_events__message-image-pull-fail.jsonl"


def run(*args: str) -> Any:
    return CliRunner(mix_stderr=False).invoke(main, list(args), catch_exceptions=False)


def q(*args: str) -> Any:
    return CliRunner(mix_stderr=False).invoke(quarantine, list(args), catch_exceptions=False)


def a_secret_that_fails() -> dict[str, Any]:
    return {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse", "auditID": "a-1",
            "stage": "ResponseComplete", "requestURI": "/api/v1/namespaces/prod/secrets", "verb": "create",
            "user": {"username": "alice"},
            "objectRef": {"resource": "secrets", "namespace": "prod", "name": "db", "apiVersion": "v1"},
            "requestObject": {"kind": "Secret", "data": {"password": SECRET}},
            "requestReceivedTimestamp": "not a time", "stageTimestamp": "2026-11-30T06:24:00.000000Z"}  # fmt: skip


def a_bug_kept_this(store: Store) -> tuple[int, int]:
    """What an earlier version's bug left: a webhook delivery quarantined whole as an internal error
    (its payload kept), and Events an older normaliser refused. Both go in with today's code."""
    events = forbidden_events(12, resource="pods")
    Landing(store).quarantine("prod", AT, "bug-1", source=SOURCE_WEBHOOK, reason=INTERNAL_ERROR,
                              payload=eventlist_body(events))  # fmt: skip
    from auditlake.landing import ItemFailure

    kube = [json.loads(line) for line in corpus_path(EVENTS_FILE).read_text().splitlines() if line.strip()][:5]
    failures = [ItemFailure(i, "involvedObject.kind missing (a bug since fixed)", item=e) for i, e in enumerate(kube)]
    Landing(store, "events").quarantine("prod", AT, "bug-2", source="poll", reason="5 of 5 Events", failures=failures)
    return len(events), len(kube)


def raw_objects(store: Store) -> dict[str, bytes]:
    return {key: store.get(key) for key in store.list("raw/") if not key.startswith("raw/findings/")}


def records(store: Store, kind: str) -> list[dict[str, Any]]:
    return [json.loads(line) for key in store.list(f"raw/{kind}/") for line in decode_lines(store.get(key))]


def ids(result: Any) -> dict[str, dict[str, Any]]:
    return {row["reason"]: row for row in map(json.loads, result.stdout.splitlines())}


def test_list_and_show_what_ingest_quarantined_redacted(tmp_path: Path) -> None:
    lake, log = tmp_path / "lake", tmp_path / "audit.log"
    good = corpus_path(AUDIT_FILE).read_text()
    log.write_text(good + json.dumps(a_secret_that_fails()) + "\n{cut short\n")
    assert run("ingest", str(log), "--cluster", "lab", "--lake", str(lake)).exit_code == 0
    listed = q("list", "--lake", str(lake), "--output", "json")
    assert listed.exit_code == 0, listed.stderr
    (row,) = ids(listed).values()
    assert (row["kind"], row["cluster"], row["source"], row["items"], row["state"]) == ("audit", "lab", "file", 5,
                                                                                          "pending")  # fmt: skip
    assert row["reason"] == "5 of 22 items could not be ingested" and row["size"] > 0 and len(row["id"]) == 12
    table = q("list", "--lake", str(lake))
    assert row["id"] in table.stdout and "pending" in table.stdout
    shown = q("show", row["id"][:6], "--lake", str(lake))
    assert shown.exit_code == 0, shown.stderr
    assert "requestReceivedTimestamp: not an RFC 3339 timestamp" in shown.stdout and "auditID=a-1" in shown.stdout
    assert "{cut short" in shown.stdout and "item 22: " in shown.stdout  # the line number of the cut line
    assert SECRET not in shown.stdout + shown.stderr + listed.stdout + table.stdout
    missing = q("show", "ffffffffffff", "--lake", str(lake))
    assert missing.exit_code == 1
    assert (
        missing.stderr.strip()
        == "error: no quarantine entry ffffffffffff (auditlake quarantine list --all shows the ids)"
    )


def test_a_payload_kept_unchanged_is_named_never_printed(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    body = json.dumps({"kind": "NotAnEventList", "password": SECRET}).encode()
    Landing(store).quarantine("prod", AT, "b-1", source=SOURCE_WEBHOOK, reason="expected kind EventList", payload=body)
    shown = q("show", q("list", "--lake", str(tmp_path), "--output", "csv").stdout.splitlines()[1][:12],
              "--lake", str(tmp_path))  # fmt: skip
    assert f"({len(body)} bytes, kept unchanged: not shown)" in shown.stdout and SECRET not in shown.stdout


def test_retry_lands_once_after_a_fix(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    audit_count, events_count = a_bug_kept_this(store)
    junk = tmp_path / "junk.log"
    junk.write_text("not json\n")
    run("ingest", str(junk), "--cluster", "lab", "--lake", str(tmp_path))  # a pending entry that still fails
    first = q("retry", "--all", "--lake", str(tmp_path))
    assert first.exit_code == 0, first.stderr
    assert "retried: entries 3, landed 2, already retried 0, still failing 1, not retryable 0, " \
           f"records accepted {audit_count + events_count}, still quarantined 0" in first.stderr  # fmt: skip
    assert len(records(store, "audit")) == audit_count and len(records(store, "events")) == events_count
    assert {r["cluster"] for r in records(store, "audit") + records(store, "events")} == {"prod"}
    after_first = raw_objects(store)
    # Retrying again lands nothing: the entries are marked.
    second = q("retry", "--all", "--lake", str(tmp_path))
    assert "landed 0" in second.stderr and raw_objects(store) == after_first
    listed = q("list", "--all", "--lake", str(tmp_path), "--output", "json").stdout
    assert sorted(row["state"].split(" ")[0] for row in ids(q("list", "--all", "--lake", str(tmp_path),
                                                                "--output", "json")).values()) == [
        "pending", "retried", "retried"]  # fmt: skip
    by_id = [row["id"] for row in map(json.loads, listed.splitlines()) if row["state"] != "pending"]
    again = q("retry", *by_id, "--lake", str(tmp_path))
    assert "already retried 2" in again.stderr and again.exit_code == 0
    # A retry stopped after landing, before its mark: run again, it lands on the same raw keys (no copy).
    for marker in [k for k in store.list("quarantine/") if k.endswith(RETRIED_SUFFIX)]:
        (tmp_path / marker).unlink()
    q("retry", "--all", "--lake", str(tmp_path))
    assert raw_objects(store).keys() == after_first.keys()  # rewritten in place (ingested_at is the retry's)
    assert len(records(store, "audit")) == audit_count and len(records(store, "events")) == events_count


def test_retry_that_still_fails_stays_pending_and_says_so(tmp_path: Path) -> None:
    lake, junk = tmp_path / "lake", tmp_path / "junk.log"
    junk.write_text("not json\n")
    run("ingest", str(junk), "--cluster", "lab", "--lake", str(lake))
    result = q("retry", "--all", "--lake", str(lake))
    assert result.exit_code == 1 and "still failing:" in result.stderr
    assert result.stderr.splitlines()[-1] == (
        "error: nothing retried: every entry still fails or cannot be retried (see the lines above)"
    )
    assert json.loads(q("list", "--lake", str(lake), "--output", "json").stdout)["state"] == "pending"
    assert q("retry", "--lake", str(lake)).exit_code == 2  # neither IDs nor --all: a usage error


def test_a_stacks_quarantine_on_s3(aws: AwsStack, tmp_path: Path) -> None:
    from auditlake.cli.stack import RAW_BUCKET
    from auditlake.stores.s3 import S3Store

    store = S3Store(aws.s3, aws.bucket)
    audit_count, events_count = a_bug_kept_this(store)
    stack = stack_with_outputs({RAW_BUCKET: aws.bucket})
    listed = q("list", "--stack", stack, "--output", "json")
    assert listed.exit_code == 0, listed.stderr
    rows = {row["kind"]: row for row in map(json.loads, listed.stdout.splitlines())}
    assert sorted(rows) == ["audit", "events"]
    shown = q("show", rows["events"]["id"], "--stack", stack)
    assert shown.exit_code == 0 and "involvedObject.kind missing (a bug since fixed)" in shown.stdout
    assert "payload:     quarantine/audit/prod/" in q("show", rows["audit"]["id"], "--stack", stack).stdout
    first = q("retry", "--all", "--stack", stack)
    assert first.exit_code == 0, first.stderr
    assert f"landed 2, already retried 0, still failing 0, not retryable 0, records accepted " \
           f"{audit_count + events_count}" in first.stderr  # fmt: skip
    landed = raw_objects(store)
    assert len(records(store, "audit")) == audit_count and len(records(store, "events")) == events_count
    second = q("retry", "--all", "--stack", stack)
    assert second.exit_code == 0 and raw_objects(store) == landed
    assert q("list", "--stack", stack).stderr.startswith("nothing pending in the quarantine")
    assert q("list", "--stack", stack, "--lake", str(tmp_path)).exit_code != 0  # one of them, not both


def test_a_retry_repeated_after_a_lost_mark_archives_each_record_once(tmp_path: Path) -> None:
    """The worst case: the mark is lost after the records landed and were archived, and the entry is
    retried again (perhaps in another hour, under another raw key): the archive still holds each once."""
    import pyarrow.dataset as ds

    store = LocalStore(tmp_path)
    audit_count, events_count = a_bug_kept_this(store)

    def archived(kind: str) -> int:
        folder = tmp_path / "archive" / kind
        return ds.dataset(folder, format="parquet", partitioning="hive").count_rows() if folder.exists() else 0

    assert q("retry", "--all", "--lake", str(tmp_path)).exit_code == 0
    assert run("compact", "--lake", str(tmp_path)).exit_code == 0
    assert (archived("audit"), archived("events")) == (audit_count, events_count)
    for marker in [k for k in store.list("quarantine/") if k.endswith(RETRIED_SUFFIX)]:
        (tmp_path / marker).unlink()
    # Retried again two hours later: the batch lands under another raw key, in another landing hour.
    from auditlake.audit.pipeline import AuditPipeline, PipelineConfig
    from auditlake.events.files import events_reingest
    from auditlake.ingest.quarantine import audit_reingest, entries, retry

    before = set(store.list("raw/"))
    later = datetime.now(UTC) + timedelta(hours=2)
    reingest = {"audit": audit_reingest(AuditPipeline(PipelineConfig())), "events": events_reingest()}
    outcomes = [retry(store, entry, reingest, clock=lambda: later) for entry in entries(store)]
    assert [o.state for o in outcomes] == ["landed", "landed"]
    assert len(set(store.list("raw/")) - before) == 2  # two new raw objects holding the same records
    compacted = run("compact", "--lake", str(tmp_path))
    assert compacted.exit_code == 0  # it read both again and archived nothing new:
    assert f"rows read {audit_count + events_count}, rows archived 0" in compacted.stderr
    assert (archived("audit"), archived("events")) == (audit_count, events_count)


def test_what_cannot_be_retried_says_why(tmp_path: Path) -> None:
    from auditlake.landing import UNROUTED

    store = LocalStore(tmp_path)
    Landing(store).quarantine(UNROUTED, AT, "b-unrouted", source="cloudwatch", reason="not an EKS cluster's log group",
                              payload=eventlist_body(forbidden_events(2)))  # fmt: skip
    result = q("retry", "--all", "--lake", str(tmp_path))
    assert "not retryable: no cluster to land it in (_unrouted): ingest it with --cluster" in result.stderr
    assert result.exit_code == 1 and not list(store.list("raw/audit/"))
