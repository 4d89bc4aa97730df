"""The ingest core: policy, redaction and normalisation of a batch, event-shape agnostic.

Every ingest path (webhook, ``auditlake serve``, ``auditlake ingest``) calls ``AuditPipeline.process``
once per batch and gets back serialised records plus the items that must go to quarantine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .jsonio import dumps
from .model import LEVEL_RANK
from .normalise import Invalid, check_identity, normalise
from .policy import Policy, attributes_of, lower_level
from .redact import RedactionConfig, TooDeep, may_hold_secret, redact_nested_secrets

_REQUEST = LEVEL_RANK["Request"]
_REQUEST_RESPONSE = LEVEL_RANK["RequestResponse"]


@dataclass(frozen=True)
class PipelineConfig:
    """``policy=None`` keeps every event as received; redaction always applies."""

    policy: Policy | None = None
    redaction: RedactionConfig = field(default_factory=RedactionConfig.build)


@dataclass
class ItemFailure:
    """An item that goes to quarantine. ``item`` is the parsed value with secret bodies removed;
    ``raw`` the original bytes when the item never parsed. ``intact`` is False when the item could
    not be serialised at all; then the whole original body is quarantined with it."""

    index: int
    reason: str
    audit_id: str | None = None
    stage: str | None = None
    item: Any = None
    raw: bytes | None = None
    intact: bool = True


@dataclass
class BatchResult:
    lines: list[bytes] = field(default_factory=list)
    failures: list[ItemFailure] = field(default_factory=list)
    filtered: int = 0
    redacted: int = 0
    forbidden: int = 0

    @property
    def accepted(self) -> int:
        return len(self.lines)


class AuditPipeline:
    def __init__(self, config: PipelineConfig | Callable[[], PipelineConfig]) -> None:
        # A callable lets the Lambda refresh its policy (from SSM) without a cold start.
        self._config = config if callable(config) else (lambda: config)

    def config(self) -> PipelineConfig:
        return self._config()

    def process(
        self, items: Iterable[Any], *, cluster: str, source: str, ingested_at: str, first_index: int = 0
    ) -> BatchResult:
        config = self._config()
        result = BatchResult()
        for index, item in enumerate(items, start=first_index):
            try:
                line = self._one(item, config, result, cluster=cluster, source=source, ingested_at=ingested_at)
            except (Invalid, TooDeep) as exc:
                result.failures.append(quarantine_item(index, str(exc), item, config.redaction))
                continue
            if line is not None:
                result.lines.append(line)
        return result

    def _one(
        self,
        event: Any,
        config: PipelineConfig,
        result: BatchResult,
        *,
        cluster: str,
        source: str,
        ingested_at: str,
    ) -> bytes | None:
        _audit_id, stage, level = check_identity(event)
        omit_managed = False
        if config.policy is not None:
            decision = config.policy.evaluate(attributes_of(event))
            if decision.drops(stage):
                result.filtered += 1
                return None
            level = lower_level(level, decision.level)
            omit_managed = decision.omit_managed_fields
        rank = LEVEL_RANK[level]
        request = event.get("requestObject") if rank >= _REQUEST else None
        response = event.get("responseObject") if rank >= _REQUEST_RESPONSE else None
        if omit_managed:
            _drop_managed_fields(request)
            _drop_managed_fields(response)
        redactions: list[str] = []
        if (request is not None or response is not None) and _covered(event.get("objectRef"), config.redaction):
            if request is not None:
                redactions.append("requestObject")
            if response is not None:
                redactions.append("responseObject")
            request = response = None
        record = normalise(
            event,
            cluster=cluster,
            source=source,
            ingested_at=ingested_at,
            level=level,
            request_object=_body(request, "requestObject", redactions),
            response_object=_body(response, "responseObject", redactions),
            redactions=redactions,
        )
        if redactions:
            result.redacted += 1
        if record["response_code"] == 403:
            result.forbidden += 1
        return dumps(record)


def _covered(ref: Any, redaction: RedactionConfig) -> bool:
    if not isinstance(ref, dict):
        return False
    resource = ref.get("resource")
    if not isinstance(resource, str):
        return False
    return redaction.covers(ref.get("apiGroup") or "", resource, ref.get("subresource") or "")


def _body(body: Any, path: str, redactions: list[str]) -> str | None:
    if body is None:
        return None
    data = _serialise(body, path)
    if may_hold_secret(data):
        found: list[str] = []
        body = redact_nested_secrets(body, path, found)
        if found:
            redactions.extend(found)
            data = _serialise(body, path)
    return data.decode("utf-8")


def _serialise(body: Any, path: str) -> bytes:
    try:
        return dumps(body)
    except (TypeError, ValueError) as exc:  # orjson refuses > 254 levels of nesting
        raise Invalid(f"{path} cannot be stored: {exc}") from None


def _drop_managed_fields(body: Any) -> None:
    """omitManagedFields: drop metadata.managedFields of the object, or of each item of a list."""
    if not isinstance(body, dict):
        return
    metadata = body.get("metadata")
    if isinstance(metadata, dict):
        metadata.pop("managedFields", None)
    items = body.get("items")
    if isinstance(items, list):
        for item in items:
            if isinstance(item, dict) and isinstance(item.get("metadata"), dict):
                item["metadata"].pop("managedFields", None)


def quarantine_item(index: int, reason: str, item: Any, redaction: RedactionConfig) -> ItemFailure:
    """Keep a bad item for inspection, without the secret material it may still hold."""
    audit_id = item.get("auditID") if isinstance(item, dict) else None
    stage = item.get("stage") if isinstance(item, dict) else None
    failure = ItemFailure(
        index,
        reason,
        audit_id if isinstance(audit_id, str) else None,
        stage if isinstance(stage, str) else None,
    )
    if isinstance(item, dict):
        item = dict(item)
        if _covered(item.get("objectRef"), redaction):
            for key in ("requestObject", "responseObject"):
                if item.pop(key, None) is not None:
                    failure.reason += f"; {key} redacted"
    try:
        found: list[str] = []
        failure.item = redact_nested_secrets(item, "item", found)
        dumps(failure.item)
    except (TooDeep, TypeError, ValueError):
        failure.item, failure.intact = None, False
    return failure
