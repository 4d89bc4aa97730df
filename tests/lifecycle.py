"""S3 lifecycle rules, simulated on a moto bucket (moto stores lifecycle rules but never runs them).

``template_lifecycle`` reads a bucket's ``LifecycleConfiguration`` from template.yaml (the ``!Ref``
parameters resolved from their defaults, or from the values given; ``!If`` on the template's
conditions), in the S3 API's shape; ``put`` sets it on a moto bucket, and ``Lifecycle`` applies
the rules as they were put (``rules``; not read back: moto drops ``ObjectSizeGreaterThan`` from
GetBucketLifecycleConfiguration, which would move small files S3 leaves alone) at a simulated
``now``, as S3 would:

- an object's age counts from its ``LastModified``; a rule acts at that time plus its days,
  rounded up to the next midnight UTC (S3 User Guide, "Lifecycle configuration elements");
- a transition changes the object's storage class in place (S3 keeps its version and
  LastModified; so does this);
- expiring the current version of a versioned bucket adds a delete marker (dated when the rule
  acted); a noncurrent version expires its days after it became noncurrent (its successor's
  date), once its Object Lock retention has ended (S3 never removes a locked version);
- ``ExpiredObjectDeleteMarker`` removes a delete marker that no longer hides any version.

Dates are moved with ``age``: moto dates an object (and its Object Lock retention) when it is
written; the simulation rewrites both in moto's in-process backend (the moto server runs in this
process), so a lake a year old is built in a second. The rules are matched here on their own (not
with ``auditlake.trust.retention``), so the simulation does not share a mistake with the code it tests.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.helpers import ROOT, parse_sam_yaml

ACCOUNT = "123456789012"  # moto's default account


# ---------------------------------------------------------------- the template's rules


class Unsimulated(ValueError):
    """A template construct this simulation does not evaluate: extend it rather than guess."""


def template_lifecycle(resource: str, parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The lifecycle rules of ``resource`` in template.yaml, as PutBucketLifecycleConfiguration takes them."""
    template = parse_sam_yaml((ROOT / "template.yaml").read_text())
    values = {name: spec.get("Default") for name, spec in template["Parameters"].items()}
    values.update(parameters or {})
    conditions = template.get("Conditions", {})
    rules = template["Resources"][resource]["Properties"]["LifecycleConfiguration"]["Rules"]
    return [_api_rule(_resolve(rule, values, conditions)) for rule in rules]


_NO_VALUE = object()


def _resolve(node: Any, values: dict[str, Any], conditions: dict[str, Any]) -> Any:
    """``Ref`` (parameters), ``Fn::If``, ``Fn::Not``, ``Fn::Equals``, ``Condition``: what the template's rules use."""
    if isinstance(node, list):
        items = [_resolve(item, values, conditions) for item in node]
        return [item for item in items if item is not _NO_VALUE]
    if not isinstance(node, dict):
        return node
    if set(node) == {"Ref"}:
        if node["Ref"] == "AWS::NoValue":
            return _NO_VALUE
        return values[node["Ref"]]
    if set(node) == {"Fn::If"}:
        name, yes, no = node["Fn::If"]
        return _resolve(yes if _condition(conditions[name], values, conditions) else no, values, conditions)
    resolved = {key: _resolve(value, values, conditions) for key, value in node.items()}
    return {key: value for key, value in resolved.items() if value is not _NO_VALUE}


def _condition(node: Any, values: dict[str, Any], conditions: dict[str, Any]) -> bool:
    if "Fn::Not" in node:
        return not _condition(node["Fn::Not"][0], values, conditions)
    if "Fn::Equals" in node:
        left, right = (_resolve(side, values, conditions) for side in node["Fn::Equals"])
        return str(left) == str(right)
    if "Condition" in node:
        return _condition(conditions[node["Condition"]], values, conditions)
    raise Unsimulated(f"condition not simulated: {node}")


