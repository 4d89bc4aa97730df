"""Raw landing keys, encoding, and the local store's safety."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from auditlake.landing import Landing, batch_id, decode_lines, encode_lines, valid_cluster_name
from auditlake.stores import StoreError
from auditlake.stores.local import LocalStore

AT = datetime(2026, 3, 4, 7, 59, tzinfo=UTC)


def test_raw_key_layout(tmp_path: Path) -> None:
    landing = Landing(LocalStore(tmp_path), "audit")
    key = landing.write_raw("prod-eu", AT, "abc", [b'{"a":1}', b'{"a":2}'])
    assert key == "raw/audit/2026/03/04/07/prod-eu/abc.ndjson.zst"
    assert decode_lines(LocalStore(tmp_path).get(key)) == [b'{"a":1}', b'{"a":2}']
    assert landing.write_raw("prod-eu", AT, "empty", []) is None


def test_zstd_round_trip_and_frame() -> None:
    data = encode_lines([b"x" * 1000] * 100)
    assert data[:4] == b"\x28\xb5\x2f\xfd" and len(data) < 1000  # a zstd frame, compressed
    assert decode_lines(data) == [b"x" * 1000] * 100


def test_batch_id_depends_on_cluster_source_and_bytes() -> None:
    ids = {
        batch_id("a", "webhook", b"x"),
        batch_id("b", "webhook", b"x"),
        batch_id("a", "file", b"x"),
        batch_id("a", "webhook", b"y"),
    }
    assert len(ids) == 4 and batch_id("a", "webhook", b"x") == batch_id("a", "webhook", b"x")


@pytest.mark.parametrize("name", ["prod", "prod-eu-1", "a", "x" * 63])
def test_valid_cluster_names(name: str) -> None:
    assert valid_cluster_name(name)


@pytest.mark.parametrize("name", ["", "Prod", "-a", "a-", "a_b", "a/b", "../x", "x" * 64, "a.b"])
def test_invalid_cluster_names(name: str, tmp_path: Path) -> None:
    assert not valid_cluster_name(name)
    with pytest.raises(ValueError, match="invalid cluster name"):
        Landing(LocalStore(tmp_path)).write_raw(name, AT, "b", [b"{}"])


def test_local_store_refuses_keys_outside_the_lake(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "lake")
    for key in ("../escape", "/etc/passwd", "raw/../../x"):
        with pytest.raises(StoreError):
            store.put(key, b"x")


def test_local_store_writes_atomically_and_lists_in_order(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put("raw/b", b"2")
    store.put("raw/a", b"1")
    (tmp_path / "raw" / ".tmp-partial").write_bytes(b"half")  # a crashed writer's leftover
    assert list(store.list("raw/")) == ["raw/a", "raw/b"]
    assert list(store.list("nothing/")) == []


def test_year_one_is_zero_padded_in_keys(tmp_path: Path) -> None:
    landing = Landing(LocalStore(tmp_path), "audit")
    assert landing.raw_key("c1", datetime(1, 1, 1, tzinfo=UTC), "b") == "raw/audit/0001/01/01/00/c1/b.ndjson.zst"


def test_decode_lines_reads_every_frame_and_strict_refuses_a_cut_one() -> None:
    two = encode_lines([b"a"]) + encode_lines([b"b"])
    assert decode_lines(two) == [b"a", b"b"]
    with pytest.raises(ValueError, match="cut"):
        decode_lines(two[:-3], strict=True)
    assert decode_lines(two[:-3]) == [b"a"]  # a reader that shows a lake gets what can be read


def test_quarantine_never_replaces_another_quarantine(tmp_path: Path) -> None:
    from auditlake.landing import ItemFailure

    store = LocalStore(tmp_path)
    landing = Landing(store, "audit")

    def failure(reason: str) -> ItemFailure:
        return ItemFailure(index=1, reason=reason, item={"auditID": "x"})

    first = landing.quarantine("c1", AT, "b1", source="webhook", reason="r", failures=[failure("one")])
    retry = landing.quarantine(
        "c1", AT.replace(second=9), "b1", source="webhook", reason="r", failures=[failure("one")]
    )
    assert retry == first  # the sender's retry of the same batch: kept once
    other = landing.quarantine("c1", AT, "b1", source="webhook", reason="r", failures=[failure("two")])
    assert other != first and other[0].startswith("quarantine/audit/c1/2026/03/04/07/b1-")
    reasons = [store.get(k) for k in store.list("quarantine/")]
    assert len(reasons) == 2 and any(b'"one"' in r for r in reasons) and any(b'"two"' in r for r in reasons)
    body = landing.quarantine("c1", AT, "b2", source="webhook", reason="unreadable", payload=b"\xff")
    assert landing.quarantine("c1", AT, "b2", source="webhook", reason="unreadable", payload=b"\xff") == body
