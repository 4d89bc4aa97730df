"""A Detector double (detect.matches.Detector) for the ingest paths' tests: two fixed rules, so a test
of the wiring does not depend on the built-in rule set or on the engine's matching.

- ``fake-aws-key-in-configmap`` (high): a ConfigMap written with a body holding an AWS access key id
  (``AKIA`` + 16 upper-case letters or digits). Like the real engine, the finding names the key that
  matched, never its value.
- ``fake-events-backoff`` (medium): a Kubernetes Event whose reason is ``BackOff``.

Every call is recorded (``seen``: audit IDs and Event uids), so a test can tell which events were
evaluated (a quarantined one is not) and that evaluation came before the policy and redaction
(``bodies``: the request bodies as the detector saw them).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from auditlake import timestamps
from auditlake.detect.matches import Match
from auditlake.jsonio import dumps_str, loads
from auditlake.model import FindingRecord

AWS_KEY = re.compile(rb"AKIA[0-9A-Z]{16}")
AUDIT_RULE = "fake-aws-key-in-configmap"
EVENTS_RULE = "fake-events-backoff"


class FakeDetector:
    def __init__(self) -> None:
        self.seen: list[str] = []
        self.bodies: list[bytes] = []

    def audit(self, event: Any, cluster: str, ingested_at: str) -> Sequence[Match]:
        self.seen.append(event.auditID)
        body = bytes(event.requestObject)
        self.bodies.append(body)
        ref = event.objectRef
        if ref is None or ref.resource != "configmaps" or event.verb not in ("create", "update", "patch"):
            return []
        if not AWS_KEY.search(body):
            return []
        data = loads(body).get("data") or {}
        keys = sorted(key for key, value in data.items() if isinstance(value, str) and AWS_KEY.search(value.encode()))
        finding = FindingRecord(
            rule_id=AUDIT_RULE,
            title="AWS key in a ConfigMap",
            level="high",
            cluster=cluster,
            audit_id=event.auditID,
            at=timestamps.canonical(event.requestReceivedTimestamp),
            identity=event.user.username if event.user else None,
            verb=event.verb,
            resource=ref.resource,
            namespace=ref.namespace,
            name=ref.name,
            source_ips=event.sourceIPs,
            user_agent=event.userAgent,
            details=dumps_str({"fields": {f"requestObject.data.{key}": "<matched>" for key in keys}}),
            ingested_at=ingested_at,
        )
        return [Match(AUDIT_RULE, None, "high", True, finding, {})]

    def events(self, event: Mapping[str, Any], cluster: str, observed_at: str) -> Sequence[Match]:
        metadata = event.get("metadata") or {}
        self.seen.append(str(metadata.get("uid")))
        if event.get("reason") != "BackOff":
            return []
        regarding = event.get("regarding") or event.get("involvedObject") or {}
        finding = FindingRecord(
            rule_id=EVENTS_RULE,
            title="Back-off restarting a container",
            level="medium",
            cluster=cluster,
            audit_id=metadata.get("uid"),
            at=timestamps.canonical(
                event.get("eventTime") or event.get("lastTimestamp") or metadata["creationTimestamp"]
            ),
            resource=regarding.get("kind"),
            namespace=regarding.get("namespace"),
            name=regarding.get("name"),
            details=dumps_str({"fields": {"reason": "BackOff"}}),
            ingested_at=observed_at,
        )
        return [Match(EVENTS_RULE, None, "medium", True, finding, {})]
