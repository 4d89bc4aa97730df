"""Raw landing and quarantine: the only writers of ingest output.

Raw: ``raw/<kind>/<yyyy>/<mm>/<dd>/<hh>/<cluster>/<batch-id>.ndjson.zst``, one object per batch,
one normalised record per line; columns that are null are left out of the line (a reader with the
schema sees null). The hour is the landing hour (the writer's clock), and it comes before the
cluster: one prefix holds a whole hour of the fleet, which is what the hourly compaction lists and
what the raw Glue tables project (Athena reads the newest events there before they are compacted).
Objects landed before this layout (``raw/<kind>/<cluster>/<yyyy>/<mm>/<dd>/<hh>/...``) are still
read by ``parse_raw_key`` and compacted when named. The batch id is a hash of (cluster, source, payload), so a batch the
sender retries lands on the same key in the same hour: a duplicate delivery rewrites identical bytes
instead of adding a copy (and the compactor deduplicates whatever still arrives twice).

Quarantine: ``quarantine/<kind>/<cluster>/<yyyy>/<mm>/<dd>/<hh>/<batch-id>.json`` explains what went
wrong (item index, auditID, stage, reason, the item without secret bodies); ``<batch-id>.body`` holds
the original bytes unchanged when the payload could not be read at all. Quarantine writes are
create-only: a name already taken by other content (a retry whose manifest differs) gets a name of
its own (``<batch-id>-<hash>.json``), so no quarantined item is ever replaced. The compactor's
manifests are ``<batch-id>.compact-<hash>.json`` beside them.

This module is the layout's one statement: readers find it with ``raw_prefix``, ``raw_hour_prefix``, ``RAW_SUFFIX``,
``quarantine_prefix``, ``MANIFEST_SUFFIX``, ``parse_raw_key`` and ``quarantine_base``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import zstandard

from auditlake.jsonio import dumps
from auditlake.stores import AlreadyExists, Store
from auditlake.timestamps import format_utc

KINDS = ("audit", "events", "findings")
# Custom detection rules of a deployed stack, compiled (``auditlake rules push``): in the raw bucket.
RULES_PREFIX = "rules/"
NDJSON_ZSTD = "application/x-ndjson"
_CLUSTER = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
# Quarantine of input no cluster can be told for (a log group that is not an EKS cluster's): not a
# DNS label, so it never collides with a real cluster's prefix.
UNROUTED = "_unrouted"
RAW = "raw"
QUARANTINE = "quarantine"
RAW_SUFFIX = ".ndjson.zst"  # a raw object: zstd-compressed NDJSON
MANIFEST_SUFFIX = ".json"  # a quarantine manifest (ingest's and the compactor's)
# What Landing.raw_key writes, read back by parse_raw_key (the compactor's filter of S3 notifications);
# and the layout before the hour came first.
_HOUR = r"(?P<y>\d{4})/(?P<m>\d{2})/(?P<d>\d{2})/(?P<h>\d{2})"
_RAW_KEY = re.compile(
    rf"^{RAW}/(?P<kind>[a-z]+)/{_HOUR}/(?P<cluster>[a-z0-9-]+)/(?P<batch>[^/]+){re.escape(RAW_SUFFIX)}$"
)
_LEGACY_RAW_KEY = re.compile(
    rf"^{RAW}/(?P<kind>[a-z]+)/(?P<cluster>[a-z0-9-]+)/{_HOUR}/(?P<batch>[^/]+){re.escape(RAW_SUFFIX)}$"
)


class Invalid(ValueError):
    """An item (an audit event, a Kubernetes Event) cannot be normalised: it goes to quarantine as an
    ``ItemFailure`` with the message as its reason. ``field`` names the offending value (a dotted path),
    which quarantine keeps only as ``audit.redact.shown`` allows."""

    def __init__(self, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.field = field


@dataclass
class ItemFailure:
    """An item that goes to quarantine: ``item`` is the parsed value with secret bodies removed, or,
    when it cannot be parsed or is too deep to redact, ``raw`` holds its original bytes. ``origin``
    says where the sender keeps it (a CloudWatch log stream and event id), when it does."""

    index: int
    reason: str
    audit_id: str | None = None
    stage: str | None = None
    item: Any = None
    raw: bytes | None = None
    origin: dict[str, Any] | None = None


@dataclass(frozen=True)
class RawKey:
    """What a raw object's key says: its kind (``KINDS``, or another a reader must skip), cluster,
    batch, and the hour it landed (UTC)."""

    kind: str
    cluster: str
    batch: str
    landed: datetime
    hour_first: bool = True  # False: the layout before (cluster first), which no hour's listing finds


def hour_path(at: datetime) -> str:
    """``yyyy/mm/dd/hh``: a landing hour in raw and quarantine keys (the raw Glue tables' ``landed``)."""
    return f"{at.year:04d}/{at:%m/%d/%H}"  # %Y does not pad year 1 (glibc)


def raw_hour_prefix(kind: str, hour: datetime) -> str:
    """Every raw object of one kind that landed in ``hour`` (all clusters): ``raw/<kind>/<yyyy>/<mm>/<dd>/<hh>/``."""
    return f"{raw_prefix(kind)}{hour_path(hour)}/"


def raw_prefix(kind: str | None = None) -> str:
    """Where the raw objects are: every kind's (``raw/``), or one kind's (``raw/<kind>/``)."""
    return f"{RAW}/" if kind is None else f"{RAW}/{kind}/"


def quarantine_prefix(kind: str | None = None) -> str:
    """Where the quarantine is: every kind's (``quarantine/``), or one kind's (``quarantine/<kind>/``)."""
    return f"{QUARANTINE}/" if kind is None else f"{QUARANTINE}/{kind}/"


def quarantine_base(raw_key: str) -> str:
    """A raw object's place in the quarantine, without a suffix: ``raw/<kind>/<hour>/<cluster>/<batch>.ndjson.zst``
    -> ``quarantine/<kind>/<cluster>/<hour>/<batch>`` (beside what ingest quarantined of the same batch; the
    compactor names what it quarantines of that object from it). A key that is not a raw key keeps its path."""
    raw = parse_raw_key(raw_key)
    if raw is None:
        return quarantine_prefix() + raw_key.removeprefix(raw_prefix()).removesuffix(RAW_SUFFIX)
    return f"{quarantine_prefix(raw.kind)}{raw.cluster}/{hour_path(raw.landed)}/{raw.batch}"


def parse_raw_key(key: str) -> RawKey | None:
    """The parts of a key ``Landing.raw_key`` writes (or wrote before the hour came first); None for any other key."""
    match = _RAW_KEY.match(key)
    hour_first = match is not None
    match = match or _LEGACY_RAW_KEY.match(key)
    if match is None:
        return None
    try:
        landed = datetime(int(match["y"]), int(match["m"]), int(match["d"]), int(match["h"]), tzinfo=UTC)
    except ValueError:
        return None
    return RawKey(match["kind"], match["cluster"], match["batch"], landed, hour_first)


def valid_cluster_name(name: str) -> bool:
    """DNS-1123 label: safe in S3 keys, file names and queries."""
    return bool(_CLUSTER.match(name))


def batch_id(cluster: str, source: str, payload: bytes) -> str:
    digest = hashlib.sha256()
    for part in (cluster.encode(), b"\0", source.encode(), b"\0", payload):
        digest.update(part)
    return digest.hexdigest()[:32]


def encode_lines(lines: Sequence[bytes]) -> bytes:
    return zstandard.ZstdCompressor(level=3).compress(b"\n".join(lines) + b"\n")


def decode_lines(data: bytes, *, strict: bool = False) -> list[bytes]:
    """The lines of a raw object, every zstd frame of it. ``strict``: ValueError if a frame is cut or
    not zstd; otherwise what could be read (for readers that show a lake: summaries, scans)."""
    parts, rest = [], data
    while rest:
        reader = zstandard.ZstdDecompressor().decompressobj()
        try:
            parts.append(reader.decompress(rest))
        except zstandard.ZstdError as exc:
            if strict or not parts:
                raise ValueError(f"not zstd: {exc}") from None
            break
        if not reader.eof:
            if strict:
                raise ValueError("cut: a zstd frame ends before its end")
            break
        rest = reader.unused_data
    return [line for line in b"".join(parts).split(b"\n") if line]


class Landing:
    def __init__(self, store: Store, kind: str = "audit") -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}")
        self.store = store
        self.kind = kind

    def _prefix(self, area: str, cluster: str, at: datetime) -> str:
        if not valid_cluster_name(cluster) and not (area == QUARANTINE and cluster == UNROUTED):
            raise ValueError(f"invalid cluster name {cluster!r}")
        if area == RAW:
            return f"{raw_hour_prefix(self.kind, at)}{cluster}"
        return f"{area}/{self.kind}/{cluster}/{hour_path(at)}"

    def raw_key(self, cluster: str, at: datetime, batch: str) -> str:
        return f"{self._prefix(RAW, cluster, at)}/{batch}{RAW_SUFFIX}"

    def write_raw(self, cluster: str, at: datetime, batch: str, lines: Sequence[bytes]) -> str | None:
        if not lines:
            return None
        key = self.raw_key(cluster, at, batch)
        self.store.put(key, encode_lines(lines), NDJSON_ZSTD)
        return key

    def quarantine(
        self,
        cluster: str,
        at: datetime,
        batch: str,
        *,
        source: str,
        reason: str,
        payload: bytes | None = None,
        failures: Sequence[ItemFailure] = (),
        context: Mapping[str, object] | None = None,
    ) -> tuple[str, ...]:
        """Store the reasons; without ``failures`` (the payload as a whole was refused) also the payload
        bytes unchanged. With failures, each failed item is kept in the manifest itself. ``context``
        adds where the payload came from (a log group, a stream)."""
        prefix = f"{self._prefix(QUARANTINE, cluster, at)}/{batch}"
        keys: list[str] = []
        manifest: dict[str, object] = {
            "cluster": cluster,
            "kind": self.kind,
            "source": source,
            "received_at": format_utc(at),
            "batch_id": batch,
            "reason": reason,
            **(context or {}),
        }
        if payload is not None:
            manifest["payload_sha256"] = hashlib.sha256(payload).hexdigest()
            manifest["payload_bytes"] = len(payload)
        if payload is not None and not failures:
            body_key = self._create(prefix, ".body", payload, "application/octet-stream")
            manifest["payload_key"] = body_key
            keys.append(body_key)
        manifest["items"] = [_failure_doc(f) for f in failures]
        keys.append(self._create(prefix, MANIFEST_SUFFIX, dumps(manifest), "application/json", same=_same_manifest))
        return tuple(keys)

    def _create(self, prefix: str, suffix: str, data: bytes, content_type: str, same: _Same = bytes.__eq__) -> str:
        """Create-only at ``prefix + suffix``; when that name holds something else, at a name of its own."""
        key = f"{prefix}{suffix}"
        try:
            self.store.put(key, data, content_type, create_only=True)
            return key
        except AlreadyExists:
            if same(self.store.get(key), data):
                return key  # a retry of the same batch: what it would keep is kept
        key = f"{prefix}-{hashlib.sha256(data).hexdigest()[:12]}{suffix}"
        with contextlib.suppress(AlreadyExists):  # taken: by the same bytes (the name is their hash)
            self.store.put(key, data, content_type, create_only=True)
        return key


_Same = Callable[[bytes, bytes], bool]


def _same_manifest(stored: bytes, new: bytes) -> bool:
    """The same quarantine apart from when it was received (a sender's retry of the same batch)."""
    try:
        old_doc, new_doc = json.loads(stored), json.loads(new)
    except ValueError:
        return False
    old_doc.pop("received_at", None)
    new_doc.pop("received_at", None)
    return bool(old_doc == new_doc)


def _failure_doc(failure: ItemFailure) -> dict[str, object]:
    doc: dict[str, object] = {"index": failure.index, "reason": failure.reason}
    if failure.audit_id is not None:
        doc["auditID"] = failure.audit_id
    if failure.stage is not None:
        doc["stage"] = failure.stage
    if failure.origin is not None:
        doc["origin"] = failure.origin
    if failure.raw is not None:
        try:
            doc["line"] = failure.raw.decode("utf-8")
        except UnicodeDecodeError:
            doc["line_hex"] = failure.raw.hex()
    else:
        doc["item"] = failure.item
    return doc
