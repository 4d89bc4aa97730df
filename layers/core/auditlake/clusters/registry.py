"""Cluster registry and webhook tokens, in the state table (single-table design).

Items: ``CLUSTER#<name>/CLUSTER`` (the cluster), ``TOKEN#<sha256>/TOKEN`` -> cluster, and
``POLLING/<name>`` (how the Events poller reaches a cluster: one partition, so the every-minute
fan-out reads it by key instead of scanning the table). Only the SHA-256 of a token is ever
stored; the cluster a batch belongs to is the one its token maps to.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any, Literal, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from auditlake.jsonio import JSONError, dumps_str, loads
from auditlake.landing import valid_cluster_name
from auditlake.state_table import (
    CLUSTER_SORT,
    POLLING,
    TOKEN_SORT,
    cluster_key,
    conditional_write,
    polling_key,
    token_hash_from,
    token_key,
)

TOKEN_PREFIX = "alk_"  # noqa: S105 - a prefix that makes leaked tokens greppable, not a secret


def _code(exc: BotoCoreError | ClientError) -> str:
    """What failed, in a word: AWS's error code, or the transport error (reset, timeout, unreachable)."""
    return str(exc.response["Error"]["Code"]) if isinstance(exc, ClientError) else type(exc).__name__


class RegistryError(RuntimeError):
    pass


class AlreadyRegistered(RegistryError):
    """add_cluster's condition refused: the cluster has an entry already."""


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


