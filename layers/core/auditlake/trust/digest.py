"""Tamper-evident digests of the archive, and their verification.

A digest lists every archive file whose real write time (S3 LastModified, a file's ctime; never
the time in its name) falls in its window, with what the ledger recorded of it before the write
(key, SHA-256, bytes, rows, event time range), and the ledger entries whose file never appeared:
``unwritten`` (marked stored: written, then gone) and ``abandoned`` (never marked: a write that
failed or never happened; ``auditlake.trust.ledger``). It names the SHA-256 of the previous
digest file and is signed (RSASSA-PSS with SHA-256: a KMS asymmetric key on AWS, a local RSA
key in a local lake). Digests form a chain: removing, reordering or editing one breaks it. They
are written create-only to ``digests/<sequence>.json`` of the audit archive (under Object Lock
when it is on); the chain head (sequence, key, SHA-256: DynamoDB ``DIGEST#HEAD``, locally
``state/digest-head.json``) moves with a conditional write. A window ends before any ledger entry
whose file may still be being written (younger than ``SETTLE``), so a slow write is sealed by the
next digest, never called unwritten.

``verify`` walks the chain and reports, exiting non-zero when anything is wrong: ``no-digest``
(nothing sealed), ``head`` (the chain shorter than, or different from, its head or the head an
auditor recorded), ``stale`` (the newest digest ends longer than ``max_age`` ago),
``bad-signature`` and ``chain`` (digests altered, missing or out of order), ``missing`` and
``altered`` (a sealed file gone or different), ``extra`` (an archive file no digest lists, really
written before the last digest's end), ``vanished`` (a ledger entry marked stored with no file: a
file removed before it was sealed), ``unrecorded`` (a file written
since the last digest that no compaction recorded in the ledger: looked up in every ledger hour
since the last digest, so a copy of the lake, its files dated when it was made, verifies),
``irregular`` and ``leftover`` (a local archive: anything not a regular file, never opened; a
``.tmp-*`` file older than a write takes). Files written since the last digest that the ledger
holds are ``unsealed``: not yet sealed, not an error; ledger entries never marked stored and
without a file are ``abandoned`` writes (reported, not an error: their rows were compacted again by
the retry), or still ``writing`` when younger than ``SETTLE``. A digest proves what existed and what the
ledger recorded of it when it was sealed, not who wrote it: the compactor's rights are trusted.

Retention: deployed, the audit bucket expires files and digests after AuditRetentionDays, the
events bucket its files after EventsRetentionDays, the findings bucket its files after
FindingsRetentionDays. The digest function records them in each digest (``retention``:
``{"audit/": 365, "digests/": 365, "events/": 90, "findings/": 400}``), with its predecessor's real
write time (``previous.written_at``), under the signature. ``verify`` accepts an absence as expiry
only by what signed digests recorded (``auditlake.trust.retention``): sealed files past it
(``expired_files``), and the chain's oldest digests, or a gap among them, once the last absent one
is past it (``expired_digests``); never by the buckets' current lifecycle rules, which whoever may
change them could shorten. Those rules are compared with the newest digest's record instead: one
that would expire keys sooner is a ``retention`` finding. Anything younger that is gone is still a
finding; a digest that records no retention (a local lake, an older digest) expires nothing. A
sealed S3 object dated after its digest's window was written again since it was sealed:
``altered``, in any storage class; one in an archive tier (Deep Archive) is otherwise present but
not read, its size checked (``archived``).

A digest run that stopped after writing its file and before moving the head is adopted by the
next run when the file is signed by the key and links to the head (a DigestError names it if not).
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from auditlake.model import ARCHIVE_KINDS
from auditlake.state_table import DIGEST_HEAD, digest_head_key
from auditlake.stores import AlreadyExists, Archived, Store, StoreError
from auditlake.stores.s3 import S3Store
from auditlake.timestamps import format_utc, parse
from auditlake.trust.ledger import KEEP_SECONDS, SETTLE, Entry, Ledger, hours
from auditlake.trust.retention import Recorded, describe, recorded_retention, sooner_rules

logger = logging.getLogger(__name__)

FORMAT = "auditlake-digest/1"
ALGORITHM = "RSASSA_PSS_SHA_256"
PREFIX = "digests/"
# Every archive kind's files are sealed (audit, events, findings: model.ARCHIVE_KINDS), each kind in
# its own archive store under its own prefix.
ARCHIVE_PREFIXES = tuple(f"{name}/" for name in ARCHIVE_KINDS)
SKEW = timedelta(minutes=1)  # between the clock that stamps the ledger and the one that dates objects


class DigestError(RuntimeError):
    pass


class Signer(Protocol):
    key_id: str

    def sign(self, digest: bytes) -> bytes: ...

    def verify(self, digest: bytes, signature: bytes) -> bool: ...


class KmsSigner:
    """A KMS asymmetric key (RSA, SIGN_VERIFY): the private key never leaves KMS."""

    def __init__(self, client: Any, key_id: str) -> None:
        self.client, self.key_id = client, key_id

    def sign(self, digest: bytes) -> bytes:
        try:
            answer = self.client.sign(
                KeyId=self.key_id, Message=digest, MessageType="DIGEST", SigningAlgorithm=ALGORITHM
            )
        except (BotoCoreError, ClientError) as exc:
            raise DigestError(f"cannot sign with {self.key_id}: {exc}") from exc
        return bytes(answer["Signature"])

    def verify(self, digest: bytes, signature: bytes) -> bool:
        try:
            answer = self.client.verify(KeyId=self.key_id, Message=digest, MessageType="DIGEST",
                                        Signature=signature, SigningAlgorithm=ALGORITHM)  # fmt: skip
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "KMSInvalidSignatureException":
                return False
            raise DigestError(f"cannot verify with {self.key_id}: {exc}") from exc
        return bool(answer["SignatureValid"])


def _scheme() -> tuple[Any, Any]:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, utils

    # As KMS's RSASSA_PSS_SHA_256: MGF1 with SHA-256, salt as long as the hash.
    return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), utils.Prehashed(hashes.SHA256())


class PublicKey:
    """Verifies only: the public half of a local key, exported (``digest --export-public-key``) and
    kept away from the lake, so whoever can write the lake cannot swap the key ``verify`` trusts."""

    def __init__(self, key: Any) -> None:
        self._key = key
        self.key_id = "local:sha256:" + hashlib.sha256(self._bytes("DER")).hexdigest()[:16]

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PublicKey:
        from cryptography.hazmat.primitives import serialization

        try:
            return cls(serialization.load_pem_public_key(Path(path).read_bytes()))
        except (OSError, ValueError) as exc:
            raise DigestError(f"cannot read a public key from {path}: {exc}") from exc

    def _bytes(self, encoding: str) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return bytes(self._key.public_bytes(getattr(serialization.Encoding, encoding),
                                            serialization.PublicFormat.SubjectPublicKeyInfo))  # fmt: skip

    def pem(self) -> bytes:
        return self._bytes("PEM")

    def sign(self, digest: bytes) -> bytes:
        raise DigestError("a public key cannot sign")

    def verify(self, digest: bytes, signature: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature

        pss, prehashed = _scheme()
        try:
            self._key.verify(signature, digest, pss, prehashed)
        except InvalidSignature:
            return False
        return True


class LocalSigner:
    """An RSA-3072 key in the local lake (made on first use, mode 0600; with ``create=False`` a
    missing key is a DigestError: verifying never makes keys)."""

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        self.path = Path(path)
        if not self.path.exists():
            if not create:
                raise DigestError(f"no signing key at {self.path}")
            key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
            pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())  # fmt: skip
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(pem)
        self._key: Any = serialization.load_pem_private_key(self.path.read_bytes(), password=None)
        self.public = PublicKey(self._key.public_key())
        self.key_id = self.public.key_id

    def sign(self, digest: bytes) -> bytes:
        pss, prehashed = _scheme()
        return bytes(self._key.sign(digest, pss, prehashed))

    def verify(self, digest: bytes, signature: bytes) -> bool:
        return self.public.verify(digest, signature)


class ChainHead(Protocol):
    def load(self) -> dict[str, Any] | None:
        """The last digest: sequence, key, sha256, to. None before the first."""
        ...

    def advance(self, previous: int, head: dict[str, Any]) -> None:
        """Store ``head`` if the stored sequence is still ``previous`` (0: none); DigestError if not."""
        ...


def _valid_head(head: Any, where: str) -> dict[str, Any]:
    """A stored chain head, checked: DigestError naming ``where`` when it is not one."""
    if not (
        isinstance(head, dict)
        and type(head.get("sequence")) is int
        and head["sequence"] >= 1
        and all(isinstance(head.get(name), str) for name in ("key", "sha256", "to"))
    ):
        raise DigestError(f"the chain head ({where}) is not a digest head: {str(head)[:120]!r}")
    try:
        parse(head["to"])
    except (TypeError, ValueError) as exc:
        raise DigestError(f"the chain head ({where}) is not a digest head: {exc}") from exc
    return head


class DynamoChainHead:
    def __init__(self, client: Any, table: str) -> None:
        self.client, self.table = client, table
        self._key = digest_head_key()

    def load(self) -> dict[str, Any] | None:
        try:
            item = self.client.get_item(TableName=self.table, Key=self._key, ConsistentRead=True).get("Item")
        except (BotoCoreError, ClientError) as exc:
            raise DigestError(f"cannot read the digest chain head: {exc}") from exc
        if not item:
            return None
        try:
            return _valid_head(json.loads(item["head"]["S"]), DIGEST_HEAD)
        except (KeyError, TypeError, ValueError) as exc:
            raise DigestError(f"the chain head ({DIGEST_HEAD}) cannot be read: {exc}") from exc

    def advance(self, previous: int, head: dict[str, Any]) -> None:
        try:
            self.client.put_item(
                TableName=self.table,
                Item={**self._key, "head": {"S": json.dumps(head)}, "sequence": {"N": str(head["sequence"])}},
                ConditionExpression="attribute_not_exists(pk) OR #s = :p",
                ExpressionAttributeNames={"#s": "sequence"},
                ExpressionAttributeValues={":p": {"N": str(previous)}},
            )
        except (BotoCoreError, ClientError) as exc:
            raise DigestError(f"cannot move the digest chain head: {exc}") from exc


class LocalChainHead:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def load(self) -> dict[str, Any] | None:
        try:
            loaded = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:  # cut short, not JSON, not UTF-8, a directory...
            raise DigestError(f"the chain head ({self.path}) cannot be read: {exc}") from exc
        return _valid_head(loaded, str(self.path))

    def advance(self, previous: int, head: dict[str, Any]) -> None:
        with self._locked():
            current = self.load()  # DigestError when it cannot be read: never overwritten blindly
            if (current or {}).get("sequence", 0) != previous:
                raise DigestError("another digest run moved the chain head")
            self.path.with_suffix(".partial").write_text(json.dumps(head))
            os.replace(self.path.with_suffix(".partial"), self.path)


def canonical(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def message_digest(doc: Mapping[str, Any]) -> bytes:
    """What is signed: SHA-256 of the canonical document without its signature."""
    return hashlib.sha256(canonical({k: v for k, v in doc.items() if k != "signature"})).digest()


@dataclass
class SealReport:
    digests: list[str] = field(default_factory=list)
    objects: int = 0
    dropped: list[str] = field(default_factory=list)  # marked stored in the ledger, no file within SETTLE
    abandoned: list[str] = field(default_factory=list)  # never marked stored, no file within SETTLE
    waiting: list[str] = field(default_factory=list)  # in the ledger, file not there yet: the next digest's
    adopted: list[str] = field(default_factory=list)  # written by a run that stopped before moving the head
    damaged: list[str] = field(default_factory=list)  # ledger entries that could not be read (skipped)

    def summary(self) -> dict[str, Any]:
        """The run's answer, and what its log says (no key holds event data: keys and counts only)."""
        return {"digests": self.digests, "files": self.objects, "dropped": self.dropped, "waiting": self.waiting,
                "damaged": self.damaged, "adopted": self.adopted, "abandoned": self.abandoned}  # fmt: skip

    def log(self, retention: Mapping[str, int] | None) -> None:
        if self.dropped or self.damaged:  # verify reports each never-written entry; say it here first
            logger.warning("ledger entries without a file, or unreadable",
                           extra={"never_written": self.dropped, "unreadable": self.damaged})  # fmt: skip
        if self.abandoned:  # a compaction that failed or died before its write: its retry wrote another file
            logger.info("ledger entries of abandoned writes", extra={"abandoned": self.abandoned})
        if self.adopted:  # written by a run that stopped before moving DIGEST#HEAD
            logger.warning("digests adopted", extra={"adopted": self.adopted})
        # The retention each digest recorded (signed): all verify will accept as expired.
        logger.info("sealed", extra={"digests": self.digests, "files": self.objects, "waiting": self.waiting,
                                     "retention": retention})  # fmt: skip


