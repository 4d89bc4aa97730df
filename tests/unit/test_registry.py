"""Token lookups: only hashes, and a cache so every batch does not cost a DynamoDB read."""

from __future__ import annotations

from typing import Any

import pytest

from auditlake.clusters.registry import DynamoRegistry, bearer_token, new_token, token_hash
from auditlake.state_table import token_hash_from


class CountingTable:
    def __init__(self, items: dict[str, str]) -> None:
        self.items = items
        self.reads = 0

    def get_item(self, **kwargs: Any) -> dict[str, Any]:
        self.reads += 1
        cluster = self.items.get(token_hash_from(kwargs["Key"]["pk"]["S"]))
        return {"Item": {"cluster": {"S": cluster}}} if cluster else {}


def test_known_tokens_are_cached_for_a_minute_unknown_ones_for_ten_seconds() -> None:
    now = [0.0]
    table = CountingTable({token_hash("good"): "prod"})
    registry = DynamoRegistry(table, "state", cache_seconds=60, clock=lambda: now[0])
    assert [registry.cluster_for(token_hash("good")) for _ in range(3)] == ["prod"] * 3
    assert [registry.cluster_for(token_hash("bad")) for _ in range(3)] == [None] * 3
    assert table.reads == 2
    now[0] = 11  # unknown tokens are looked up again soon: a token just registered starts working
    registry.cluster_for(token_hash("bad"))
    registry.cluster_for(token_hash("good"))
    assert table.reads == 3
    now[0] = 61  # revocation takes effect within the cache time
    del table.items[token_hash("good")]
    assert registry.cluster_for(token_hash("good")) is None


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer  abc ", "abc"),
        ("Basic abc", None),
        ("Bearer", None),
        (None, None),
        ("Bearer " + "x" * 600, None),
    ],
)
def test_bearer_header(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


def test_new_tokens_are_long_random_and_recognisable() -> None:
    tokens = {new_token() for _ in range(100)}
    assert len(tokens) == 100 and all(t.startswith("alk_") and len(t) >= 40 for t in tokens)
    assert len(token_hash("x")) == 64


@pytest.mark.parametrize("error", ["reset", "timeout", "unreachable"])
def test_a_table_unreachable_after_botocores_retries_is_a_registry_error(error: str) -> None:
    """A transport error (not a ClientError) used to escape, so the webhook Lambda raised instead of
    answering its own 503 "registry unavailable, retry" (found by make chaos, seed 2)."""
    from botocore.exceptions import ConnectionClosedError, EndpointConnectionError, ReadTimeoutError

    from auditlake.clusters.registry import RegistryError

    raised = {
        "reset": ConnectionClosedError(endpoint_url="https://dynamodb"),
        "timeout": ReadTimeoutError(endpoint_url="https://dynamodb"),
        "unreachable": EndpointConnectionError(endpoint_url="https://dynamodb"),
    }[error]

    class Unreachable:
        def get_item(self, **_: Any) -> dict[str, Any]:
            raise raised

    with pytest.raises(RegistryError, match=f"token lookup failed: {type(raised).__name__}"):
        DynamoRegistry(Unreachable(), "state").cluster_for(token_hash("good"))
