"""``auditlake ingest`` on wrong or unusual input: gzip, the other kind, YAML Events, nothing accepted.
Each refusal is one ``error:`` line with the fix and a non-zero exit, never a traceback."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from auditlake.cli import main
from auditlake.landing import decode_lines
from auditlake.stores.local import LocalStore
from tests.helpers import ROOT, corpus_path

INPUT = ROOT / "tests" / "fixtures" / "input"
EVENTS_JSONL = "events/replicatedhq__troubleshoot__analyze_events__message-image-pull-fail.jsonl"
AUDIT_JSONL = "audit/panther-labs__panther-analysis__eks_k8s_rule_tests__complete_events.jsonl"


def run(*args: str) -> Any:
    return CliRunner(mix_stderr=False).invoke(main, list(args), catch_exceptions=False)


def landed(lake: Path, kind: str) -> int:
    store = LocalStore(lake)
    return sum(len(decode_lines(store.get(key))) for key in store.list(f"raw/{kind}/"))


def one_error(result: Any) -> str:
    assert result.exit_code != 0 and "Traceback" not in result.stderr + result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def test_a_gzip_audit_log_under_any_name(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    renamed = tmp_path / "audit.log.1"
    shutil.copy(INPUT / "audit-2026-11-30T06-24-00.000.log.gz", renamed)
    result = run("ingest", str(renamed), "--cluster", "lab", "--lake", str(lake))
    assert result.exit_code == 0, result.stderr
    assert "events 40, accepted 40, quarantined 0" in result.stderr and landed(lake, "audit") == 40


def test_events_given_as_audit_are_refused_before_anything_lands(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    events = corpus_path(EVENTS_JSONL)
    for path in (events, INPUT / "kubectl-get-events.yaml", INPUT / "kubectl-get-events.json"):
        result = run("ingest", str(path), "--cluster", "lab", "--lake", str(lake))
        assert one_error(result) == f"error: {path} looks like Kubernetes Events: use --kind events"
    gz = tmp_path / "events.jsonl.gz"
    gz.write_bytes(gzip.compress(events.read_bytes()))
    result = run("ingest", str(corpus_path(AUDIT_JSONL)), str(gz), "--cluster", "lab", "--lake", str(lake))
    assert one_error(result) == f"error: {gz} looks like Kubernetes Events: use --kind events"
    assert not (lake / "raw").exists()  # the audit file before it did not land either


def test_audit_events_given_as_events_are_refused(tmp_path: Path) -> None:
    audit = corpus_path(AUDIT_JSONL)
    result = run("ingest", str(audit), "--kind", "events", "--cluster", "lab", "--lake", str(tmp_path / "lake"))
    assert one_error(result) == (
        f"error: {audit} looks like Kubernetes audit events: drop --kind events (audit is the default)"
    )


def test_kubectl_get_events_yaml_is_read(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    path = INPUT / "kubectl-get-events.yaml"
    result = run("ingest", str(path), "--kind", "events", "--cluster", "kind-kind", "--lake", str(lake))
    assert result.exit_code == 0, result.stderr
    assert "ingested Events: events 4, accepted 4, quarantined 0" in result.stderr and landed(lake, "events") == 4


def test_events_failures_are_counted_once(tmp_path: Path) -> None:
    """The issue's file: 37 lines of Events that cannot be normalised said `events 74`."""
    lake, path = tmp_path / "lake", tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps({"kind": "Event", "apiVersion": "v1", "n": i}) + "\n" for i in range(37)))
    result = run("ingest", str(path), "--kind", "events", "--cluster", "kind-kind", "--lake", str(lake))
    assert "ingested Events: events 37, accepted 0, quarantined 37" in result.stderr
    assert one_error(result) == (
        f"error: nothing ingested: all 37 records of {path} were quarantined "
        f"(see why: auditlake quarantine list --lake {lake})"
    )


def test_nothing_accepted_exits_non_zero(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    junk = tmp_path / "junk.log"
    junk.write_text("this is not an audit log\nnor is this\n")
    result = run("ingest", str(junk), "--cluster", "lab", "--lake", str(lake))
    assert "quarantined 2" in result.stderr
    assert one_error(result) == (
        f"error: nothing ingested: all 2 records of {junk} were quarantined "
        f"(see why: auditlake quarantine list --lake {lake})"
    )
    empty = tmp_path / "empty.log"
    empty.write_text("\n")
    assert one_error(run("ingest", str(empty), "--cluster", "lab", "--lake", str(lake))) == (
        f"error: nothing ingested: {empty} holds no records "
        "(is it the right file? JSON Lines, JSON, YAML, gzip are read)"
    )
    # One good file among them is a success, which says where the rest went.
    good = corpus_path(AUDIT_JSONL)
    mixed = run("ingest", str(junk), str(good), "--cluster", "lab", "--lake", str(lake))
    assert mixed.exit_code == 0
    assert mixed.stderr.splitlines()[-1] == (
        f"5 records quarantined: see why with auditlake quarantine list --lake {lake}"
    )


def test_a_cut_gzip_lands_what_it_can_and_fails(tmp_path: Path) -> None:
    lake, cut = tmp_path / "lake", tmp_path / "audit.log.gz"
    whole = gzip.compress(corpus_path("audit/liggitt__audit2rbac__demo_v1beta1_original.jsonl").read_bytes())
    cut.write_bytes(whole[: len(whole) // 2])
    result = run("ingest", str(cut), "--cluster", "lab", "--lake", str(lake))
    assert one_error(result) == (
        "error: 1 file(s) ended early (a gzip file still being written? ingest it again once it is whole)"
    )
    assert f"warning: {cut}: gzip data is cut short or corrupt" in result.stderr and landed(lake, "audit") > 0


def test_a_pretty_printed_eventlist_needs_no_format_option(tmp_path: Path) -> None:
    lake, body = tmp_path / "lake", tmp_path / "body.json"
    events = [json.loads(line) for line in corpus_path(AUDIT_JSONL).read_text().splitlines() if line.strip()]
    body.write_text(json.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": events}, indent=2))
    result = run("ingest", str(body), "--cluster", "lab", "--lake", str(lake))
    assert result.exit_code == 0, result.stderr
    assert "events 20, accepted 17, quarantined 3" in result.stderr and landed(lake, "audit") == 17


def test_a_cut_gzip_document_is_one_line_too(tmp_path: Path) -> None:
    lake, cut = tmp_path / "lake", tmp_path / "body.json.gz"
    events = [json.loads(line) for line in corpus_path(AUDIT_JSONL).read_text().splitlines() if line.strip()]
    whole = gzip.compress(json.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": events}).encode())
    cut.write_bytes(whole[: len(whole) // 2])
    result = run("ingest", str(cut), "--format", "eventlist", "--cluster", "lab", "--lake", str(lake))
    assert one_error(result) == (
        "error: 1 file(s) ended early (a gzip file still being written? ingest it again once it is whole)"
    )

    events = tmp_path / "events.yaml.gz"
    packed = gzip.compress((INPUT / "kubectl-get-events.yaml").read_bytes())
    events.write_bytes(packed[: len(packed) // 2])
    result = run("ingest", str(events), "--kind", "events", "--cluster", "lab", "--lake", str(lake))
    assert one_error(result).startswith(f"error: {events}: gzip data is cut short or corrupt (")
    assert one_error(result).endswith("(is it still being written? ingest it again once it is whole)")
