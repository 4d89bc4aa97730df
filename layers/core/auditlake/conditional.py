"""Conditional DynamoDB writes, the state table's one concurrency tool (leases, alert windows)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from botocore.exceptions import BotoCoreError, ClientError

T = TypeVar("T")


def conditional_write(write: Callable[[], T], error: type[Exception], what: str) -> T | None:
    """``write()``'s answer; None when its condition refused it. Any other failure raises ``error``
    naming ``what`` was being done."""
    try:
        return write()
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
            return None
        raise error(f"cannot {what}: {exc}") from exc
    except BotoCoreError as exc:
        raise error(f"cannot {what}: {exc}") from exc