def _api_rule(rule: dict[str, Any]) -> dict[str, Any]:
    """CloudFormation's ``AWS::S3::Bucket`` Rule -> the S3 API's LifecycleRule."""
    out: dict[str, Any] = {"ID": rule["Id"], "Status": rule["Status"]}
    prefix = rule.get("Prefix", "")
    if "ObjectSizeGreaterThan" in rule:
        out["Filter"] = {"And": {"Prefix": prefix, "ObjectSizeGreaterThan": int(rule["ObjectSizeGreaterThan"])}}
    else:
        out["Filter"] = {"Prefix": prefix}
    if "ExpirationInDays" in rule:
        out["Expiration"] = {"Days": int(rule["ExpirationInDays"])}
    if rule.get("ExpiredObjectDeleteMarker"):
        out["Expiration"] = {"ExpiredObjectDeleteMarker": True}
    if "Transitions" in rule:
        out["Transitions"] = [{"Days": int(t["TransitionInDays"]), "StorageClass": t["StorageClass"]}
                              for t in rule["Transitions"]]  # fmt: skip
    if "NoncurrentVersionExpiration" in rule:
        out["NoncurrentVersionExpiration"] = {
            "NoncurrentDays": int(rule["NoncurrentVersionExpiration"]["NoncurrentDays"])
        }
    if "AbortIncompleteMultipartUpload" in rule:
        out["AbortIncompleteMultipartUpload"] = {
            "DaysAfterInitiation": int(rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"])
        }
    return out


_PUT: dict[str, list[dict[str, Any]]] = {}  # bucket -> its rules as put, size filters included


def put(s3: Any, bucket: str, rules: list[dict[str, Any]]) -> None:
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules})
    _PUT[bucket] = copy.deepcopy(rules)


def rules(s3: Any, bucket: str) -> list[dict[str, Any]]:
    """The bucket's rules as ``put`` set them (else as moto gives them back)."""
    if bucket in _PUT:
        return copy.deepcopy(_PUT[bucket])
    return list(s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"])


# ---------------------------------------------------------------- dates in moto's backend


def _backend() -> Any:
    from moto.s3.models import s3_backends

    return s3_backends[ACCOUNT]["aws"]


def _versions(bucket: str, key: str) -> list[Any]:
    return list(_backend().get_bucket(bucket).keys.getlist(key, []))


def age(bucket: str, key: str, when: datetime) -> None:
    """Date the current version of ``key`` (and its Object Lock retention, by as much) ``when``:
    as if it had been written then."""
    version = _versions(bucket, key)[-1]
    shift = when.astimezone(UTC).replace(tzinfo=None) - version.last_modified
    version.last_modified = when.astimezone(UTC).replace(tzinfo=None)
    lock = getattr(version, "lock_until", None)
    if lock:
        until = datetime.strptime(lock.rstrip("Z").split(".")[0], "%Y-%m-%dT%H:%M:%S") + shift
        version.lock_until = until.strftime("%Y-%m-%dT%H:%M:%SZ")


def storage_class(bucket: str, key: str) -> str:
    return str(_versions(bucket, key)[-1].storage_class)


# ---------------------------------------------------------------- the simulation


def due(written: datetime, days: int) -> datetime:
    """When a rule of ``days`` acts on an object written at ``written``: rounded up to midnight UTC."""
    moment = written.astimezone(UTC) + timedelta(days=days)
    return moment.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)


def _matches(rule: dict[str, Any], key: str, size: int) -> bool:
    if rule.get("Status") != "Enabled":
        return False
    filters = rule.get("Filter", {"Prefix": rule.get("Prefix", "")})
    both = filters.get("And", filters)
    if not key.startswith(both.get("Prefix", "")):
        return False
    if "ObjectSizeGreaterThan" in both and not size > int(both["ObjectSizeGreaterThan"]):
        return False
    return not ("ObjectSizeLessThan" in both and not size < int(both["ObjectSizeLessThan"]))


@dataclass
class Applied:
    """What one pass did, by key."""

    transitioned: dict[str, str] = field(default_factory=dict)  # key -> new storage class
    expired: list[str] = field(default_factory=list)  # current versions hidden by a delete marker
    removed_versions: list[str] = field(default_factory=list)  # noncurrent versions removed
    kept_locked: list[str] = field(default_factory=list)  # noncurrent versions due, but still locked
    removed_markers: list[str] = field(default_factory=list)


