"""The state table's stored layout, pinned byte for byte.

Every other test builds its keys with state_table's builders, so a renamed prefix or sort key would
pass them all. But deployed tables hold these keys: a changed builder no longer finds what is stored
(every webhook token answers 401, the digest chain loses its head, checkpoints and leases restart).
Changing one of these literals is a data migration, not a refactor.
"""

from __future__ import annotations

from auditlake import state_table
from auditlake.state_table import (
    PREFIXES,
    alert_key,
    alert_partition,
    alert_stream,
    checkpoint_key,
    cluster_key,
    correlation_identity,
    digest_head_key,
    finding_key,
    ledger_key,
    ledger_partition,
    lock_key,
    lock_name,
    poller_key,
    polling_key,
    seen_key,
    token_hash_from,
    token_key,
)


def _key(pk: str, sk: str) -> dict[str, dict[str, str]]:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def test_every_prefix_is_pinned() -> None:
    assert PREFIXES == (
        "TOKEN#", "CLUSTER#", "POLLING", "POLLER#", "CHECKPOINT#", "ALERT#", "SEEN", "LOCK#", "LEDGER#", "DIGEST#HEAD",
        "FINDING#", "COMPACTED#",
    )  # fmt: skip
    assert {"CLUSTER#", "CHECKPOINT#"} == state_table.OPERATOR_ONLY
    assert (state_table.TOKEN_SORT, state_table.CLUSTER_SORT) == ("TOKEN", "CLUSTER")
    assert state_table.TTL == "ttl"  # items written with it expire by it: renaming it stops expiry


def test_each_builders_stored_key() -> None:
    assert token_key("ab") == _key("TOKEN#ab", "TOKEN")
    assert token_hash_from("TOKEN#ab") == "ab"
    assert cluster_key("prod") == _key("CLUSTER#prod", "CLUSTER")
    assert polling_key("prod") == _key("POLLING", "prod")
    assert poller_key("prod") == _key("POLLER#prod", "LEASE")
    assert checkpoint_key("backfill/prod") == _key("CHECKPOINT#backfill/prod", "CHECKPOINT")
    assert seen_key("prod") == _key("SEEN", "prod")
    assert digest_head_key() == _key("DIGEST#HEAD", "HEAD")


def test_alert_counters_keys() -> None:
    stream = alert_stream("forbidden", "prod", "system:serviceaccount:ns:sa#x")
    assert stream == "forbidden#prod#system:serviceaccount:ns:sa#x"
    assert alert_partition(stream) == "ALERT#forbidden#prod#system:serviceaccount:ns:sa#x"
    assert alert_key(stream, "2025-01-01T00:00:10") == _key(
        "ALERT#forbidden#prod#system:serviceaccount:ns:sa#x", "2025-01-01T00:00:10"
    )


def test_correlation_streams_keys() -> None:
    """One group-by value is the identity as it is (the 403 rules' keys stay what a running stack
    holds); several are escaped and joined, so no two groups share a stream."""
    assert correlation_identity(["mallory@example.com"]) == "mallory@example.com"
    assert correlation_identity([None]) == "(unknown)"
    assert correlation_identity(["a|b", "c"]) == "a%7Cb|c" != correlation_identity(["a", "b|c"])
    assert correlation_identity(["50%", "#x"]) == "50%25|%23x"
    assert alert_stream("my#rule", "prod", "eve") == "my%23rule#prod#eve"


def test_finding_page_keys() -> None:
    assert finding_key("0f6c", "prod", "eve#1", "secrets/prod/db-pass") == _key(
        "FINDING#0f6c#prod#eve%231#secrets/prod/db-pass", "PAGE"
    )
    long = finding_key("r", "prod", "x" * 3000, "pods/ns/p")["pk"]["S"]
    assert len(long.encode()) <= 2048 and long.startswith("FINDING#r#prod#xxx")
    assert long != finding_key("r", "prod", "x" * 3000, "pods/ns/q")["pk"]["S"]


def test_partition_lock_keys() -> None:
    name = lock_name("audit", "2025-01-01", "07")
    assert name == "audit#2025-01-01#07"
    assert lock_key(name) == _key("LOCK#audit#2025-01-01#07", "LOCK")


def test_ledger_keys() -> None:
    key = "audit/dt=2025-01-01/hour=07/prod-20250101T070000Z-000000000000.parquet"
    assert ledger_partition("2025-01-01T07") == "LEDGER#2025-01-01T07"
    assert ledger_key("2025-01-01T07", key) == _key("LEDGER#2025-01-01T07", key)


def test_leading_keys_patterns() -> None:
    assert [state_table.leading_keys(prefix) for prefix in PREFIXES] == [
        "TOKEN#*", "CLUSTER#*", "POLLING", "POLLER#*", "CHECKPOINT#*", "ALERT#*", "SEEN", "LOCK#*", "LEDGER#*",
        "DIGEST#HEAD", "FINDING#*", "COMPACTED#*",
    ]  # fmt: skip
