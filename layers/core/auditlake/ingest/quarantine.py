"""The quarantine as a user sees it (``auditlake quarantine list|show|retry``), on any Store: the local
lake's directory or a stack's raw bucket (its ``quarantine/`` prefix, read with the user's credentials).

An entry is one quarantine manifest (``landing``'s layout: ``quarantine/<kind>/<cluster>/<hour>/<batch>.json``,
or the compactor's, which names the raw object it came from); its id is a hash of its key, short
enough to type. What ``show`` gives is what the manifest stores: items redacted as stored (secret
bodies removed before anything is quarantined) and heads of lines cut before their first body. A
payload kept unchanged (``<batch>.body``: nothing in it could be read) is never printed: it may hold
anything the sender sent; it is named by key and size, and ``retry`` reads it through the pipeline.

Retry, exactly once: the entry's records go through today's pipeline (a new policy, a fixed parser);
what now passes lands as one raw batch whose id is a hash of the entry's key and the records, so a
retry repeated in the same hour rewrites the same object (and across hours the compactor keeps each
record key once). What still fails is quarantined again under that batch. Only then is the entry
marked retried (``<manifest>.retried``, create-only, beside it: the quarantine is never rewritten or
deleted, which keeps it an honest record of what arrived); a marked entry is not retried again. An
entry whose every record still fails is left as it was, pending. The compactor's entries (raw objects
or lines the archive could not hold) are retried by ``auditlake compact``, not here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from auditlake.audit.parse import EnvelopeError, eventlist_raw_items
from auditlake.ingest.intake import Batch, IngestStats, land
from auditlake.jsonio import JSONError, dumps, encode, loads
from auditlake.landing import MANIFEST_SUFFIX, ItemFailure, Landing, batch_id, quarantine_prefix, valid_cluster_name
from auditlake.stores import AlreadyExists, Store
from auditlake.timestamps import format_utc

RETRIED_SUFFIX = ".retried"  # beside a manifest: it was retried (not .json: no reader takes it for a manifest)
BODY_SUFFIX = ".body"
ID_LENGTH = 12
RETRY_SOURCE = "retry"  # in batch ids only: a retry's batch never shares an id with a delivery's


@dataclass
class Entry:
    """One quarantine manifest, as listed."""

    key: str
    kind: str
    cluster: str
    at: str  # when it was quarantined (received_at / quarantined_at)
    reason: str
    source: str
    items: int
    size: int  # the manifest and any payload or object kept with it, in bytes
    manifest: dict[str, Any] = field(repr=False)
    retried: dict[str, Any] | None = None

    @property
    def id(self) -> str:
        return entry_id(self.key)

    @property
    def by_compactor(self) -> bool:
        return "raw_key" in self.manifest

    @property
    def payload_key(self) -> str | None:
        key = self.manifest.get("payload_key")
        return key if isinstance(key, str) else None


def entry_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:ID_LENGTH]


def marker_key(manifest_key: str) -> str:
    return manifest_key.removesuffix(MANIFEST_SUFFIX) + RETRIED_SUFFIX


def entries(store: Store, kind: str | None = None) -> Iterator[Entry]:
    """Every quarantine manifest under ``quarantine/`` (one kind's with ``kind``), oldest hour first
    within a cluster; with its retry marker when it has one."""
    keys = list(store.list(quarantine_prefix(kind)))
    present = set(keys)
    for key in keys:
        if not key.endswith(MANIFEST_SUFFIX):
            continue
        try:
            manifest = json.loads(store.get(key))
        except ValueError:
            manifest = {"reason": "manifest is not JSON"}
        if not isinstance(manifest, dict):
            manifest = {"reason": "manifest is not a JSON object"}
        retried = None
        if marker_key(key) in present:
            try:
                retried = json.loads(store.get(marker_key(key)))
            except ValueError:
                retried = {}
        yield _entry(store, key, manifest, retried)


def _entry(store: Store, key: str, manifest: dict[str, Any], retried: dict[str, Any] | None) -> Entry:
    parts = key.split("/")  # quarantine/<kind>/<cluster>/... (the compactor's: quarantine/<kind>/<hour or cluster>...)
    kind = str(manifest.get("kind") or (parts[1] if len(parts) > 1 else "?"))
    cluster = str(manifest.get("cluster") or _cluster_of_raw(manifest.get("raw_key")) or "?")
    size = store.size(key) or 0
    for extra in (manifest.get("payload_key"), manifest.get("object_key")):
        if isinstance(extra, str):
            size += store.size(extra) or 0
    items = manifest.get("items")
    return Entry(
        key=key,
        kind=kind,
        cluster=cluster,
        at=str(manifest.get("received_at") or manifest.get("quarantined_at") or "?"),
        reason=str(manifest.get("reason") or "?"),
        source=str(manifest.get("source") or ("compactor" if "raw_key" in manifest else "?")),
        items=len(items) if isinstance(items, list) and items else (1 if manifest.get("payload_key") else 0),
        size=size,
        manifest=manifest,
        retried=retried,
    )


def _cluster_of_raw(raw_key: Any) -> str | None:
    from auditlake.landing import parse_raw_key

    raw = parse_raw_key(raw_key) if isinstance(raw_key, str) else None
    return raw.cluster if raw is not None else None


class NotFound(LookupError):
    pass


def find(store: Store, wanted: str) -> Entry:
    """The entry whose id starts with ``wanted`` (at least 4 characters), or whose key it is."""
    matches = [e for e in entries(store) if e.key == wanted or (len(wanted) >= 4 and e.id.startswith(wanted))]
    if len(matches) != 1:
        raise NotFound(
            f"no quarantine entry {wanted}"
            if not matches
            else f"{wanted} names {len(matches)} entries: give more of it"
        )
    return matches[0]


# ---------------------------------------------------------------- retry


@dataclass
class Prepared:
    """What a kind's re-ingest made of an entry's records: lines to land, items that still fail, and
    the pipeline's result (audit) or rule matches (Events), for ``intake.land``."""

    lines: list[bytes]
    failures: list[ItemFailure]
    result: Any = None
    matches: Sequence[Any] | None = None
    filtered: int = 0


# A kind's re-ingest: (records as (index, bytes), cluster, source, when) -> Prepared. The CLI gives
# audit's (``audit_reingest``) and Events' (``events.files.prepare_events``): Events sit above this layer.
Reingest = Callable[[list[tuple[int, bytes]], str, str, datetime], Prepared]


@dataclass
class Outcome:
    entry: Entry
    state: str  # "landed", "already retried", "still failing", "not retryable"
    detail: str = ""
    stats: IngestStats | None = None


def records_of(store: Store, entry: Entry) -> list[tuple[int, bytes]]:
    """The records an entry holds, as bytes: each item as stored (redacted), a line's text, or the
    records of a payload kept whole (an EventList, or JSON Lines)."""
    if entry.payload_key is not None:
        data = store.get(entry.payload_key)
        try:
            return list(enumerate(bytes(raw) for raw in eventlist_raw_items(data, single_event=True)))
        except EnvelopeError:
            return [(n, line.strip()) for n, line in enumerate(data.splitlines(), start=1) if line.strip()]
    records: list[tuple[int, bytes]] = []
    for position, item in enumerate(entry.manifest.get("items") or ()):
        if not isinstance(item, dict):
            continue
        index = item.get("index", position)
        if "item" in item:
            records.append((index, encode(item["item"])))
        elif isinstance(item.get("line"), str):
            records.append((index, item["line"].encode()))
        elif isinstance(item.get("line_hex"), str):
            records.append((index, bytes.fromhex(item["line_hex"])))
    return records


def retry(
    store: Store,
    entry: Entry,
    reingest: dict[str, Reingest],
    *,
    clock: Callable[[], datetime],
    detector_note: str = "",
) -> Outcome:
    """Re-ingest one entry exactly once (see the module)."""
    if entry.retried is not None:
        return Outcome(entry, "already retried", f"at {entry.retried.get('retried_at', '?')}")
    if entry.by_compactor:
        return Outcome(entry, "not retryable", "quarantined by the compactor: run auditlake compact after the fix")
    if entry.kind not in reingest:
        return Outcome(entry, "not retryable", f"no re-ingest for kind {entry.kind}")
    if not valid_cluster_name(entry.cluster):  # _unrouted: a log group that is not an EKS cluster's
        return Outcome(entry, "not retryable", f"no cluster to land it in ({entry.cluster}): ingest it with --cluster")
    records = records_of(store, entry)
    if not records:
        return Outcome(entry, "not retryable", "it holds no records (only its reason)")
    at = clock()
    prepared = reingest[entry.kind](records, entry.cluster, entry.source, at)
    if not prepared.lines and not prepared.filtered:
        reasons = sorted({f.reason for f in prepared.failures})
        return Outcome(entry, "still failing", "; ".join(reasons[:3]) + (" ..." if len(reasons) > 3 else ""))
    # The batch id: the entry and its records, so a repeated retry (a crash before the mark) lands on the same key.
    batch = Batch(entry.cluster, at, batch_id(entry.cluster, RETRY_SOURCE, entry.key.encode() + b"\0" +
                                              b"\n".join(raw for _, raw in records)), entry.source)  # fmt: skip
    landing = Landing(store, entry.kind)
    stats = land(
        landing,
        batch,
        prepared.lines,
        prepared.failures,
        reason=f"{len(prepared.failures)} of {len(records)} items still fail after a retry of {entry.key}",
        result=prepared.result,
        matches=prepared.matches,
    )
    stats.events = len(records)
    marker = {
        "retried_at": format_utc(at),
        "raw_key": landing.raw_key(batch.cluster, batch.at, batch.id) if prepared.lines else None,
        "accepted": stats.accepted,
        "filtered": stats.filtered,
        "still_quarantined": stats.quarantined,
        "batch_id": batch.id,
    }
    # AlreadyExists: a retry running beside this one marked it; it landed the same records on the same key.
    with contextlib.suppress(AlreadyExists):
        store.put(marker_key(entry.key), dumps(marker), "application/json", create_only=True)
    return Outcome(entry, "landed", detector_note, stats)


def audit_reingest(pipeline: Any) -> Reingest:
    """Audit records through ``pipeline`` (an ``AuditPipeline``: today's policy, redaction, rules)."""

    def prepare(records: list[tuple[int, bytes]], cluster: str, source: str, at: datetime) -> Prepared:
        result = pipeline.items(
            [raw for _, raw in records],
            cluster=cluster,
            source=source,
            ingested_at=format_utc(at),
            numbers=[index for index, _ in records],
        )
        return Prepared(result.lines, result.failures, result=result, filtered=result.filtered)

    return prepare


def parsed(records: list[tuple[int, bytes]]) -> Iterator[tuple[int, Any, str | None]]:
    """Each record parsed, or None and why not (the Events re-ingest's input)."""
    for index, raw in records:
        try:
            yield index, loads(raw), None
        except JSONError as exc:
            yield index, None, exc.reason
