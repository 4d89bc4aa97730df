"""S3 adapter. The client is built by the caller (once per cold start) and passed in."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, BinaryIO

from botocore.exceptions import BotoCoreError, ClientError

from . import AlreadyExists, StoreError


class RangeReader(io.RawIOBase):
    """A seekable file over an S3 object, reading only the byte ranges asked for."""

    def __init__(self, client: Any, bucket: str, key: str) -> None:
        self.client, self.bucket, self.key = client, bucket, key
        try:
            self.size = int(client.head_object(Bucket=bucket, Key=key)["ContentLength"])
        except (BotoCoreError, ClientError) as exc:
            raise StoreError(f"cannot read s3://{bucket}/{key}: {exc}") from exc
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
        except (BotoCoreError, ClientError) as exc:
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
        except (BotoCoreError, ClientError) as exc:
            raise StoreError(f"cannot read s3://{self.bucket}/{key}: {exc}") from exc
        return body

    def size(self, key: str) -> int | None:
        head = self._head(key)
        return None if head is None else int(head["ContentLength"])

    def modified(self, key: str) -> datetime | None:
        head = self._head(key)
        return None if head is None else head["LastModified"].astimezone(UTC)

    def _head(self, key: str) -> dict[str, Any] | None:
        """The object's HeadObject answer; None when there is no such object."""
        try:
            return dict(self.client.head_object(Bucket=self.bucket, Key=key))
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
                return None
            raise StoreError(f"cannot read s3://{self.bucket}/{key}: {exc}") from exc
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