def _second(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


class Digester:
    def __init__(self, ledger: Ledger, archives: Mapping[str, Store], head: ChainHead, signer: Signer,
                 *, settle: timedelta = SETTLE, retention: Mapping[str, int] | None = None) -> None:  # fmt: skip
        """``retention``: the stack's retention by prefix (``{"audit/": 365, "digests/": 365,
        "events/": 90}``), recorded in every digest under its signature: what verify accepts as
        expired. None (a local lake): nothing is recorded, nothing is accepted as expired."""
        self.ledger, self.archives, self.head, self.signer = ledger, archives, head, signer
        self.settle = settle
        self.retention = dict(retention) if retention else None

    def seal(self, until: datetime, *, start: datetime, hourly: bool = True, now: datetime | None = None) -> SealReport:
        """Seal what was written before ``until`` and after the last digest (the first digest starts
        at ``start``): one digest per clock hour, or (``hourly=False``) one for the whole span.
        ``until`` must not be later than ``now`` (when the ledger is read; default ``until``):
        a file whose entry is not in the ledger yet is written after it."""
        report = SealReport()
        until, now = _second(until), now or until
        head = self.head.load()
        begin = parse(head["to"]) if head else start
        recent = self._recently_sealed(head, begin - self.settle)
        while begin < until:
            end = min(begin.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1), until) if hourly else until
            sealed = self._seal_window(head, begin, end, now, report=report, recent=recent)
            if sealed is None:
                break
            adopted = bool(report.adopted) and report.adopted[-1] == sealed["key"]
            head = sealed
            if parse(head["to"]) < end and not adopted:  # cut short by a file still being written
                break
            if adopted and parse(head["to"]) <= begin:
                break
            begin = parse(head["to"]) if adopted else end  # an adopted digest's window is its own
        report.damaged = sorted(set(self.ledger.damaged))
        return report

    def _recently_sealed(self, head: dict[str, Any] | None, since: datetime) -> set[str]:
        """Files the digests ending after ``since`` list: a file whose ctime moved (a chmod, a
        restore) after it was sealed is not sealed twice."""
        keys: set[str] = set()
        link = head
        while link:
            try:
                doc = json.loads(self.archives["audit"].get(link["key"]))
                keys.update(obj["key"] for obj in doc.get("objects", ()))
                if parse(doc["from"]) <= since:
                    break
            except (StoreError, ValueError, KeyError, TypeError) as exc:
                raise DigestError(f"cannot read the chain's digest {link['key']}: {exc}") from exc
            link = doc.get("previous")
        return keys

    def seal_finished_hours(self, now: datetime, *, grace: timedelta = timedelta(minutes=5)) -> SealReport:
        """The deployed schedule: every hour that ended ``grace`` ago (writes of it have landed),
        one digest each. The first digest looks back a day: the ledger cannot be listed cheaply."""
        until = (now - grace).replace(minute=0, second=0, microsecond=0)
        return self.seal(until, start=until - timedelta(days=1), now=now)

    def _seal_window(self, head: dict[str, Any] | None, start: datetime, end: datetime, now: datetime,
                     *, report: SealReport, recent: set[str]) -> dict[str, Any] | None:  # fmt: skip
        present: list[tuple[datetime, Entry]] = []
        absent: list[tuple[datetime, Entry]] = []
        cut = end
        for hour in hours(start - self.settle, end):
            for entry in self.ledger.entries(hour):
                try:
                    stamped = parse(entry.written_at)
                except (TypeError, ValueError):
                    self.ledger.damaged.append(f"{entry.key}: written_at {entry.written_at!r}")
                    continue
                if not start - self.settle <= stamped < end:
                    continue
                written = self.archives[entry.key.split("/", 1)[0]].modified(entry.key)
                if written is not None:
                    present.append((written, entry))
                elif stamped >= now - self.settle:  # may still be being written: its file is the next digest's
                    cut = min(cut, _second(stamped - SKEW))
                    report.waiting.append(entry.key)
                else:
                    absent.append((stamped, entry))
        if cut <= start:
            return None
        objects = [entry.sealed() for written, entry in present if start <= written < cut and entry.key not in recent]
        recent.update(obj["key"] for obj in objects)
        # Reported once: by the window whose end is SETTLE after the entry was stamped. Never
        # marked stored: a write that failed or never happened (not a removal, but for a compactor
        # killed between its write and its mark: auditlake.trust.ledger).
        due = [e for stamped, e in absent if stamped < cut - self.settle]
        unwritten = [{"key": e.key, "written_at": e.written_at} for e in due if e.stored is not False]
        abandoned = [{"key": e.key, "written_at": e.written_at} for e in due if e.stored is False]
        sequence = (head or {}).get("sequence", 0) + 1
        previous: dict[str, Any] | None = None
        if head:
            previous = {"key": head["key"], "sha256": head["sha256"]}
            # The previous digest's real write time (S3 LastModified), signed here: once it has
            # expired, verify knows when S3 may have removed it (not a window start, a day early).
            written = self.archives["audit"].modified(head["key"])
            if written is not None:
                previous["written_at"] = format_utc(written)
        doc: dict[str, Any] = {
            "format": FORMAT,
            "sequence": sequence,
            "from": format_utc(start),
            "to": format_utc(cut),
            "previous": previous,
            "objects": sorted(objects, key=lambda o: o["key"]),
            "unwritten": sorted(unwritten, key=lambda o: o["key"]),
            "abandoned": sorted(abandoned, key=lambda o: o["key"]),
        }
        if self.retention:
            doc["retention"] = self.retention
        signature = self.signer.sign(message_digest(doc))
        doc["signature"] = {"algorithm": ALGORITHM, "key_id": self.signer.key_id,
                            "value": base64.b64encode(signature).decode()}  # fmt: skip
        data = canonical(doc)
        key = f"{PREFIX}{sequence:010d}.json"
        try:
            self.archives["audit"].put(key, data, "application/json", create_only=True)
        except AlreadyExists:
            return self._adopt(key, head, report=report, recent=recent)
        except StoreError as exc:
            raise DigestError(f"cannot write {key}: {exc}") from exc
        new_head = {"sequence": sequence, "key": key, "sha256": hashlib.sha256(data).hexdigest(), "to": doc["to"]}
        self.head.advance(sequence - 1, new_head)
        report.digests.append(key)
        report.objects += len(objects)
        report.dropped += [o["key"] for o in unwritten]
        report.abandoned += [o["key"] for o in abandoned]
        return new_head

    def _adopt(self, key: str, head: dict[str, Any] | None, *, report: SealReport, recent: set[str]) -> dict[str, Any]:
        """The next digest's file is already there: a run that wrote it and stopped before moving
        the head. Adopted (the head moves to it) if it is signed by this key and links to the
        current head; anything else there is an error naming it."""
        sequence = (head or {}).get("sequence", 0) + 1
        link = {"key": head["key"], "sha256": head["sha256"]} if head else None
        try:
            data = self.archives["audit"].get(key)
            doc = json.loads(data)
            signed = self.signer.verify(message_digest(doc), base64.b64decode(doc["signature"]["value"]))
            parse(doc["from"]), parse(doc["to"])
            objects = [obj["key"] for obj in doc.get("objects", ())]
            unwritten = [obj["key"] for obj in doc.get("unwritten", ())]
            abandoned = [obj["key"] for obj in doc.get("abandoned", ())]
        except (StoreError, ValueError, KeyError, TypeError) as exc:
            raise DigestError(f"{key} exists and is not a readable digest ({exc}): the chain cannot go on") from exc
        if not signed or doc.get("sequence") != sequence or _link(doc.get("previous")) != link:
            raise DigestError(
                f"{key} exists but is not the next digest of this chain "
                f"({'does not link to the head' if signed else 'its signature does not match this key'}): "
                "the chain cannot go on; see what wrote it"
            )
        new_head = {"sequence": sequence, "key": key, "sha256": hashlib.sha256(data).hexdigest(), "to": doc["to"]}
        self.head.advance(sequence - 1, new_head)
        recent.update(objects)
        report.digests.append(key)
        report.adopted.append(key)
        report.objects += len(objects)
        report.dropped += unwritten
        report.abandoned += abandoned
        return new_head