@dataclass(frozen=True)
class PollConfig:
    """How the Events poller reaches a cluster. Holds no credential: EKS tokens are minted from the
    poller's role, a static token stays in Secrets Manager (``token_secret`` is its ARN)."""

    auth: Literal["eks", "static"]
    eks_name: str | None = None  # EKS: the cluster's name in EKS (default: the registry name)
    server: str | None = None  # static: https://...
    ca_pem: str | None = None  # static: the API server's CA bundle (public)
    token_secret: str | None = None  # static: ARN or name of the secret holding the token
    token_ttl: int = 600  # static: seconds before the secret is read again
    insecure_skip_tls_verify: bool = False
    event_ttl: int = 3600  # the API server's --event-ttl: how far back a relist can see

    def __post_init__(self) -> None:
        problems = []
        if self.auth == "eks":
            if not self.eks_name:
                problems.append("an EKS cluster needs its EKS name")
        elif self.auth == "static":
            if not (self.server or "").startswith("https://"):
                problems.append("the server must be an https:// URL")
            if not self.token_secret:
                problems.append("a token secret is required")
            if not self.ca_pem and not self.insecure_skip_tls_verify:
                problems.append("a CA bundle is required (or the explicit insecure flag)")
        else:
            problems.append(f"auth must be eks or static, got {self.auth!r}")
        if self.token_ttl < 1 or self.event_ttl < 60:
            problems.append("token_ttl must be >= 1 s and event_ttl >= 60 s")
        if problems:
            raise RegistryError("; ".join(problems))

    def to_json(self) -> str:
        return dumps_str({k: v for k, v in asdict(self).items() if v is not None})

    @classmethod
    def from_json(cls, text: str) -> PollConfig:
        try:
            doc = loads(text.encode())
            return cls(**doc)
        except (JSONError, TypeError) as exc:
            raise RegistryError(f"unreadable poll configuration: {exc}") from None


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
                Key=token_key(token_sha256),
                ProjectionExpression="#c",
                ExpressionAttributeNames={"#c": "cluster"},
            ).get("Item")
        except (BotoCoreError, ClientError) as exc:  # a transport error too, once botocore's retries are spent
            raise RegistryError(f"token lookup failed: {_code(exc)}") from exc
        cluster = item["cluster"]["S"] if item else None
        # Unknown tokens are cached briefly too, so guessing does not turn into one read per request.
        ttl = self.cache_seconds if cluster else min(self.cache_seconds, 10.0)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[token_sha256] = (now + ttl, cluster)
        return cluster

    def add_cluster(self, name: str, token_sha256: str, *, created_at: str, poll: PollConfig | None = None) -> None:
        """Register a new cluster with its first token; fails if the cluster exists."""
        if not valid_cluster_name(name):
            raise RegistryError(f"invalid cluster name {name!r}: use a DNS label (a-z, 0-9, '-', <= 63)")
        polling = [{"Put": self._polling_put(name, poll)}] if poll else []
        register = partial(
            self.client.transact_write_items,
            TransactItems=[
                {
                    "Put": {
                        "TableName": self.table,
                        "Item": {
                            **cluster_key(name),
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
                        "Item": {**token_key(token_sha256), "cluster": {"S": name}, "created_at": {"S": created_at}},
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
                *polling,
            ],
        )
        if conditional_write(register, RegistryError, f"register {name!r}") is None:
            raise AlreadyRegistered(f"cluster {name!r} is already registered")

    def add_token(self, name: str, token_sha256: str, *, created_at: str) -> None:
        """Another token for a registered cluster (rotation: both work until the old one is revoked)."""
        add = partial(
            self.client.transact_write_items,
            TransactItems=[
                {"ConditionCheck": {"TableName": self.table, "Key": cluster_key(name),
                                    "ConditionExpression": "attribute_exists(pk)"}},
                {"Put": {"TableName": self.table, "ConditionExpression": "attribute_not_exists(pk)", "Item": {
                    **token_key(token_sha256), "cluster": {"S": name}, "created_at": {"S": created_at}}}},
            ],
        )  # fmt: skip
        if conditional_write(add, RegistryError, f"add a token to {name!r}") is None:
            raise RegistryError(f"cluster {name!r} is not registered")

    def tokens(self, name: str) -> list[dict[str, str]]:
        """The cluster's tokens, as SHA-256 and creation time, oldest first."""
        out: list[dict[str, str]] = []
        for page in self.client.get_paginator("scan").paginate(
            TableName=self.table,
            FilterExpression="sk = :t AND #c = :n",
            ExpressionAttributeNames={"#c": "cluster"},
            ExpressionAttributeValues={":t": {"S": TOKEN_SORT}, ":n": {"S": name}},
        ):
            for item in page.get("Items", ()):
                out.append({"sha256": token_hash_from(item["pk"]["S"]), "created_at": item["created_at"]["S"]})
        return sorted(out, key=lambda t: t["created_at"])

    def revoke_token(self, name: str, token_sha256: str) -> None:
        """Delete one of the cluster's tokens; refuses the last one (the cluster would be cut off)."""
        tokens = {t["sha256"] for t in self.tokens(name)}
        if token_sha256 not in tokens:
            raise RegistryError(f"cluster {name!r} has no token with SHA-256 {token_sha256}")
        if len(tokens) == 1:
            raise RegistryError(f"that is {name!r}'s only token: rotate first, then revoke the old one")
        revoke = partial(
            self.client.delete_item,
            TableName=self.table,
            Key=token_key(token_sha256),
            ConditionExpression="#c = :n",
            ExpressionAttributeNames={"#c": "cluster"},
            ExpressionAttributeValues={":n": {"S": name}},
        )
        if conditional_write(revoke, RegistryError, "revoke") is None:  # revoked meanwhile
            raise RegistryError(f"cluster {name!r} has no token with SHA-256 {token_sha256}")

    def set_polling(self, name: str, poll: PollConfig, *, created_at: str) -> None:
        """Poll this cluster's Events (creating its entry if it has none: an EKS cluster sends audit
        through CloudWatch and needs no token)."""
        if not valid_cluster_name(name):
            raise RegistryError(f"invalid cluster name {name!r}: use a DNS label (a-z, 0-9, '-', <= 63)")
        cluster = {
            "TableName": self.table,
            "Key": cluster_key(name),
            "UpdateExpression": "SET #n = :n, created_at = if_not_exists(created_at, :t)",
            "ExpressionAttributeNames": {"#n": "name"},
            "ExpressionAttributeValues": {":n": {"S": name}, ":t": {"S": created_at}},
        }
        try:
            self.client.transact_write_items(
                TransactItems=[{"Update": cluster}, {"Put": self._polling_put(name, poll)}]
            )
        except (BotoCoreError, ClientError) as exc:  # a transport error too, once botocore's retries are spent
            raise RegistryError(f"cannot register {name!r}: {_code(exc)}") from exc

    def _polling_put(self, name: str, poll: PollConfig) -> dict[str, Any]:
        item = {**polling_key(name), "poll": {"S": poll.to_json()}}
        return {"TableName": self.table, "Item": item}

    def polled(self) -> dict[str, PollConfig]:
        """Every cluster whose Events are polled, by name: one partition, read by key (every minute)."""
        out: dict[str, PollConfig] = {}
        try:
            for page in self.client.get_paginator("query").paginate(
                TableName=self.table,
                KeyConditionExpression="pk = :p",
                ExpressionAttributeValues={":p": {"S": POLLING}},
            ):
                for item in page.get("Items", ()):
                    out[item["sk"]["S"]] = PollConfig.from_json(item["poll"]["S"])
        except (BotoCoreError, ClientError) as exc:  # a transport error too, once botocore's retries are spent
            raise RegistryError(f"cannot list polled clusters: {_code(exc)}") from exc
        return dict(sorted(out.items()))

    def poll_config(self, name: str) -> PollConfig | None:
        try:
            item = self.client.get_item(TableName=self.table, Key=polling_key(name)).get("Item")
        except (BotoCoreError, ClientError) as exc:  # a transport error too, once botocore's retries are spent
            raise RegistryError(f"cluster lookup failed: {_code(exc)}") from exc
        return PollConfig.from_json(item["poll"]["S"]) if item else None

    def clusters(self) -> list[dict[str, str]]:
        out: list[dict[str, str]] = []
        paginator = self.client.get_paginator("scan")
        for page in paginator.paginate(
            TableName=self.table,
            FilterExpression="sk = :c",
            ExpressionAttributeValues={":c": {"S": CLUSTER_SORT}},
        ):
            for item in page.get("Items", ()):
                out.append({k: v["S"] for k, v in item.items() if "S" in v})
        return sorted(out, key=lambda c: c["name"])
