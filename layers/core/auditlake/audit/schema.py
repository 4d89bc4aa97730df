"""The input: ``audit.k8s.io`` Event and EventList as kube-apiserver writes them, as msgspec types.

Decoding into these types validates every field in C. ``forbid_unknown_fields`` makes a field this
version does not know fail the fast path instead of vanishing; the pipeline then takes the lenient
path, which keeps such fields in the record's ``extra`` column. Bodies stay ``msgspec.Raw``: their
original bytes, never turned into Python objects unless redaction has to look inside.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

Stage = Literal["RequestReceived", "ResponseStarted", "ResponseComplete", "Panic"]
# An event is never emitted at level None.
EventLevel = Literal["Metadata", "Request", "RequestResponse"]


class UserInfo(msgspec.Struct, forbid_unknown_fields=True):
    username: str | None = None
    uid: str | None = None
    groups: list[str] | None = None
    extra: dict[str, Any] | None = None


class ObjectReference(msgspec.Struct, forbid_unknown_fields=True):
    resource: str | None = None
    namespace: str | None = None
    name: str | None = None
    uid: str | None = None
    apiGroup: str | None = None
    apiVersion: str | None = None
    resourceVersion: str | None = None
    subresource: str | None = None


class Status(msgspec.Struct, forbid_unknown_fields=True):
    metadata: dict[str, Any] | None = None
    status: str | None = None
    message: str | None = None
    reason: str | None = None
    details: msgspec.Raw = msgspec.Raw()
    code: Annotated[int, msgspec.Meta(ge=-(2**31), lt=2**31)] | None = None


class AuditEvent(msgspec.Struct, forbid_unknown_fields=True):
    level: EventLevel
    auditID: Annotated[str, msgspec.Meta(min_length=1)]
    stage: Stage
    kind: Literal["Event"] | None = None
    apiVersion: str | None = None
    requestURI: str | None = None
    verb: str | None = None
    user: UserInfo | None = None
    impersonatedUser: UserInfo | None = None
    sourceIPs: list[str] | None = None
    userAgent: str | None = None
    objectRef: ObjectReference | None = None
    responseStatus: Status | None = None
    requestObject: msgspec.Raw = msgspec.Raw()
    responseObject: msgspec.Raw = msgspec.Raw()
    requestReceivedTimestamp: str | None = None
    stageTimestamp: str | None = None
    annotations: dict[str, str] | None = None
    # audit.k8s.io/v1beta1 log lines carry these; they are kept in `extra`.
    timestamp: str | None = None
    metadata: dict[str, Any] | None = None


class EventList(msgspec.Struct):
    """The webhook body. Envelope fields beyond these carry nothing to keep."""

    kind: Any = None
    apiVersion: Any = None
    items: list[AuditEvent] | None = None


class RawEventList(msgspec.Struct):
    """The same body with each item left as its bytes, for item-by-item handling."""

    kind: Any = None
    apiVersion: Any = None
    items: list[msgspec.Raw] | None = None


EVENT_FIELDS = frozenset(AuditEvent.__struct_fields__)
USER_FIELDS = frozenset(UserInfo.__struct_fields__)
OBJECT_REF_FIELDS = frozenset(ObjectReference.__struct_fields__)
STATUS_FIELDS = frozenset(Status.__struct_fields__)

event_decoder = msgspec.json.Decoder(AuditEvent)
eventlist_decoder = msgspec.json.Decoder(EventList)
raw_eventlist_decoder = msgspec.json.Decoder(RawEventList)
