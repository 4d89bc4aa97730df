"""Backfill: an EKS cluster's audit history from CloudWatch Logs, through the same forwarder as the
subscription, resumable after an interruption.

The range [start, end) is read in slices of an hour with paginated ``FilterLogEvents`` (audit
streams only). Slice bounds are whole milliseconds and inclusive, so events that share the
millisecond at a bound are read by exactly one slice; ``end`` is kept a lag behind now, so events
CloudWatch has not finished ingesting for that millisecond are not passed over. After each page is
stored, the checkpoint records the slice and the page token; a resumed run continues from there.
A page token older than TOKEN_MAX_AGE_MS is not used: CloudWatch's tokens expire (after 24 hours),
and an expired one may read as an empty page rather than an error, which would pass over the rest
of its slice. The slice is read again from its start instead: harmless, the archive deduplicates.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from auditlake.ingest.checkpoints import Checkpoints
from auditlake.ingest.cloudwatch import AUDIT_STREAM_PREFIX, EksAuditForwarder, ForwardStats, LogEvent, log_group_of

logger = logging.getLogger(__name__)

SLICE_MS = 3_600_000
PAGE_LIMIT = 10_000  # FilterLogEvents' maximum
TOKEN_MAX_AGE_MS = 3_600_000


@dataclass
class BackfillJob:
    """The checkpoint: the range asked for, and where reading stands."""

    eks_cluster: str
    start_ms: int
    end_ms: int
    cursor_ms: int  # the first millisecond of the slice being read
    next_token: str | None = None
    token_at_ms: int = 0  # when next_token was handed out
    pages: int = 0
    done: bool = False
    totals: ForwardStats = field(default_factory=ForwardStats)

    @property
    def checkpoint(self) -> str:
        return checkpoint_name(self.eks_cluster)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> BackfillJob:
        known = {f.name for f in fields(cls)} - {"totals"}
        totals = ForwardStats(**doc.get("totals", {}))
        return cls(**{k: v for k, v in doc.items() if k in known}, totals=totals)


def checkpoint_name(eks_cluster: str) -> str:
    return f"backfill/{eks_cluster}"


Progress = Callable[[BackfillJob], None]


class Backfill:
    def __init__(
        self,
        logs: Any,
        forwarder: EksAuditForwarder,
        checkpoints: Checkpoints,
        *,
        page_limit: int = PAGE_LIMIT,
        slice_ms: int = SLICE_MS,
        progress: Progress | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.logs = logs
        self.forwarder = forwarder
        self.checkpoints = checkpoints
        self.page_limit = page_limit
        self.slice_ms = slice_ms
        self.progress = progress or (lambda _job: None)
        self.clock = clock
        self._version = 0

    def plan(
        self, eks_cluster: str, start: datetime, end: datetime, *, restart: bool = False
    ) -> tuple[BackfillJob, bool]:
        """The job to run and whether it resumes an interrupted one. An unfinished job of the same
        cluster is resumed (with its own range) unless ``restart``."""
        stored, self._version = self.checkpoints.load(checkpoint_name(eks_cluster))
        if stored is not None and not stored.get("done") and not restart:
            return BackfillJob.from_doc(stored), True
        start_ms, end_ms = _ms(start), _ms(end)
        if end_ms <= start_ms:
            raise ValueError(f"nothing to read: until ({end:%Y-%m-%dT%H:%M:%SZ}) is not after since")
        return BackfillJob(eks_cluster, start_ms, end_ms, start_ms), False

    def run(self, job: BackfillJob) -> BackfillJob:
        group = log_group_of(job.eks_cluster)
        if job.next_token and self._now_ms() - job.token_at_ms > TOKEN_MAX_AGE_MS:
            logger.warning("the checkpoint's page token is too old to trust; reading its slice again")
            job.next_token = None
        while job.cursor_ms < job.end_ms:
            last = min(job.cursor_ms + self.slice_ms, job.end_ms) - 1  # inclusive, like FilterLogEvents' endTime
            request: dict[str, Any] = {
                "logGroupName": group,
                "logStreamNamePrefix": AUDIT_STREAM_PREFIX,
                "startTime": job.cursor_ms,
                "endTime": last,
                "limit": self.page_limit,
            }
            if job.next_token:
                request["nextToken"] = job.next_token
            try:
                page = self.logs.filter_log_events(**request)
            except ClientError as exc:
                if job.next_token and exc.response["Error"]["Code"] == "InvalidParameterException":
                    logger.warning("page token refused (expired?); reading the slice again from its start")
                    job.next_token = None
                    continue
                raise
            events = [
                LogEvent(str(e["eventId"]), int(e["timestamp"]), e["message"], e["logStreamName"])
                for e in page.get("events", [])
            ]
            if events:
                job.totals.add(self.forwarder.events(job.eks_cluster, events))
            job.pages += 1
            job.next_token, job.token_at_ms = page.get("nextToken"), self._now_ms()
            if not job.next_token:
                job.cursor_ms = last + 1
            job.done = job.cursor_ms >= job.end_ms
            self._version = self.checkpoints.save(job.checkpoint, asdict(job), self._version)  # after the write
            self.progress(job)
        return job

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)


def _ms(moment: datetime) -> int:
    return int(moment.astimezone(UTC).timestamp() * 1000)
