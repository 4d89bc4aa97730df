"""Conditional DynamoDB writes, the state table's one concurrency tool (leases, checkpoints, alert
counters and their claims)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

T = TypeVar("T")


def conditional_write(write: Callable[[], T], error: type[Exception], what: str) -> T | None:
    """``write()``'s answer; None when its condition refused it. Any other failure raises ``error``
    naming ``what`` was being done."""
    try:
        return write()
    except ClientError as exc:
        if _refused(exc.response):
            return None
        raise error(f"cannot {what}: {exc}") from exc
    except BotoCoreError as exc:
        raise error(f"cannot {what}: {exc}") from exc


def _refused(response: Any) -> bool:
    """A condition said no: of a single write, or of any item of a transaction (TransactWriteItems
    cancels the whole transaction and says why per item)."""
    code = response["Error"]["Code"]
    if code == "TransactionCanceledException":
        return any(reason.get("Code") == "ConditionalCheckFailed" for reason in response.get("CancellationReasons", ()))
    return bool(code == "ConditionalCheckFailedException")
