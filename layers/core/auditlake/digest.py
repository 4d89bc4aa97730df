"""Tamper-evident digests of the archive, and their verification.

A digest lists every archive file written in its window (from the ledger: key, SHA-256, bytes,
rows, event time range), names the SHA-256 of the previous digest file, and is signed
(RSASSA-PSS with SHA-256: a KMS asymmetric key on AWS, a local RSA key in a local lake). Digests
form a chain: removing, reordering or editing one breaks it. They are written create-only to
``digests/<sequence>.json`` of the audit archive (under Object Lock when it is on).

``verify`` walks the chain and reports, exiting non-zero when anything is wrong:
``bad-signature`` and ``chain`` (digests altered, missing or out of order), ``missing`` and
``altered`` (a sealed file gone or different), ``extra`` (an archive file no digest lists,
written before the last digest's end). Files written after it are ``unsealed``: not yet sealed,
not an error.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from .ledger import Ledger, hours
from .stores import Store, StoreError
from .timestamps import format_utc, parse

FORMAT = "auditlake-digest/1"
ALGORITHM = "RSASSA_PSS_SHA_256"
PREFIX = "digests/"
ARCHIVE_PREFIXES = ("audit/", "events/")
_STAMP = re.compile(r"-(\d{8}T\d{6}Z)-[0-9a-f]+\.parquet$")  # compactor file names carry their write time


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


class LocalSigner:
    """An RSA-3072 key in the local lake (created on first use, mode 0600)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        self.path = Path(path)
        if not self.path.exists():
            key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
            pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())  # fmt: skip
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(pem)
        self._key: Any = serialization.load_pem_private_key(self.path.read_bytes(), password=None)
        public = self._key.public_key().public_bytes(serialization.Encoding.DER,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo)  # fmt: skip
        self.key_id = "local:sha256:" + hashlib.sha256(public).hexdigest()[:16]

    @staticmethod
    def _scheme() -> tuple[Any, Any]:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding, utils

        # As KMS's RSASSA_PSS_SHA_256: MGF1 with SHA-256, salt as long as the hash.
        return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), utils.Prehashed(hashes.SHA256())

    def sign(self, digest: bytes) -> bytes:
        pss, prehashed = self._scheme()
        return bytes(self._key.sign(digest, pss, prehashed))

    def verify(self, digest: bytes, signature: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature

        pss, prehashed = self._scheme()
        try:
            self._key.public_key().verify(signature, digest, pss, prehashed)
        except InvalidSignature:
            return False
        return True


class ChainHead(Protocol):
    def load(self) -> dict[str, Any] | None:
        """The last digest: sequence, key, sha256, to. None before the first."""
        ...

    def advance(self, previous: int, head: dict[str, Any]) -> None:
        """Store ``head`` if the stored sequence is still ``previous`` (0: none); DigestError if not."""
        ...


class DynamoChainHead:
    def __init__(self, client: Any, table: str) -> None:
        self.client, self.table = client, table
        self._key = {"pk": {"S": "DIGEST#HEAD"}, "sk": {"S": "HEAD"}}

    def load(self) -> dict[str, Any] | None:
        try:
            item = self.client.get_item(TableName=self.table, Key=self._key, ConsistentRead=True).get("Item")
        except (BotoCoreError, ClientError) as exc:
            raise DigestError(f"cannot read the digest chain head: {exc}") from exc
        return json.loads(item["head"]["S"]) if item else None

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
            loaded: dict[str, Any] = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        return loaded

    def advance(self, previous: int, head: dict[str, Any]) -> None:
        with self._locked():
            current = self.load()
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
    dropped: list[str] = field(default_factory=list)  # in the ledger, but the write never happened


class Digester:
    def __init__(self, ledger: Ledger, archives: Mapping[str, Store], head: ChainHead, signer: Signer) -> None:
        self.ledger, self.archives, self.head, self.signer = ledger, archives, head, signer

    def seal(self, until: datetime, *, start: datetime, hourly: bool = True) -> SealReport:
        """Seal what was written before ``until`` and after the last digest (the first digest starts
        at ``start``): one digest per clock hour, or (``hourly=False``) one for the whole span."""
        report = SealReport()
        # Whole seconds: file names carry their write time to the second, so verify can tell exactly
        # which side of a digest's end an unlisted file was written on.
        until = until.replace(microsecond=0)
        head = self.head.load()
        begin = parse(head["to"]) if head else start
        while begin < until:
            end = min(begin.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1), until) if hourly else until
            head = self._seal_window(head, begin, end, report)
            begin = end
        return report

    def seal_finished_hours(self, now: datetime, *, grace: timedelta = timedelta(minutes=5)) -> SealReport:
        """The deployed schedule: every hour that ended ``grace`` ago (writes of it have landed),
        one digest each. The first digest looks back a day: the ledger cannot be listed cheaply."""
        until = (now - grace).replace(minute=0, second=0, microsecond=0)
        return self.seal(until, start=until - timedelta(days=1))

    def _seal_window(self, head: dict[str, Any] | None, start: datetime, end: datetime,
                     report: SealReport) -> dict[str, Any]:  # fmt: skip
        objects = []
        for hour in hours(start, end):
            for entry in self.ledger.entries(hour):
                if not start <= parse(entry.written_at) < end:
                    continue
                if self.archives[entry.key.split("/", 1)[0]].size(entry.key) != entry.bytes:
                    report.dropped.append(entry.key)  # the write after the ledger entry failed
                    continue
                objects.append(asdict(entry))
        sequence = (head or {}).get("sequence", 0) + 1
        doc: dict[str, Any] = {
            "format": FORMAT,
            "sequence": sequence,
            "from": format_utc(start),
            "to": format_utc(end),
            "previous": {"key": head["key"], "sha256": head["sha256"]} if head else None,
            "objects": sorted(objects, key=lambda o: o["key"]),
        }
        signature = self.signer.sign(message_digest(doc))
        doc["signature"] = {"algorithm": ALGORITHM, "key_id": self.signer.key_id,
                            "value": base64.b64encode(signature).decode()}  # fmt: skip
        data = canonical(doc)
        key = f"{PREFIX}{sequence:010d}.json"
        try:
            self.archives["audit"].put(key, data, "application/json", create_only=True)
        except StoreError as exc:
            raise DigestError(f"cannot write {key}: {exc}") from exc
        new_head = {"sequence": sequence, "key": key, "sha256": hashlib.sha256(data).hexdigest(), "to": doc["to"]}
        self.head.advance(sequence - 1, new_head)
        report.digests.append(key)
        report.objects += len(objects)
        return new_head


