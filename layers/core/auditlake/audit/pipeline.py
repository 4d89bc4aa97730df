"""The ingest core: policy, redaction and normalisation of a batch, event-shape agnostic.

Every audit ingest path (the webhook and ``auditlake serve``, the CloudWatch forwarder and
``auditlake backfill``, ``auditlake ingest``) hands a batch to ``AuditPipeline`` and gets back
serialised records plus the items that must go to quarantine.

Detection rules are evaluated here, in one place for every audit path: each decoded event goes to
the pipeline's ``detector`` (``detect.matches.Detector``) *before* the policy and redaction, so a
rule sees what the cluster sent (a ConfigMap's body, an event the policy drops). The matches of an
event that is quarantined are not kept (it could not be read as an audit event); those of an event
the policy drops are. ``BatchResult.matches`` holds them for ``ingest/intake.land``.

Fast path: the whole EventList decodes into the typed schema in one C call. Otherwise each item is
decoded on its own; an item with fields the schema does not know takes the lenient path (those
fields go to ``extra``); an item that still does not fit is quarantined with the reason.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from auditlake.audit.normalise import normalise
from auditlake.audit.parse import (
    EnvelopeError,
    EventList,
    check_utf8,
    decode_eventlist,
    head_before_bodies,
    head_ids,
    legacy_hint,
    prune,
)
from auditlake.audit.policy import Policy
from auditlake.audit.redact import (
    DROPPED,
    MAX_DEPTH,
    RedactionConfig,
    TooDeep,
    Walk,
    may_hold_secret,
    redact_json,
    resolve_duplicate_kinds,
    safe_reason,
    shown,
)
from auditlake.audit.schema import (
    EVENT_FIELDS,
    OBJECT_REF_FIELDS,
    STATUS_FIELDS,
    USER_FIELDS,
    AuditEvent,
    event_decoder,
    raw_eventlist_decoder,
)
from auditlake.detect.matches import Detector, Match
from auditlake.jsonio import REPLACED, JSONError, encode, loads, loads_like_go
from auditlake.landing import Invalid, ItemFailure

_NESTED = (
    ("user", USER_FIELDS),
    ("impersonatedUser", USER_FIELDS),
    ("objectRef", OBJECT_REF_FIELDS),
    ("responseStatus", STATUS_FIELDS),
)


@dataclass(frozen=True)
class PipelineConfig:
    """``policy=None`` keeps every event as received; redaction always applies."""

    policy: Policy | None = None
    redaction: RedactionConfig = field(default_factory=RedactionConfig.build)


@dataclass
class BatchResult:
    items: int = 0
    lines: list[bytes] = field(default_factory=list)
    failures: list[ItemFailure] = field(default_factory=list)
    filtered: int = 0
    redacted: int = 0
    forbidden: int = 0  # stored records answered 403 (the Forbidden403Seen count)
    matches: list[Match] = field(default_factory=list)  # every rule match, before policy and redaction

    @property
    def accepted(self) -> int:
        return len(self.lines)


class AuditPipeline:
    def __init__(self, config: PipelineConfig | Callable[[], PipelineConfig], detector: Detector | None = None) -> None:
        # A callable lets the Lambda refresh its policy (from SSM) without a cold start.
        self._config = config if callable(config) else (lambda: config)
        self.detector = detector

    def config(self) -> PipelineConfig:
        return self._config()

    def eventlist(self, body: bytes, *, cluster: str, source: str, ingested_at: str) -> BatchResult:
        """A webhook body. Raises parse.EnvelopeError when it is not an EventList at all."""
        doc = decode_eventlist(body)
        if isinstance(doc, EventList):
            return self._typed(doc.items or [], body, cluster, source, ingested_at)
        return self.items(doc.items or [], cluster=cluster, source=source, ingested_at=ingested_at)

    def items(
        self,
        raws: Sequence[Any],
        *,
        cluster: str,
        source: str,
        ingested_at: str,
        numbers: Sequence[int] | None = None,
    ) -> BatchResult:
        """Items given as JSON bytes (or msgspec.Raw), each decoded on its own. ``numbers`` are the
        positions reported for quarantined items (file line numbers; default: index in ``raws``)."""
        config = self._config()
        result = BatchResult(items=len(raws))
        for index, raw in enumerate(raws):
            extra = None
            try:
                try:
                    check_utf8(bytes(raw))  # also inside the raw bodies, which msgspec does not decode
                    event = event_decoder.decode(raw)
                except (EnvelopeError, msgspec.ValidationError, msgspec.DecodeError, RecursionError):
                    event, extra = _lenient(raw)
                self._add(result, event, extra, config, cluster, source, ingested_at, self.detector)
            except (Invalid, TooDeep, RecursionError) as exc:
                number = numbers[index] if numbers is not None else index
                field = exc.field if isinstance(exc, Invalid) else None
                result.failures.append(quarantine_item(number, str(exc), bytes(raw), config.redaction, field=field))
        return result

    def process(self, items: Iterable[Any], *, cluster: str, source: str, ingested_at: str) -> BatchResult:
        """Items already parsed as Python values (tools and tests): encoded, then as ``items``."""
        return self.items([encode(item) for item in items], cluster=cluster, source=source, ingested_at=ingested_at)

    def _typed(self, events: list[AuditEvent], body: bytes, cluster: str, source: str, ingested_at: str) -> BatchResult:
        config = self._config()
        result = BatchResult(items=len(events))
        raws: list[Any] | None = None
        for index, event in enumerate(events):
            try:
                self._add(result, event, None, config, cluster, source, ingested_at, self.detector)
            except (Invalid, TooDeep, RecursionError) as exc:
                # Quarantined from the bytes received (re-encoding the typed event would lose
                # absent bodies' shape), read again as raw items on the first failure only.
                if raws is None:
                    raws = raw_eventlist_decoder.decode(body).items or []
                raw = bytes(raws[index]) if index < len(raws) else encode(event)
                field = exc.field if isinstance(exc, Invalid) else None
                result.failures.append(quarantine_item(index, str(exc), raw, config.redaction, field=field))
        return result

    @staticmethod
    def _add(  # noqa: PLR0917 - per event
        result: BatchResult,
        event: AuditEvent,
        extra: dict[str, Any] | None,
        config: PipelineConfig,
        cluster: str,
        source: str,
        ingested_at: str,
        detector: Detector | None,
    ) -> None:
        # Before normalise: the policy may drop the event and redaction rewrites its bodies; the
        # matches are kept only once normalise has not quarantined it (Invalid propagates past them).
        matches = detector.audit(event, cluster, ingested_at) if detector is not None else ()
        record = normalise(event, extra, cluster, source, ingested_at, config.policy, config.redaction)
        if matches:
            result.matches.extend(matches)
        if record is None:
            result.filtered += 1
            return
        if record.redactions:
            result.redacted += 1
        if record.response_code == 403:
            result.forbidden += 1
        result.lines.append(encode(record))


def _lenient(raw: Any) -> tuple[AuditEvent, dict[str, Any]]:
    """An item with fields the schema does not know: those go to ``extra``, the rest is validated."""
    try:
        value, replaced = loads_like_go(bytes(raw))
    except JSONError as exc:
        raise Invalid(exc.reason + legacy_hint(bytes(raw))) from None
    if not isinstance(value, dict):
        raise Invalid(f"item is a JSON {type(value).__name__}, not an audit event object")
    extra = {key: value.pop(key) for key in value.keys() - EVENT_FIELDS}
    if replaced:  # the record says so; the event is kept, as kube-apiserver's own reader kept it
        extra[REPLACED_NOTE] = REPLACED
    for name, known in _NESTED:
        nested = value.get(name)
        if isinstance(nested, dict) and not known.issuperset(nested):
            for key in nested.keys() - known:
                extra[f"{name}.{key}"] = nested.pop(key)
    try:
        return event_decoder.decode(encode(value)), extra
    except msgspec.ValidationError as exc:
        at = _AT.search(str(exc))
        raise Invalid(safe_reason(str(exc)), at.group(1) if at else None) from None


REPLACED_NOTE = "auditlake.io/replaced"  # in ``extra``: what was read as U+FFFD
_AT = re.compile(r"- at `\$\.([\w.]+)`$")  # msgspec names the offending field: "... - at `$.user.uid`"


def quarantine_item(
    index: int, reason: str, raw: bytes, redaction: RedactionConfig, *, field: str | None = None
) -> ItemFailure:
    """Keep a bad item for inspection, redacted by the same rules as a stored record: bodies of
    sensitive resources dropped (and of an item whose objectRef cannot be read), everything else
    walked. The resource rule applies to every object in it with a requestObject or responseObject
    (an event wrapped in another object, a list of events), each by its own objectRef, requestURI
    and verb. An item nested beyond the parser's limit is read with what lies deeper than the walk's
    limit cut away, and loses its bodies; one that is not JSON keeps only its head before the
    first body, parsed and redacted when it can be, else as text when nothing in it could be a
    secret, else only its auditID and stage. The reason never repeats a value that could be a
    secret (``redact.safe_reason``), and the value it names (``field``, a dotted path) is kept
    only as ``redact.shown`` would show it."""
    reason = safe_reason(reason)
    data, deep = raw, False
    try:
        item, replaced = loads_like_go(data)
        if replaced:
            reason += f"; {REPLACED}"
    except JSONError as exc:
        if exc.reason != "nesting too deep":
            return _unparsed(index, reason, raw)
        data, deep = prune(raw, MAX_DEPTH), True
        try:
            item = loads(data)
        except JSONError:
            return _unparsed(index, reason, raw)
        reason += f"; nested beyond the parser's limit: bodies and what lies deeper than {MAX_DEPTH} levels not kept"
    item = resolve_duplicate_kinds(item, data)
    if item is DROPPED:
        return _unparsed(index, reason, raw)
    failure = ItemFailure(index, reason)
    if isinstance(item, dict):
        if field is not None:
            _hide_value(item, field, failure)
        if deep or redaction.covers_ref(item.get("objectRef"), item.get("requestURI")):
            for key in ("requestObject", "responseObject"):
                if item.pop(key, None) is not None:
                    failure.reason += f"; {key} redacted"
    walk = Walk([], redaction, drop_bodies=deep)
    failure.item = walk.run(item, "item", False)
    for path in walk.bodies:
        failure.reason += f"; {path.removeprefix('item.')} redacted"
    if isinstance(failure.item, dict):  # read after redaction: a stage may hold a Secret's JSON
        audit_id, stage = failure.item.get("auditID"), failure.item.get("stage")
        failure.audit_id = audit_id if isinstance(audit_id, str) else None
        failure.stage = stage if isinstance(stage, str) else None
    return failure


def _hide_value(item: dict[str, Any], field: str, failure: ItemFailure) -> None:
    """The invalid value a reason names, kept only as ``redact.shown`` would show it."""
    *parents, name = field.split(".")
    node: Any = item
    for key in parents:
        node = node.get(key) if type(node) is dict else None
    if type(node) is dict and type(node.get(name)) is str:
        text = shown(node[name])
        if text.startswith("<"):
            node[name] = text
            failure.reason += f"; {field} not kept"


def refused_items(body: bytes, refusal: EnvelopeError, redaction: RedactionConfig) -> list[ItemFailure] | None:
    """What is kept of a body refused as a whole (not an EventList): the items the scanner told apart
    (``refusal.items``), else, when it parses, its items (or itself), each redacted, so nothing that
    can be inspected is kept unredacted. None when it is not JSON (it is then kept unchanged)."""
    reason = refusal.reason
    if refusal.items:
        return [quarantine_item(index, reason, item, redaction) for index, item in enumerate(refusal.items)]
    try:
        value, _ = loads_like_go(body)
    except JSONError as exc:
        if exc.reason != "nesting too deep":
            return None
        return [quarantine_item(0, reason, body, redaction)]
    items = value if isinstance(value, list) else value.get("items") if isinstance(value, dict) else None
    if not isinstance(items, list) or not items:
        return [quarantine_item(0, reason, body, redaction)]
    return [quarantine_item(index, reason, encode(item), redaction) for index, item in enumerate(items)]


def _unparsed(index: int, reason: str, raw: bytes) -> ItemFailure:
    """An item that is not JSON (a line cut short, a proxy's garbage): its head, before any body."""
    text = raw.decode("utf-8", "replace")
    head, cut = head_before_bodies(text)
    audit_id, stage = head_ids(head)
    failure = ItemFailure(index, reason, audit_id=audit_id, stage=stage)
    if cut:
        failure.reason += "; bodies not kept (cut short, they cannot be checked for secrets)"
    closed = head.rstrip().rstrip(",")
    try:
        value = loads((closed + "}").encode()) if closed.startswith("{") else None
    except JSONError:
        value = None
    if isinstance(value, dict):
        found: list[str] = []
        redacted = redact_json(value, closed.encode(), "item", found)
        if redacted is not DROPPED:
            failure.item = redacted
            failure.reason += "; kept up to its first body"
            return failure
    if may_hold_secret(head.encode()) or "secret" in head.lower():
        failure.reason += "; not kept (not JSON, and it may hold a secret)"
        failure.item = None
        return failure
    failure.raw = head.encode("utf-8")
    return failure