@dataclass
class Finding:
    kind: str  # no-digest | head | stale | bad-signature | chain | missing | altered | extra | vanished |
    # unrecorded | irregular | leftover | retention
    key: str
    detail: str


@dataclass
class VerifyReport:
    digests: int = 0
    objects: int = 0
    findings: list[Finding] = field(default_factory=list)
    unsealed: list[str] = field(default_factory=list)
    sealed_until: str | None = None
    head: str | None = None  # SEQUENCE:SHA256 of the newest digest: what an auditor records
    # Gone by the retention the digests recorded (never findings): sealed files S3 may have expired,
    # and the sequence numbers of digests that expired with them (the start of the chain, or a gap).
    expired_files: list[str] = field(default_factory=list)
    expired_digests: list[int] = field(default_factory=list)
    # Files no remaining digest lists, written where expired digests were: S3 removed their digest
    # first (removal runs in no order); past retention, they are no longer provable, nor a finding.
    unprovable: list[str] = field(default_factory=list)
    # Ledger entries never marked stored, without a file: writes that failed or never happened
    # (their rows were compacted again), and those younger than SETTLE, perhaps still being written.
    abandoned: list[str] = field(default_factory=list)
    writing: list[str] = field(default_factory=list)
    archived: list[str] = field(default_factory=list)  # sealed, present, in an archive tier: not read
    # What each acceptance of an expiry relied on: digest sequence -> the retention it recorded.
    assumed: dict[int, dict[str, int]] = field(default_factory=dict)
    # The head an auditor recorded (``expected``): how it was checked, and whether it was.
    expected_head: str | None = None
    expected_checked: bool = False
    notes: list[str] = field(default_factory=list)  # what was not checked, and why (not failures)

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def retention(self) -> str | None:
        """What the expiries assumed: "audit/ 365 days, events/ 90 days, digests/ 365 days, as
        recorded by digest 4" (None: nothing was accepted as expired)."""
        by_rule: dict[str, list[int]] = {}
        for sequence, recorded in sorted(self.assumed.items()):
            by_rule.setdefault(describe(recorded), []).append(sequence)
        return (
            "; ".join(
                f"{rule}, as recorded by digest{'s' if len(seqs) > 1 else ''} {', '.join(map(str, seqs))}"
                for rule, seqs in by_rule.items()
            )
            or None
        )


