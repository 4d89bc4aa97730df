"""`auditlake replay` batches and retries the way kube-apiserver's webhook backend does."""

from __future__ import annotations

import json
from typing import Any

import pytest

from auditlake.demo.replay import Replayer, ReplayError, batches, eventlist


def fake(replies: list[int]) -> tuple[Replayer, list[bytes], list[float]]:
    sent: list[bytes] = []
    sleeps: list[float] = []
    replayer = Replayer("http://127.0.0.1:1/v1/audit", "t", initial_backoff=10, sleep=sleeps.append)

    def post(body: bytes) -> tuple[int, dict[str, Any]]:
        sent.append(body)
        status = replies.pop(0)
        return status, {"accepted": len(json.loads(body)["items"])} if status == 200 else {"message": "x"}

    replayer._post = post  # type: ignore[method-assign]
    return replayer, sent, sleeps


def test_batches_follow_the_api_servers_limits() -> None:
    events = [
        {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "auditID": str(i), "pad": "x" * 100} for i in range(1000)
    ]
    groups = list(batches(events))
    assert [len(g) for g in groups] == [400, 400, 200]
    doc = json.loads(eventlist(groups[0]))
    assert doc["kind"] == "EventList" and "kind" not in doc["items"][0] and doc["items"][0]["auditID"] == "0"
    small = list(batches(events, max_bytes=10_000))
    assert all(len(eventlist(g)) <= 10_000 for g in small) and sum(map(len, small)) == 1000


def test_retries_with_growing_backoff_then_succeeds() -> None:
    replayer, sent, sleeps = fake([503, 500, 200])
    replayer.send([b'{"auditID":"a"}'])
    assert len(sent) == 3 and sleeps == [10, 15] and replayer.stats.retries == 2 and replayer.stats.events == 1


def test_gives_up_after_five_attempts() -> None:
    replayer, sent, _ = fake([503] * 5)
    with pytest.raises(ReplayError, match="after 5 attempts"):
        replayer.send([b"{}"])
    assert len(sent) == 5


def test_413_splits_the_batch() -> None:
    replayer, _, _ = fake([413, 200, 200])
    replayer.send([b'{"auditID":"a"}', b'{"auditID":"b"}'])
    assert replayer.stats.splits == 1 and replayer.stats.events == 2 and replayer.stats.totals["accepted"] == 2


def test_401_stops_and_400_is_not_retried() -> None:
    replayer, _, _ = fake([401])
    with pytest.raises(ReplayError, match="401"):
        replayer.send([b"{}"])
    replayer, sent, _ = fake([400])
    replayer.send([b"{}"])
    assert len(sent) == 1 and replayer.stats.rejected == 1


def test_only_http_urls() -> None:
    with pytest.raises(ReplayError):
        Replayer("file:///etc/passwd", "t")
