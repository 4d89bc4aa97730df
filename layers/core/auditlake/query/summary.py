"""What is in a lake: counts of landed records and quarantined items (``auditlake summary``), and of
findings: lines in the raw landing (compacted or not: raw objects stay until they expire) and rows
of the findings archive (one per finding key), by level."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from auditlake.jsonio import loads
from auditlake.landing import MANIFEST_SUFFIX, RAW_SUFFIX, decode_lines, quarantine_prefix, raw_prefix
from auditlake.model import FINDINGS
from auditlake.stores import Store


@dataclass
class LakeSummary:
    records: int = 0
    raw_objects: int = 0
    redacted: int = 0
    forbidden: int = 0
    clusters: Counter[str] = field(default_factory=Counter)
    levels: Counter[str] = field(default_factory=Counter)
    verbs: Counter[str] = field(default_factory=Counter)
    stages: Counter[str] = field(default_factory=Counter)
    quarantined_items: int = 0
    quarantined_batches: int = 0
    quarantine_reasons: Counter[str] = field(default_factory=Counter)
    findings_raw: int = 0
    findings_archived: int = 0
    finding_levels: Counter[str] = field(default_factory=Counter)  # of the raw findings


def summarise(store: Store, kind: str = "audit", *, archive: Store | None = None) -> LakeSummary:
    """Counts of ``kind``'s raw records and quarantine, and of the findings (raw; archived when
    ``archive`` is given)."""
    out = LakeSummary()
    for key in store.list(raw_prefix(FINDINGS.name)):
        if key.endswith(RAW_SUFFIX):
            for line in decode_lines(store.get(key)):
                out.findings_raw += 1
                out.finding_levels[str(loads(line).get("level") or "-")] += 1
    if archive is not None:
        import pyarrow.parquet as pq  # the local CLI has it (it compacts)

        for key in archive.list(f"{FINDINGS.name}/"):
            if key.endswith(".parquet"):
                out.findings_archived += pq.read_metadata(archive.open(key)).num_rows
    for key in store.list(raw_prefix(kind)):
        if not key.endswith(RAW_SUFFIX):
            continue
        out.raw_objects += 1
        for line in decode_lines(store.get(key)):
            record = loads(line)
            out.records += 1
            out.clusters[record["cluster"]] += 1
            out.levels[record["level"]] += 1
            out.verbs[record.get("verb") or "-"] += 1
            out.stages[record["stage"]] += 1
            out.redacted += bool(record["redactions"])
            out.forbidden += record.get("response_code") == 403
    for key in store.list(quarantine_prefix(kind)):
        if not key.endswith(MANIFEST_SUFFIX):
            continue
        manifest = loads(store.get(key))
        out.quarantined_batches += 1
        items = manifest.get("items") or []
        if not items:  # the whole payload was refused
            out.quarantined_items += 1
            out.quarantine_reasons[_short(manifest.get("reason", "?"))] += 1
        for item in items:
            out.quarantined_items += 1
            out.quarantine_reasons[_short(item.get("reason", "?"))] += 1
    return out


def _short(reason: str) -> str:
    return reason.split(":", 1)[0][:80]