def parse_head(value: str) -> tuple[int, str]:
    """``SEQUENCE:SHA256`` (as ``verify`` prints it); ValueError otherwise."""
    sequence, _, sha = value.strip().partition(":")
    if not sequence.isascii() or not sequence.isdigit() or int(sequence) < 1 or len(sha) != 64:
        raise ValueError(f"expected SEQUENCE:SHA256 (e.g. 12:{'0' * 64}), not {value!r}")
    int(sha, 16)
    return int(sequence), sha.lower()


def _link(value: Any) -> dict[str, Any] | None:
    """A digest's ``previous`` as the chain compares it: key and SHA-256 (``written_at`` is extra)."""
    return {"key": value.get("key"), "sha256": value.get("sha256")} if isinstance(value, dict) else value


@dataclass
class _Read:
    key: str
    sha256: str  # of the digest file, as the next digest's ``previous`` and the chain head name it
    doc: dict[str, Any] | None  # None: not a signed digest (``error`` says why)
    error: str = ""
    signed: bool = False


def _read_digests(digests: Store, signer: Signer) -> list[_Read]:
    read = []
    for key in sorted(k for k in digests.list(PREFIX) if k.endswith(".json")):
        data = digests.get(key)
        sha = hashlib.sha256(data).hexdigest()
        try:
            doc = json.loads(data)
            signature = base64.b64decode(doc["signature"]["value"])
            parse(doc["from"]), parse(doc["to"])
        except (ValueError, KeyError, TypeError) as exc:
            read.append(_Read(key, sha, None, f"not a signed digest: {exc}"))
            continue
        read.append(_Read(key, sha, doc, signed=signer.verify(message_digest(doc), signature)))
    return read