class Lifecycle:
    """The bucket's lifecycle configuration (as put: see the module's docstring), applied at a simulated time."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3, self.bucket = s3, bucket
        self.rules: list[dict[str, Any]] = rules(s3, bucket)

    def _listing(self) -> Iterator[dict[str, Any]]:
        for page in self.s3.get_paginator("list_object_versions").paginate(Bucket=self.bucket):
            for version in page.get("Versions", ()):
                yield {**version, "marker": False}
            for marker in page.get("DeleteMarkers", ()):
                yield {**marker, "marker": True, "Size": 0}

    def apply(self, now: datetime) -> Applied:
        done = Applied()
        by_key: dict[str, list[dict[str, Any]]] = {}
        for entry in self._listing():
            by_key.setdefault(entry["Key"], []).append(entry)
        for key, entries in sorted(by_key.items()):
            entries.sort(key=lambda e: e["LastModified"], reverse=True)  # newest first
            current = entries[0]
            if not current["marker"]:
                self._current(key, current, now, done)
            for newer, version in itertools.pairwise(entries):
                if not version["marker"]:
                    self._noncurrent(key, version, since=newer["LastModified"], now=now, done=done)
        self._markers(now, done)
        return done

    def _current(self, key: str, version: dict[str, Any], now: datetime, done: Applied) -> None:
        written, size = version["LastModified"], int(version["Size"])
        rules = [rule for rule in self.rules if _matches(rule, key, size)]
        expiry = [due(written, rule["Expiration"]["Days"]) for rule in rules if "Days" in rule.get("Expiration", {})]
        # A Date rule expires every object it reaches from that date on, however young.
        expiry += [rule["Expiration"]["Date"].astimezone(UTC) for rule in rules if "Date" in rule.get("Expiration", {})]
        if expiry and min(expiry) <= now:
            self.s3.delete_object(Bucket=self.bucket, Key=key)  # versioned: a delete marker
            marker = _versions(self.bucket, key)[-1]
            marker.last_modified = min(expiry).replace(tzinfo=None)
            done.expired.append(key)
            return
        steps = [(due(written, t["Days"]), t["StorageClass"]) for rule in rules for t in rule.get("Transitions", ())]
        reached = [step for step in steps if step[0] <= now]
        if reached:
            target = max(reached)[1]
            if target != version.get("StorageClass", "STANDARD"):
                _versions(self.bucket, key)[-1].set_storage_class(target)
                done.transitioned[key] = target

    def _noncurrent(self, key: str, version: dict[str, Any], *, since: datetime, now: datetime, done: Applied) -> None:
        rules = [rule for rule in self.rules if _matches(rule, key, int(version["Size"]))]
        days = [rule["NoncurrentVersionExpiration"]["NoncurrentDays"] for rule in rules
                if "NoncurrentVersionExpiration" in rule]  # fmt: skip
        if not days or due(since, min(days)) > now:
            return
        from botocore.exceptions import ClientError

        try:
            self.s3.delete_object(Bucket=self.bucket, Key=key, VersionId=version["VersionId"])
        except ClientError as exc:  # Object Lock retention not over: S3 leaves it too
            if exc.response["Error"]["Code"] != "AccessDenied":
                raise
            done.kept_locked.append(key)
            return
        done.removed_versions.append(key)

    def _markers(self, now: datetime, done: Applied) -> None:
        if not any(rule.get("Expiration", {}).get("ExpiredObjectDeleteMarker") for rule in self.rules):
            return
        by_key: dict[str, list[dict[str, Any]]] = {}
        for entry in self._listing():
            by_key.setdefault(entry["Key"], []).append(entry)
        rules = [rule for rule in self.rules if rule.get("Expiration", {}).get("ExpiredObjectDeleteMarker")]
        for key, entries in sorted(by_key.items()):
            if len(entries) == 1 and entries[0]["marker"] and any(_matches(rule, key, 0) for rule in rules):
                self.s3.delete_object(Bucket=self.bucket, Key=key, VersionId=entries[0]["VersionId"])
                done.removed_markers.append(key)