@dataclass
class Finding:
    kind: str  # bad-signature | chain | missing | altered | extra
    key: str
    detail: str


@dataclass
class VerifyReport:
    digests: int = 0
    objects: int = 0
    findings: list[Finding] = field(default_factory=list)
    unsealed: list[str] = field(default_factory=list)
    sealed_until: str | None = None

    @property
    def ok(self) -> bool:
        return not self.findings


def written_at(key: str) -> datetime | None:
    match = _STAMP.search(key)
    return datetime.strptime(match.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC) if match else None


def verify(archives: Mapping[str, Store], signer: Signer, *, start: datetime | None = None,
           end: datetime | None = None) -> VerifyReport:  # fmt: skip
    """Walk the whole chain; check the files of the digests overlapping [start, end)."""
    report = VerifyReport()
    digests = archives["audit"]
    sealed: set[str] = set()  # every file any digest lists
    to_check: list[dict[str, Any]] = []  # those of the digests overlapping [start, end)
    previous: tuple[str, bytes] | None = None
    for n, key in enumerate(sorted(k for k in digests.list(PREFIX) if k.endswith(".json")), start=1):
        data = digests.get(key)
        report.digests += 1
        try:
            doc = json.loads(data)
            signature = base64.b64decode(doc["signature"]["value"])
        except (ValueError, KeyError, TypeError) as exc:
            report.findings.append(Finding("bad-signature", key, f"not a signed digest: {exc}"))
            continue
        if not signer.verify(message_digest(doc), signature):
            report.findings.append(Finding("bad-signature", key, "the signature does not match the digest"))
        expected = {"key": previous[0], "sha256": hashlib.sha256(previous[1]).hexdigest()} if previous else None
        if doc.get("sequence") != n or doc.get("previous") != expected:
            report.findings.append(Finding("chain", key, f"expected digest {n} after {expected and expected['key']}"))
        previous = (key, data)
        report.sealed_until = doc.get("to")
        objects = doc.get("objects", ())
        sealed.update(obj["key"] for obj in objects)
        if not ((start and parse(doc["to"]) <= start) or (end and parse(doc["from"]) >= end)):
            to_check += objects
    for obj in to_check:
        key = obj["key"]
        report.objects += 1
        try:
            data = archives[key.split("/", 1)[0]].get(key)
        except StoreError:
            report.findings.append(Finding("missing", key, f"sealed in a digest ({obj['bytes']} bytes), not found"))
            continue
        if hashlib.sha256(data).hexdigest() != obj["sha256"]:
            report.findings.append(Finding("altered", key, "its SHA-256 differs from the digest's"))
    horizon = parse(report.sealed_until) if report.sealed_until else None
    for prefix in ARCHIVE_PREFIXES:
        for key in archives[prefix.rstrip("/")].list(prefix):
            if key in sealed:
                continue
            stamp = written_at(key)
            if stamp is not None and ((start and stamp < start) or (end and stamp >= end)):
                continue
            if stamp is not None and (horizon is None or stamp >= horizon):
                report.unsealed.append(key)
            else:
                report.findings.append(Finding("extra", key, "in the archive but in no digest"))
    return report