def _recorded(read: list[_Read]) -> tuple[Recorded, dict[int, dict[str, int]], int | None]:
    """The retention the signed digests recorded, each dated by its real write time when the next
    digest recorded it (``previous.written_at``), else by its window's end (it was written after);
    the retention of each digest that recorded one, by sequence; the newest signed digest's sequence."""
    written: dict[str, datetime] = {}
    for item in read:
        link = item.doc.get("previous") if item.doc and item.signed else None
        if isinstance(link, dict) and isinstance(link.get("key"), str):
            with suppress(KeyError, TypeError, ValueError):  # not recorded: dated by its window's end
                written[link["key"]] = parse(link["written_at"])
    rows = {
        item.doc["sequence"]: (
            written.get(item.key) or parse(item.doc["to"]),
            recorded_retention(item.doc.get("retention")),
        )
        for item in read
        if item.doc is not None and item.signed and type(item.doc.get("sequence")) is int
    }
    kept_by = {s: k for s, (_, k) in rows.items() if k is not None}
    return Recorded((seq, at, kept) for seq, (at, kept) in rows.items()), kept_by, max(rows, default=None)


def verify(archives: Mapping[str, Store], signer: Signer, *, start: datetime | None = None,
           end: datetime | None = None, head: ChainHead | None = None, expected: tuple[int, str] | None = None,
           ledger: Ledger | None = None, now: datetime | None = None, max_age: timedelta | None = None,
           settle: timedelta = SETTLE,
           lifecycle: Mapping[str, Sequence[Mapping[str, Any]] | None] | None = None) -> VerifyReport:  # fmt: skip
    """Walk the whole chain; check it against its ``head`` and the head an auditor ``expected``
    (sequence, SHA-256 of that digest file), and its age against ``now`` and ``max_age``; check
    the files of the digests overlapping [start, end); judge every unlisted file by its real write
    time, and (with the ``ledger``) what was written since the last digest.

    What S3 may have expired by ``now`` is decided only by the retention the signed digests
    recorded (``auditlake.trust.retention``), never by the buckets' current rules:

    - a sealed file that is gone is *expired* when, written before its digest's window ended, it
      is past the retention recorded by a digest written at or after that end; else it is missing;
    - a chain that starts after digest 1, or skips digests, is accepted when the last absent digest
      (written when the next remaining digest's ``previous.written_at`` says; for older digests,
      before that digest's own LastModified) is past a retention recorded since. A digest removed
      younger than that is a finding, and so are the files it sealed (``extra``). The newest digest
      is never accepted as expired: a missing head is a finding (``head``), and ``max_age`` catches
      a chain whose young end was cut off.

    ``lifecycle`` (deployed: each archive's current lifecycle rules; None for one that could not be
    read) is compared with the newest digest's recorded retention: a rule that would expire
    ``audit/``, ``digests/`` or ``events/`` keys sooner is a ``retention`` finding.
    """
    report = VerifyReport()
    digests = archives["audit"]
    moment = now or datetime.now(UTC)
    sealed: set[str] = set()  # every file any digest lists
    to_check: list[
        tuple[dict[str, Any], datetime]
    ] = []  # files of the digests overlapping [start, end), with their digest's end
    unwritten: list[dict[str, Any]] = []  # ledger entries the digests say never got a file
    chain: dict[int, tuple[str, str]] = {}  # sequence -> (key, SHA-256 of the digest file)
    links: dict[int, dict[str, Any]] = {}  # sequence -> its ``previous`` link
    gaps: list[tuple[datetime | None, datetime]] = []  # write times of files whose digests expired
    previous: tuple[str, str, datetime] | None = None  # key, SHA-256 and end of the last good digest
    position = 0
    read = _read_digests(digests, signer)
    retained, kept_by, newest = _recorded(read)  # Recorded.expiry names only digests in kept_by

    def overlaps(doc: dict[str, Any]) -> bool:
        return not ((start and parse(doc["to"]) <= start) or (end and parse(doc["from"]) >= end))

    def expired_up_to(key: str, last: int, link: dict[str, Any]) -> int | None:
        """Whether absent digests up to ``last`` may all have expired by now: the digest ``key``
        (the next remaining one) recorded when ``last`` was written; the ones before it were written
        earlier. The sequence of the digest whose recorded retention allows it, or None."""
        try:
            written: datetime | None = parse(link["written_at"])
        except (KeyError, TypeError, ValueError):
            written = digests.modified(key)  # not recorded (an older digest): ``key`` was written after it
        return None if written is None else retained.expiry(f"{PREFIX}{last:010d}.json", written, moment)

    for item in read:
        report.digests += 1
        position += 1
        key, doc = item.key, item.doc
        if doc is None:
            chain[position] = (key, item.sha256)
            report.findings.append(Finding("bad-signature", key, item.error))
            continue
        begins, ends = parse(doc["from"]), parse(doc["to"])
        if not item.signed:
            report.findings.append(Finding("bad-signature", key, "the signature does not match the digest"))
        expected_link = {"key": previous[0], "sha256": previous[1]} if previous else None
        sequence = doc.get("sequence")
        link = doc.get("previous")
        justified = None
        if sequence == position and _link(link) == expected_link:
            pass
        elif (
            item.signed
            and type(sequence) is int
            and sequence > position
            and key == f"{PREFIX}{sequence:010d}.json"
            and isinstance(link, dict)
            and link.get("key") == f"{PREFIX}{sequence - 1:010d}.json"
            and (previous is None or previous[2] <= begins)
            and (justified := expired_up_to(key, sequence - 1, link)) is not None
        ):
            # Digests position..sequence-1 expired (the chain's start, or a gap S3 left: it removes
            # in no order). What they sealed was written between the previous remaining digest's
            # end and this one's start.
            report.expired_digests += range(position, sequence)
            report.assumed[justified] = kept_by[justified]
            gaps.append((previous[2] if previous else None, begins))
            position = sequence
        else:
            report.findings.append(
                Finding("chain", key, f"expected digest {position} after {expected_link and expected_link['key']}")
            )
        chain[position] = (key, item.sha256)
        if isinstance(link, dict):
            links[position] = link
        previous = (key, item.sha256, ends)
        report.sealed_until = doc["to"]
        objects = doc.get("objects", ())
        sealed.update(obj["key"] for obj in objects)
        if overlaps(doc):
            to_check += [(obj, ends) for obj in objects]
            unwritten += doc.get("unwritten", ())
            report.abandoned += [obj["key"] for obj in doc.get("abandoned", ())]
    last = max(chain, default=0)
    if last:
        report.head = f"{last}:{chain[last][1]}"
    else:
        report.findings.append(Finding("no-digest", PREFIX, "nothing is sealed: the archive holds no digest"))
    _check_head(report, chain, links, head, expected)
    if lifecycle is not None:
        _check_lifecycle(report, archives, lifecycle, newest, kept_by)
    if max_age is not None and now is not None and report.sealed_until is not None:
        age = now - parse(report.sealed_until)
        if age > max_age:
            report.findings.append(
                Finding(
                    "stale",
                    chain[last][0],
                    f"the newest digest ends {_ago(age)} ago "
                    f"(at most {_ago(max_age)} expected): digests stopped, or were removed",
                )
            )

    for obj, window_end in to_check:
        key = obj["key"]
        store = archives[key.split("/", 1)[0]]
        report.objects += 1
        # S3 dates an object when it is written (a tier change keeps the date): one dated after its
        # digest's window was written again after it was sealed, whatever it holds now and in
        # whatever tier (a same-size object put straight into Deep Archive is not read). A local
        # file's ctime moves with a chmod or a copy: its content is the check there.
        written = store.modified(key) if isinstance(store, S3Store) else None
        if written is not None and written > window_end + SKEW:
            report.findings.append(
                Finding(
                    "altered",
                    key,
                    f"written at {format_utc(written)}, after its digest's window "
                    f"ended ({format_utc(window_end)}): replaced since it was sealed",
                )
            )
            continue
        try:
            data = store.get(key)
        except Archived:
            # Glacier Flexible Retrieval / Deep Archive: present (its size and date checked), not read.
            size = store.size(key)
            if size != obj["bytes"]:
                report.findings.append(Finding("altered", key, f"in an archive tier, {size} bytes, not {obj['bytes']}"))
            else:
                report.archived.append(key)
            continue
        except StoreError:
            # Gone (HeadObject: 404; a 403 raises, naming the permission) or there but unreadable.
            # A gone file was written before its digest's window ended: expired if a digest written
            # since recorded a retention S3 may have removed it by; otherwise removed.
            gone = store.size(key) is None
            justified = retained.expiry(key, window_end, moment) if gone else None
            if justified is not None:
                report.expired_files.append(key)
                report.assumed[justified] = kept_by[justified]
                continue
            report.findings.append(Finding("missing", key, f"sealed in a digest ({obj['bytes']} bytes), not found"))
            continue
        if hashlib.sha256(data).hexdigest() != obj["sha256"]:
            report.findings.append(Finding("altered", key, "its SHA-256 differs from the digest's"))

    listed = {key for prefix in ARCHIVE_PREFIXES for key in archives[prefix.rstrip("/")].list(prefix)}
    _check_irregular(report, archives, moment)
    for obj in unwritten:
        if obj["key"] not in listed:
            report.findings.append(
                Finding(
                    "vanished",
                    obj["key"],
                    f"recorded in the ledger at {obj['written_at']}, "
                    "never found: a file removed before it was sealed (or, recorded before the ledger "
                    "marked writes, a write that failed)",
                )
            )

    horizon = parse(report.sealed_until) if report.sealed_until else None
    recorded = _LedgerView(ledger, now, settle, horizon)
    for key in sorted(listed - sealed):
        written = archives[key.split("/", 1)[0]].modified(key)
        if written is None or (start and written < start) or (end and written >= end):
            continue
        if any((after is None or after <= written) and written < before for after, before in gaps):
            report.unprovable.append(key)  # its digest expired before it did: past retention
            continue
        if horizon is not None and written < horizon:
            report.findings.append(
                Finding(
                    "extra",
                    key,
                    f"in the archive but in no digest, written at {format_utc(written)}, before the last digest's end",
                )
            )
            continue
        report.unsealed.append(key)
        if ledger is None:
            continue
        entry = recorded.find(key, written)
        if entry is None:
            report.findings.append(
                Finding(
                    "unrecorded",
                    key,
                    f"written at {format_utc(written)}, after the last "
                    "digest, but no compaction recorded it in the ledger",
                )
            )
        elif hashlib.sha256(archives[key.split("/", 1)[0]].get(key)).hexdigest() != entry.sha256:
            report.findings.append(Finding("altered", key, "not yet sealed, and its SHA-256 differs from the ledger's"))
    if ledger is not None and horizon is not None and now is not None:
        for entry in recorded.since(horizon - settle):
            stamped = parse(entry.written_at)
            if entry.key in sealed or entry.key in listed or (start and stamped < start) or (end and stamped >= end):
                continue
            if entry.stored is False:  # never written (yet): not a removal
                (report.writing if stamped >= moment - settle else report.abandoned).append(entry.key)
                continue
            report.findings.append(
                Finding(
                    "vanished",
                    entry.key,
                    f"recorded in the ledger at {entry.written_at}, "
                    + (
                        "written, not in the archive: a file removed"
                        if entry.stored
                        else "not in the archive: a compaction still writing it (verify again in a "
                        "few minutes), a write that failed, or a file removed"  # recorded before marks
                    ),
                )
            )
    return report


