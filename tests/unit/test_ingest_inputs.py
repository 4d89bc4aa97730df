"""Input files as users hand them over: gzip by magic bytes, the kind told by the first records,
``kubectl get events -o yaml``, and Events counted once each."""

from __future__ import annotations

import gzip
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from auditlake.audit.pipeline import AuditPipeline, PipelineConfig
from auditlake.events.files import ingest_events
from auditlake.ingest.files import CutInput, FileIngest
from auditlake.ingest.inputs import AUDIT, EVENTS, InputError, read_input, sniff_kind, yaml_document
from auditlake.landing import Landing, decode_lines
from auditlake.stores.local import LocalStore
from tests.helpers import ROOT, corpus_path

INPUT = ROOT / "tests" / "fixtures" / "input"
AUDIT_GZ = INPUT / "audit-2026-11-30T06-24-00.000.log.gz"
EVENTS_YAML = INPUT / "kubectl-get-events.yaml"
EVENTS_JSON = INPUT / "kubectl-get-events.json"
AT = datetime(2026, 11, 30, 6, 24, tzinfo=UTC)


def lines_of(store: LocalStore, kind: str) -> list[dict[str, object]]:
    return [json.loads(line) for key in store.list(f"raw/{kind}/") for line in decode_lines(store.get(key))]


def test_gzip_is_told_by_its_magic_bytes_not_its_name(tmp_path: Path) -> None:
    plain = gzip.decompress(AUDIT_GZ.read_bytes())
    renamed = tmp_path / "audit.log"  # no .gz: logrotate's and kube-apiserver's names vary
    shutil.copy(AUDIT_GZ, renamed)
    assert read_input(renamed) == plain and read_input(AUDIT_GZ) == plain
    named_gz = tmp_path / "not-really.gz"
    named_gz.write_bytes(plain)  # a .gz name on plain text is read as plain text
    assert read_input(named_gz) == plain


def test_a_gzip_audit_log_lands_as_the_plain_one_does(tmp_path: Path) -> None:
    plain = tmp_path / "plain.log"
    plain.write_bytes(gzip.decompress(AUDIT_GZ.read_bytes()))
    stores = []
    for name, path in (("gz", AUDIT_GZ), ("plain", plain)):
        store = LocalStore(tmp_path / name)
        stats = FileIngest(AuditPipeline(PipelineConfig()), Landing(store), "lab", clock=lambda: AT).jsonl(path)
        assert (stats.events, stats.accepted, stats.quarantined) == (40, 40, 0)
        stores.append(store)
    assert lines_of(stores[0], "audit") == lines_of(stores[1], "audit")


def test_a_cut_gzip_lands_what_came_before_and_says_so(tmp_path: Path) -> None:
    whole = gzip.compress(corpus_path("audit/liggitt__audit2rbac__demo_v1beta1_original.jsonl").read_bytes())
    cut = tmp_path / "audit.log.gz"
    cut.write_bytes(whole[: len(whole) // 2])  # a backup still being written
    store = LocalStore(tmp_path / "lake")
    with pytest.raises(CutInput, match="gzip data is cut short") as caught:
        FileIngest(AuditPipeline(PipelineConfig()), Landing(store), "lab", clock=lambda: AT).jsonl(cut)
    landed = lines_of(store, "audit")
    assert 0 < caught.value.stats.accepted == len(landed) < 757


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        (AUDIT_GZ, AUDIT),
        (corpus_path("audit/panther-labs__panther-analysis__eks_k8s_rule_tests__complete_events.jsonl"), AUDIT),
        (corpus_path("events/replicatedhq__troubleshoot__analyze_events__message-image-pull-fail.jsonl"), EVENTS),
        (corpus_path("events/kubernetes__api__testdata_HEAD__events.k8s.io.v1.Event.json"), EVENTS),
        (EVENTS_YAML, EVENTS),
        (EVENTS_JSON, EVENTS),
    ],
    ids=lambda value: value.name if isinstance(value, Path) else value,
)
def test_the_kind_is_told_by_the_first_records(path: Path, kind: str) -> None:
    assert sniff_kind(path) == kind


