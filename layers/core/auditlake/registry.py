"""Cluster registry and webhook tokens, in the state table (single-table design).

Items: ``CLUSTER#<name>/CLUSTER`` (the cluster) and ``TOKEN#<sha256>/TOKEN`` -> cluster. Only the
SHA-256 of a token is ever stored; the cluster a batch belongs to is the one its token maps to.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from botocore.exceptions import ClientError

from .landing import valid_cluster_name

TOKEN_PREFIX = "alk_"  # noqa: S105 - a prefix that makes leaked tokens greppable, not a secret


class RegistryError(RuntimeError):
    pass


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 512:
        return None
    return token


class TokenRegistry(Protocol):
    def cluster_for(self, token_sha256: str) -> str | None: ...


class StaticTokens:
    """A fixed token -> cluster map: ``auditlake serve --token-file``."""

    def __init__(self, hashes: Mapping[str, str]) -> None:
        self._hashes = dict(hashes)

    def cluster_for(self, token_sha256: str) -> str | None:
        return self._hashes.get(token_sha256)


class DynamoRegistry:
    """Registry on DynamoDB, with a short in-memory cache so every batch does not cost a read.

    Revoking a token takes effect within ``cache_seconds``.
    """

    def __init__(
        self,
        client: Any,
        table: str,
        *,
        cache_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.table = table
        self.cache_seconds = cache_seconds
        self._clock = clock
        self._cache: dict[str, tuple[float, str | None]] = {}

    def cluster_for(self, token_sha256: str) -> str | None:
        now = self._clock()
        hit = self._cache.get(token_sha256)
        if hit is not None and hit[0] > now:
            return hit[1]
        try:
            item = self.client.get_item(
                TableName=self.table,
                Key={"pk": {"S": f"TOKEN#{token_sha256}"}, "sk": {"S": "TOKEN"}},
                ProjectionExpression="#c",
                ExpressionAttributeNames={"#c": "cluster"},
            ).get("Item")
        except ClientError as exc:
            raise RegistryError(f"token lookup failed: {exc.response['Error']['Code']}") from exc
        cluster = item["cluster"]["S"] if item else None
        # Unknown tokens are cached briefly too, so guessing does not turn into one read per request.
        ttl = self.cache_seconds if cluster else min(self.cache_seconds, 10.0)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[token_sha256] = (now + ttl, cluster)
        return cluster

    def add_cluster(self, name: str, token_sha256: str, *, created_at: str) -> None:
        """Register a new cluster with its first token; fails if the cluster exists."""
        if not valid_cluster_name(name):
            raise RegistryError(f"invalid cluster name {name!r}: use a DNS label (a-z, 0-9, '-', <= 63)")
        try:
            self.client.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self.table,
                            "Item": {
                                "pk": {"S": f"CLUSTER#{name}"},
                                "sk": {"S": "CLUSTER"},
                                "name": {"S": name},
                                "created_at": {"S": created_at},
                                "ingest": {"S": "webhook"},
                            },
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                    {
                        "Put": {
                            "TableName": self.table,
                            "Item": {
                                "pk": {"S": f"TOKEN#{token_sha256}"},
                                "sk": {"S": "TOKEN"},
                                "cluster": {"S": name},
                                "created_at": {"S": created_at},
                            },
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                ]
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "TransactionCanceledException":
                raise RegistryError(f"cluster {name!r} is already registered") from exc
            raise RegistryError(f"cannot register {name!r}: {exc.response['Error']['Code']}") from exc

    def clusters(self) -> list[dict[str, str]]:
        out: list[dict[str, str]] = []
        paginator = self.client.get_paginator("scan")
        for page in paginator.paginate(
            TableName=self.table,
            FilterExpression="sk = :c",
            ExpressionAttributeValues={":c": {"S": "CLUSTER"}},
        ):
            for item in page.get("Items", ()):
                out.append({k: v["S"] for k, v in item.items() if "S" in v})
        return sorted(out, key=lambda c: c["name"])