def _check_irregular(report: VerifyReport, archives: Mapping[str, Store], now: datetime) -> None:
    """A local archive holds regular files only: a symlink, FIFO, device or a directory named like
    a file is never opened (it could lead outside the archive or hang a reader) and is a finding;
    so is a temp file (``.tmp-*``) older than a write takes."""
    seen: set[str] = set()
    for prefix in (*ARCHIVE_PREFIXES, PREFIX):
        store = archives["audit" if prefix == PREFIX else prefix.rstrip("/")]
        irregular = getattr(store, "irregular", None)
        if irregular is None:  # S3: only objects
            continue
        for key, why in irregular(prefix, now):
            if key in seen:
                continue
            seen.add(key)
            kind = "leftover" if why.startswith("leftover") else "irregular"
            detail = f"{why}: never read; queries skip it" if kind == "leftover" else f"{why}: never opened"
            report.findings.append(Finding(kind, key, f"in the archive, {detail}"))


def _check_lifecycle(report: VerifyReport, archives: Mapping[str, Store],
                     lifecycle: Mapping[str, Sequence[Mapping[str, Any]] | None],
                     newest: int | None, kept_by: Mapping[int, dict[str, int]]) -> None:  # fmt: skip
    """The buckets' current rules against the newest signed digest's recorded retention: a rule
    that would expire keys sooner is a finding now, before S3 removes what verify would then call
    missing (the rules themselves never excuse an absence)."""
    recorded = kept_by.get(newest) if newest is not None else None
    for name, rules in lifecycle.items():
        bucket = str(getattr(archives[name], "bucket", name))
        if rules is None:
            report.notes.append(f"lifecycle rules of {bucket} not checked (s3:GetLifecycleConfiguration denied)")
        elif recorded is None:
            report.notes.append(f"lifecycle rules of {bucket} not compared: the newest digest records no retention")
        else:
            for rule, why, kept in sooner_rules(recorded, name, rules):
                report.findings.append(
                    Finding(
                        "retention",
                        f"{bucket} rule {rule}",
                        f"{why}; the digests record {kept} days (digest {newest}): S3 would remove "
                        "what verify then reports missing",
                    )
                )