def test_a_saved_audit_eventlist_and_undecided_files(tmp_path: Path) -> None:
    body = tmp_path / "body.json"
    body.write_text(json.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": []}, indent=2))
    assert sniff_kind(body) == AUDIT
    junk = tmp_path / "junk.log"
    junk.write_text("not json\nat all\n")
    assert sniff_kind(junk) is None  # nothing to tell by: ingest proceeds and quarantines with reasons
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    assert sniff_kind(empty) is None


def test_yaml_keeps_timestamps_as_strings() -> None:
    document = yaml_document(EVENTS_YAML.read_bytes())
    assert document["kind"] == "List" and len(document["items"]) == 4
    assert document["items"][1]["lastTimestamp"] == "2023-07-11T05:36:11Z"  # unquoted in the file
    with pytest.raises(InputError, match="not JSON, JSON Lines or YAML at line 1"):
        yaml_document(b"a: [unclosed")


@pytest.mark.parametrize("path", [EVENTS_YAML, EVENTS_JSON], ids=["yaml", "json"])
def test_kubectl_get_events_yaml_and_json_land_alike(tmp_path: Path, path: Path) -> None:
    store = LocalStore(tmp_path)
    stats = ingest_events(path, Landing(store, "events"), "kind-kind", clock=lambda: AT)
    assert (stats.events, stats.accepted, stats.quarantined) == (4, 4, 0)
    records = lines_of(store, "events")
    assert sorted(str(r["reason"]) for r in records) == ["Failed", "Failed", "Pulling", "Scheduled"]
    (pulling,) = [r for r in records if r["reason"] == "Pulling"]
    assert pulling["last_timestamp"] == "2023-07-11T05:36:11.000000Z"  # unquoted in the YAML: still read


def test_events_that_fail_are_counted_once(tmp_path: Path) -> None:
    """37 lines, every one refused: 37 events and 37 quarantined (it said events 74)."""
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps({"kind": "Event", "apiVersion": "v1", "n": i}) + "\n" for i in range(36))
                      + "{not json\n")  # fmt: skip
    store = LocalStore(tmp_path / "lake")
    stats = ingest_events(events, Landing(store, "events"), "kind-kind", clock=lambda: AT)
    assert (stats.events, stats.accepted, stats.quarantined) == (37, 0, 37)
    mixed = tmp_path / "mixed.jsonl"
    good = corpus_path("events/replicatedhq__troubleshoot__analyze_events__message-image-pull-fail.jsonl")
    mixed.write_bytes(good.read_bytes() + b'{"kind": "Event", "apiVersion": "v1"}\n')
    stats = ingest_events(mixed, Landing(store, "events"), "kind-kind", clock=lambda: AT)
    assert (stats.events, stats.accepted, stats.quarantined) == (18, 17, 1)


def test_yaml_of_several_documents_and_gzip_events(tmp_path: Path) -> None:
    """``kubectl get events -w -o yaml`` writes one document per Event, separated by ---."""
    listed = yaml_document(EVENTS_YAML.read_bytes())["items"]

    watched = tmp_path / "watch.yaml"
    watched.write_text("".join("---\n" + yaml.safe_dump(item) for item in listed))
    assert [item["metadata"]["uid"] for item in yaml_document(watched.read_bytes())["items"]] == [
        item["metadata"]["uid"] for item in listed
    ]
    assert sniff_kind(watched) == EVENTS
    packed = tmp_path / "events"
    packed.write_bytes(gzip.compress(watched.read_bytes()))
    store = LocalStore(tmp_path / "lake")
    stats = ingest_events(packed, Landing(store, "events"), "kind-kind", clock=lambda: AT)
    assert (stats.events, stats.accepted, stats.quarantined) == (4, 4, 0) and len(lines_of(store, "events")) == 4


def test_a_legacy_text_log_is_not_read_whole_to_be_told(monkeypatch: pytest.MonkeyPatch) -> None:
    legacy = corpus_path("audit/kubernetes__kubernetes__pr110112_panic_legacy_format.log")
    from auditlake.ingest import inputs

    def never(_path: Path) -> bytes:
        raise AssertionError("read whole")

    monkeypatch.setattr(inputs, "read_input", never)
    assert sniff_kind(legacy) is None
