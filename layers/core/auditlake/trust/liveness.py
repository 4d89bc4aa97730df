"""Dead-man switch: a cluster that stops sending is as alarming as one that sends attacks.

Every ingest path notes, at most once a minute per cluster and process, that a cluster delivered
(``SEEN/<cluster>``, the time: one partition, read by key). Every minute the poller's schedule
counts the clusters silent for longer than ``SilenceMinutes`` and publishes that count as a metric,
with an alarm on it; a missing metric (the schedule itself stopped) alarms too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from auditlake.state_table import SEEN, seen_key

logger = logging.getLogger(__name__)
BEAT_EVERY_SECONDS = 60.0


class Heartbeats:
    def __init__(self, client: Any, table: str, *, clock: Callable[[], float] = time.time) -> None:
        self.client, self.table, self.clock = client, table, clock
        self._last: dict[str, float] = {}

    def beat(self, cluster: str) -> None:
        """Note that ``cluster`` delivered. Never fails the delivery: a missed beat is logged, and
        the next one (a minute later at most) makes up for it."""
        now = self.clock()
        if now - self._last.get(cluster, 0.0) < BEAT_EVERY_SECONDS:
            return
        try:
            self.client.update_item(
                TableName=self.table,
                Key=seen_key(cluster),
                UpdateExpression="SET seen_at = :t",
                ExpressionAttributeValues={":t": {"N": f"{now:.0f}"}},
            )
        except (BotoCoreError, ClientError):
            logger.warning("heartbeat not recorded", extra={"cluster": cluster}, exc_info=True)
            return
        self._last[cluster] = now

    def silent(self, minutes: int) -> list[str]:
        """Clusters that delivered before but not in the last ``minutes``."""
        horizon = self.clock() - minutes * 60
        out = []
        try:
            for page in self.client.get_paginator("query").paginate(
                TableName=self.table,
                KeyConditionExpression="pk = :s",
                FilterExpression="seen_at < :h",
                ExpressionAttributeValues={":s": {"S": SEEN}, ":h": {"N": f"{horizon:.0f}"}},
            ):
                out += [item["sk"]["S"] for item in page.get("Items", ())]
        except (BotoCoreError, ClientError) as exc:
            raise RuntimeError(f"cannot read cluster heartbeats: {exc}") from exc
        return sorted(out)