def _check_head(report: VerifyReport, chain: dict[int, tuple[str, str]], links: dict[int, dict[str, Any]],
                head: ChainHead | None, expected: tuple[int, str] | None) -> None:  # fmt: skip
    last = max(chain, default=0)
    if head is not None:
        try:
            stored = head.load()
        except DigestError as exc:  # cut short, not JSON, not a head: a finding, not a crash
            report.findings.append(Finding("head", str(getattr(head, "path", DIGEST_HEAD)), str(exc)))
        else:
            if stored is None:
                if last:
                    report.findings.append(
                        Finding("head", chain[last][0], f"{last} digests, but no chain head recorded")
                    )
            elif int(stored.get("sequence", 0)) > last:
                report.findings.append(
                    Finding(
                        "head",
                        str(stored.get("key")),
                        f"the chain head is at digest {stored.get('sequence')}, "
                        f"the chain ends at {last}: digests removed",
                    )
                )
            elif int(stored.get("sequence", 0)) < last:
                report.findings.append(
                    Finding(
                        "head",
                        chain[last][0],
                        f"the chain runs to digest {last}, past its "
                        f"head ({stored.get('sequence')}): the head was moved back",
                    )
                )
            elif (stored.get("key"), stored.get("sha256")) != chain[last]:
                report.findings.append(
                    Finding(
                        "head", chain[last][0], "the newest digest is not the one the chain head names: it was replaced"
                    )
                )
    if expected is not None:
        sequence, sha = expected
        name = f"{PREFIX}{sequence:010d}.json"
        after = links.get(sequence + 1)
        if sequence > last:
            report.findings.append(
                Finding(
                    "head", name, f"the recorded head is digest {sequence}; the chain ends at {last}: digests removed"
                )
            )
        elif sequence in chain:
            if chain[sequence][1] != sha:
                report.findings.append(
                    Finding(
                        "head",
                        chain[sequence][0],
                        "differs from the recorded head (its SHA-256): the chain was rewritten from there",
                    )
                )
            else:
                report.expected_head, report.expected_checked = f"recorded head {sequence} held", True
        elif after is not None and after.get("key") == name:
            # The recorded digest expired; the next one names it by its SHA-256, under its signature.
            if after.get("sha256") != sha:
                report.findings.append(
                    Finding(
                        "head",
                        chain[sequence + 1][0],
                        f"names digest {sequence} (expired) by a SHA-256 other than the recorded head's: "
                        "the chain was rewritten from there",
                    )
                )
            else:
                report.expected_head = (
                    f"recorded head {sequence} held (expired; digest {sequence + 1} names its SHA-256)"
                )
                report.expected_checked = True
        else:
            report.expected_head = "recorded head expired: not checked"


