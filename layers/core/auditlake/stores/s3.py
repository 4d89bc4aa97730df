"""S3 adapter. The client is built by the caller (once per cold start) and passed in.

Missing or forbidden: S3 answers HeadObject/GetObject on a missing key with 404 only when the
caller has ``s3:ListBucket`` on the bucket, and with 403 otherwise (it will not tell a caller who
may not list the bucket which keys exist). Every role that asks whether a key exists has
``s3:ListBucket``, so here a 404 is "no such object" and a 403 is always an error that names the
fix: reading a 403 as "missing" would let a permission fault pass for a missing file.

Archive tiers: an object in Glacier Flexible Retrieval or Deep Archive (not restored) answers
GetObject with ``InvalidObjectState``; reading it raises ``Archived`` (HeadObject still answers).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, BinaryIO

from botocore.exceptions import BotoCoreError, ClientError

from auditlake.stores import AlreadyExists, Archived, StoreError

# Tiers whose objects GetObject refuses until restored (Glacier Instant Retrieval reads like Standard).
ARCHIVE_TIERS = frozenset({"GLACIER", "DEEP_ARCHIVE"})


class RangeReader(io.RawIOBase):
    """A seekable file over an S3 object, reading only the byte ranges asked for."""

    def __init__(self, client: Any, bucket: str, key: str) -> None:
        self.client, self.bucket, self.key = client, bucket, key
        try:
            head = client.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            raise _read_error(bucket, key, exc) from exc
        except BotoCoreError as exc:
            raise StoreError(f"cannot read s3://{bucket}/{key}: {exc}") from exc
        if not _readable(head):  # found out now, not at the first range read
            raise Archived(f"s3://{bucket}/{key} is in {head.get('StorageClass')}: restore it to read it")
        self.size = int(head["ContentLength"])
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def readinto(self, buffer: Any) -> int:
        wanted = min(len(buffer), self.size - self.position)
        if wanted <= 0:
            return 0
        end = self.position + wanted - 1
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self.key, Range=f"bytes={self.position}-{end}")
            data = body["Body"].read()
        except ClientError as exc:
            raise _read_error(self.bucket, self.key, exc) from exc
        except BotoCoreError as exc:
            raise StoreError(f"cannot read s3://{self.bucket}/{self.key}: {exc}") from exc
        buffer[: len(data)] = data
        self.position += len(data)
        return len(data)


class S3Store:
    def __init__(self, client: Any, bucket: str) -> None:
        self.client = client
        self.bucket = bucket

    def put(
        self, key: str, data: bytes, content_type: str = "application/octet-stream", *, create_only: bool = False
    ) -> None:
        # put_object returns after S3 has stored the object durably (whole, or not at all). The
        # checksum is asked for explicitly: S3 refuses writes into an Object Lock bucket without one,
        # whatever SDK version the runtime has. If-None-Match makes S3 refuse to replace an object.
        extra = {"IfNoneMatch": "*"} if create_only else {}
        try:
            self.client.put_object(
                Bucket=self.bucket, Key=key, Body=data, ContentType=content_type, ChecksumAlgorithm="CRC32", **extra
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise AlreadyExists(f"s3://{self.bucket}/{key} exists") from exc
            raise StoreError(f"cannot write s3://{self.bucket}/{key}: {exc}") from exc
        except BotoCoreError as exc:
            raise StoreError(f"cannot write s3://{self.bucket}/{key}: {exc}") from exc

    def open(self, key: str) -> BinaryIO:
        return io.BufferedReader(RangeReader(self.client, self.bucket, key), buffer_size=1 << 20)

    def get(self, key: str) -> bytes:
        try:
            body: bytes = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            raise _read_error(self.bucket, key, exc) from exc
        except BotoCoreError as exc:
            raise StoreError(f"cannot read s3://{self.bucket}/{key}: {exc}") from exc
        return body

    def size(self, key: str) -> int | None:
        head = self._head(key)
        return None if head is None else int(head["ContentLength"])

    def modified(self, key: str) -> datetime | None:
        head = self._head(key)
        return None if head is None else head["LastModified"].astimezone(UTC)

    def _head(self, key: str) -> dict[str, Any] | None:
        """The object's HeadObject answer; None when there is no such object (404: see the module's
        docstring for why a 403 is an error, never "missing")."""
        try:
            return dict(self.client.head_object(Bucket=self.bucket, Key=key))
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
                return None
            raise _read_error(self.bucket, key, exc) from exc
        except BotoCoreError as exc:
            raise StoreError(f"cannot read s3://{self.bucket}/{key}: {exc}") from exc

    def list(self, prefix: str) -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for entry in page.get("Contents", ()):
                    yield entry["Key"]
        except (BotoCoreError, ClientError) as exc:
            raise StoreError(f"cannot list s3://{self.bucket}/{prefix}: {exc}") from exc


def _readable(head: dict[str, Any]) -> bool:
    """Whether GetObject will answer: not in an archive tier, or restored (``ongoing-request="false"``)."""
    return head.get("StorageClass") not in ARCHIVE_TIERS or 'ongoing-request="false"' in head.get("Restore", "")


def forbidden(exc: ClientError) -> bool:
    """Whether S3 refused the call for want of permission (403, however the error names it)."""
    code = str(exc.response.get("Error", {}).get("Code", ""))
    return (
        code in ("403", "AccessDenied", "Forbidden")
        or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 403
    )


def _read_error(bucket: str, key: str, exc: ClientError) -> StoreError:
    """What a refused HeadObject/GetObject means, said so that the fix is in the message."""
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    operation = exc.operation_name or "GetObject"
    if code == "InvalidObjectState":
        return Archived(f"s3://{bucket}/{key} is in {error.get('StorageClass', 'an archive tier')}: "
                        "restore it to read it")  # fmt: skip
    if forbidden(exc):
        return StoreError(
            f"{operation} on {bucket}/{key} answered 403: the role needs s3:ListBucket on the bucket "
            "to tell a missing key (404) from a forbidden one, and s3:GetObject on the key "
            f"(and kms:Decrypt on the bucket's key) to read it ({code or 'Forbidden'})"
        )
    return StoreError(f"cannot read s3://{bucket}/{key}: {exc}")