def _ago(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds}s"


class _LedgerView:
    """The ledger hours verify needs, each read once."""

    def __init__(self, ledger: Ledger | None, now: datetime | None, settle: timedelta,
                 horizon: datetime | None = None) -> None:  # fmt: skip
        self.ledger, self.now, self.settle, self.horizon = ledger, now, settle, horizon
        self._hours: dict[str, list[Entry]] = {}
        self._since_horizon: dict[str, Entry] | None = None

    def _entries(self, hour: str) -> list[Entry]:
        if hour not in self._hours:
            self._hours[hour] = self.ledger.entries(hour) if self.ledger is not None else []
        return self._hours[hour]

    def find(self, key: str, written: datetime) -> Entry | None:
        """The entry of ``key``, written at ``written`` (after the last digest): looked up around
        that time, then in every ledger hour since the last digest's window. A copy of the lake
        (cp -a, tar, a restore) dates its files when it was made, long after their entries."""
        for hour in hours(written - self.settle - SKEW, written + SKEW):
            for entry in self._entries(hour):
                if entry.key == key:
                    return entry
        return self._recorded_since_horizon(written).get(key)

    def _recorded_since_horizon(self, written: datetime) -> dict[str, Entry]:
        if self._since_horizon is None:
            self._since_horizon = {}
            end = max(written, self.now or written) + SKEW
            first = self.ledger.first_hour() if self.ledger is not None else None
            # No further back than the ledger holds: its first hour, or (deployed) what DynamoDB keeps.
            floor = parse(f"{first}:00:00Z") if first else end - timedelta(seconds=KEEP_SECONDS)
            begin = self.horizon - self.settle - SKEW if self.horizon else floor
            for hour in hours(max(begin, floor), end):
                for entry in self._entries(hour):
                    self._since_horizon.setdefault(entry.key, entry)
        return self._since_horizon

    def since(self, moment: datetime) -> Iterator[Entry]:
        """Entries stamped from ``moment`` to now (no further back than the deployed ledger keeps)."""
        if self.now is None:
            return
        moment = max(moment, self.now - timedelta(seconds=KEEP_SECONDS))
        for hour in hours(moment, self.now + SKEW):
            for entry in self._entries(hour):
                try:
                    if parse(entry.written_at) >= moment:
                        yield entry
                except (TypeError, ValueError):
                    continue
