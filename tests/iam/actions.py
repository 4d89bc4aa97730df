"""A recorded botocore call -> the IAM requests AWS authorises for it.

Contract: ``needs(call, role)`` returns one ``Need`` per (action, resource) AWS checks for the call,
with the condition keys the service supplies, plus the implied ones:
- HeadObject/GetObject answered 404 also needs s3:ListBucket on the bucket: without it S3 answers
  403 for a missing key, and the caller sees "forbidden", not "absent".
  https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadObject.html (Permissions)
- SSE-KMS (the template's BucketEncryption): PutObject needs kms:GenerateDataKey, GetObject
  kms:Decrypt, on the bucket's key; HeadObject reads no data and needs neither. Bucket Keys change
  how often S3 calls KMS, not whose permission it uses.
  https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingKMSEncryption.html (Permissions)
- SNS Publish to a KMS topic needs kms:GenerateDataKey and kms:Decrypt on the topic's key.
  https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html
- SQS SendMessage to a KMS queue needs kms:GenerateDataKey and kms:Decrypt; ReceiveMessage kms:Decrypt.
  https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-key-management.html
- DynamoDB with a customer managed key: DynamoDB uses the key through the grant it made when the
  table was created, not the caller's permissions, so no KMS need.
  https://docs.aws.amazon.com/kms/latest/developerguide/services-dynamodb.html
- DynamoDB transactions are authorised per item as PutItem/UpdateItem/DeleteItem/GetItem, and
  ConditionCheck as dynamodb:ConditionCheckItem.
  https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis-iam.html
- dynamodb:LeadingKeys (multivalued) is the partition key value(s) the request touches.
  https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/specifying-conditions.html
An operation without a mapping raises ``NoMapping`` (add it here). A policy condition on a key that a
Need does not model is reported by check.py, since an absent key would make ForAllValues true.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.iam.evaluator import ContextValue
from tests.iam.roles import ACCOUNT, PARTITION, Role


class NoMapping(LookupError):
    pass


@dataclass(frozen=True)
class Call:
    """One AWS call as the recorder saw it (the request's parameters, the HTTP status)."""

    service: str  # botocore's service name: s3, dynamodb, sns, ...
    operation: str  # botocore's operation name: PutObject, GetItem, ...
    params: Mapping[str, Any]
    region: str
    status: int | None = None  # None: no HTTP answer (connection error)
    error_code: str | None = None
    response_arn: str | None = None  # the ARN an answer names (Secrets Manager's full secret ARN)

    @property
    def name(self) -> str:
        return f"{self.service}.{self.operation}"


@dataclass(frozen=True)
class Need:
    action: str
    resource: str
    context: Mapping[str, ContextValue] = field(default_factory=dict)
    modelled: frozenset[str] = frozenset()  # condition keys this mapping supplies when they apply
    why: str = ""  # why an implied need exists


# Global keys every request carries in Lambda (TLS to the public endpoints, the function's account).
GLOBAL_KEYS = frozenset({"aws:SecureTransport", "aws:RequestedRegion", "aws:PrincipalAccount"})


def _global(call: Call) -> dict[str, ContextValue]:
    return {"aws:SecureTransport": "true", "aws:RequestedRegion": call.region, "aws:PrincipalAccount": ACCOUNT}


def _arn(service: str, region: str, resource: str) -> str:
    return f"arn:{PARTITION}:{service}:{region}:{ACCOUNT}:{resource}"


def _need(call: Call, action: str, resource: str, keys: Mapping[str, ContextValue] | None = None,
          modelled: frozenset[str] = frozenset(), why: str = "") -> Need:  # fmt: skip
    return Need(action, resource, {**_global(call), **(keys or {})}, modelled | GLOBAL_KEYS, why)


def _kms(call: Call, key: str | None, actions: tuple[str, ...], why: str) -> list[Need]:
    if key is None:
        return []
    via = {"kms:ViaService": f"{call.service}.{call.region}.amazonaws.com", "kms:CallerAccount": ACCOUNT}
    return [_need(call, a, key, via, frozenset(via), why) for a in actions]


# ---------------------------------------------------------------- S3

_S3_OBJECT_KEYS = frozenset({"s3:ExistingObjectTag", "s3:authType", "s3:signatureversion", "s3:TlsVersion"})
_S3_PUT_KEYS = _S3_OBJECT_KEYS | {
    "s3:x-amz-server-side-encryption", "s3:x-amz-server-side-encryption-aws-kms-key-id", "s3:RequestObjectTag",
    "s3:x-amz-acl", "s3:object-lock-mode", "s3:object-lock-retain-until-date", "s3:object-lock-legal-hold",
}  # fmt: skip
_S3_LIST_KEYS = frozenset({"s3:prefix", "s3:delimiter", "s3:max-keys"})


def _s3(call: Call, role: Role) -> list[Need]:
    p, op = call.params, call.operation
    bucket = p["Bucket"]
    bucket_arn = f"arn:{PARTITION}:s3:::{bucket}"
    key_arn = f"{bucket_arn}/{p.get('Key', '')}"
    data_key = role.kms_key_for("s3", bucket)
    if op in ("HeadObject", "GetObject"):
        action = "s3:GetObjectVersion" if p.get("VersionId") else "s3:GetObject"
        out = [_need(call, action, key_arn, modelled=_S3_OBJECT_KEYS)]
        missing = call.status == 404 and call.error_code in (None, "404", "NoSuchKey", "NotFound")
        if missing:
            why = "a missing key answers 404 only with s3:ListBucket (403 without)"
            # AWS asks the implied ListBucket with the requested key as s3:prefix.
            prefix: dict[str, ContextValue] = {"s3:prefix": str(p["Key"])}
            out.append(_need(call, "s3:ListBucket", bucket_arn, prefix, _S3_LIST_KEYS, why))
        elif op == "GetObject":
            out += _kms(call, data_key, ("kms:Decrypt",), "the bucket is SSE-KMS: reading decrypts the data key")
        return out
    if op == "PutObject":
        out = [_need(call, "s3:PutObject", key_arn, modelled=_S3_PUT_KEYS)]
        if p.get("ObjectLockMode") or p.get("ObjectLockRetainUntilDate"):
            out.append(_need(call, "s3:PutObjectRetention", key_arn, why="the request sets an Object Lock retention"))
        if p.get("ObjectLockLegalHoldStatus"):
            out.append(_need(call, "s3:PutObjectLegalHold", key_arn, why="the request sets a legal hold"))
        if p.get("ACL") or any(k.startswith("Grant") for k in p):
            out.append(_need(call, "s3:PutObjectAcl", key_arn, why="the request sets an ACL"))
        if p.get("Tagging"):
            out.append(_need(call, "s3:PutObjectTagging", key_arn, why="the request tags the object"))
        key = p.get("SSEKMSKeyId") or data_key
        out += _kms(call, key, ("kms:GenerateDataKey",), "the bucket is SSE-KMS: writing generates a data key")
        return out
    if op in ("ListObjectsV2", "ListObjects"):
        keys: dict[str, ContextValue] = {}
        for param, key in (("Prefix", "s3:prefix"), ("Delimiter", "s3:delimiter"), ("MaxKeys", "s3:max-keys")):
            if param in p:
                keys[key] = str(p[param])
        return [_need(call, "s3:ListBucket", bucket_arn, keys, _S3_LIST_KEYS)]
    if op == "ListObjectVersions":
        keys = {"s3:prefix": str(p["Prefix"])} if "Prefix" in p else {}
        return [_need(call, "s3:ListBucketVersions", bucket_arn, keys, frozenset({"s3:prefix"}))]
    if op == "DeleteObject":
        action = "s3:DeleteObjectVersion" if p.get("VersionId") else "s3:DeleteObject"
        return [_need(call, action, key_arn)]
    raise NoMapping(call.name)


# ---------------------------------------------------------------- DynamoDB

_DDB_KEYS = frozenset({"dynamodb:LeadingKeys", "dynamodb:Attributes", "dynamodb:ReturnValues",
                       "dynamodb:ReturnConsumedCapacity", "dynamodb:Select"})  # fmt: skip


def _scalar(value: Mapping[str, Any]) -> str:
    ((kind, inner),) = value.items()
    if kind not in ("S", "N", "B"):
        raise NoMapping(f"partition key of type {kind}")
    return inner.decode() if isinstance(inner, bytes) else str(inner)


def _leading(role: Role, table: str, request: Mapping[str, Any]) -> tuple[str, ...]:
    """The partition key value(s) one item request touches."""
    hash_key = role.hash_keys.get(table)
    if hash_key is None:
        raise NoMapping(f"table {table}: not a table of the template (no key schema to read LeadingKeys from)")
    for field_name in ("Key", "Item"):
        if field_name in request:
            return (_scalar(request[field_name][hash_key]),)
    if "KeyConditions" in request:
        return (_scalar(request["KeyConditions"][hash_key]["AttributeValueList"][0]),)
    if "KeyConditionExpression" in request:
        names = request.get("ExpressionAttributeNames", {})
        values = request.get("ExpressionAttributeValues", {})
        for left, right in re.findall(r"(#?[A-Za-z0-9_]+)\s*=\s*(:[A-Za-z0-9_]+)", request["KeyConditionExpression"]):
            if names.get(left, left) == hash_key:
                return (_scalar(values[right]),)
        raise NoMapping(f"no partition key equality in {request['KeyConditionExpression']!r}")
    return ()  # Scan: no leading key


def _table_arn(call: Call, table: str, index: str | None = None) -> str:
    return _arn("dynamodb", call.region, f"table/{table}" + (f"/index/{index}" if index else ""))


def _ddb_item(call: Call, role: Role, action: str, request: Mapping[str, Any], why: str = "") -> Need:
    table = request["TableName"]
    keys: dict[str, ContextValue] = {"dynamodb:LeadingKeys": _leading(role, table, request)}
    if "ReturnValues" in request:
        keys["dynamodb:ReturnValues"] = str(request["ReturnValues"])
    if action == "dynamodb:Scan":
        keys = {}
    return _need(call, action, _table_arn(call, table, request.get("IndexName")), keys, _DDB_KEYS, why)


_TRANSACT = {"Put": "dynamodb:PutItem", "Update": "dynamodb:UpdateItem", "Delete": "dynamodb:DeleteItem",
             "ConditionCheck": "dynamodb:ConditionCheckItem", "Get": "dynamodb:GetItem"}  # fmt: skip


def _dynamodb(call: Call, role: Role) -> list[Need]:
    p, op = call.params, call.operation
    if op in ("GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan"):
        return [_ddb_item(call, role, f"dynamodb:{op}", p)]
    if op in ("TransactWriteItems", "TransactGetItems"):
        out = []
        for item in p["TransactItems"]:
            ((kind, request),) = item.items()
            out.append(_ddb_item(call, role, _TRANSACT[kind], request, why=f"{op} item {kind}"))
        return out
    if op in ("BatchWriteItem", "BatchGetItem"):
        out = []
        for table, requests in p["RequestItems"].items():
            if op == "BatchGetItem":
                items = [{"TableName": table, "Key": k} for k in requests["Keys"]]
            else:
                items = [{"TableName": table, **next(iter(r.values()))} for r in requests]
            leading = tuple(sorted({v for item in items for v in _leading(role, table, item)}))
            out.append(_need(call, f"dynamodb:{op}", _table_arn(call, table), {"dynamodb:LeadingKeys": leading},
                             _DDB_KEYS))  # fmt: skip
        return out
    if op == "DescribeTable":
        return [_need(call, "dynamodb:DescribeTable", _table_arn(call, p["TableName"]))]
    raise NoMapping(call.name)


# ---------------------------------------------------------------- messaging, keys, secrets, the rest


_ENCRYPT = ("kms:GenerateDataKey", "kms:Decrypt")  # SNS and SQS producers need both
_DECRYPT = ("kms:Decrypt",)


def _queue_arn(call: Call, url: str) -> str:
    return _arn("sqs", call.region, url.rstrip("/").rsplit("/", 1)[-1])


def _sns(call: Call, role: Role) -> list[Need]:
    if call.operation != "Publish":
        raise NoMapping(call.name)
    topic: str = call.params.get("TopicArn") or call.params["TargetArn"]
    key = role.kms_key_for("sns", topic)
    return [_need(call, "sns:Publish", topic), *_kms(call, key, _ENCRYPT, "the topic is KMS-encrypted")]


def _sqs(call: Call, role: Role) -> list[Need]:
    op, p = call.operation, call.params
    if op == "GetQueueUrl":
        return [_need(call, "sqs:GetQueueUrl", _arn("sqs", call.region, p["QueueName"]))]
    queue = _queue_arn(call, p["QueueUrl"])
    key = role.kms_key_for("sqs", queue)
    if op in ("SendMessage", "SendMessageBatch"):
        return [_need(call, "sqs:SendMessage", queue), *_kms(call, key, _ENCRYPT, "the queue is KMS-encrypted")]
    if op == "ReceiveMessage":
        return [_need(call, "sqs:ReceiveMessage", queue), *_kms(call, key, _DECRYPT, "the queue is KMS-encrypted")]
    actions = {"DeleteMessage": "sqs:DeleteMessage", "DeleteMessageBatch": "sqs:DeleteMessage",
               "ChangeMessageVisibility": "sqs:ChangeMessageVisibility",
               "ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
               "GetQueueAttributes": "sqs:GetQueueAttributes"}  # fmt: skip
    if op in actions:
        return [_need(call, actions[op], queue)]
    raise NoMapping(call.name)


def _kms_call(call: Call, role: Role) -> list[Need]:
    key = call.params["KeyId"]
    if key.startswith("alias/") or ":alias/" in key:
        raise NoMapping(f"{call.name} by alias {key}: name the key ARN (an alias's key is not known here)")
    arn = key if key.startswith("arn:") else _arn("kms", call.region, f"key/{key}")
    if call.operation in ("Sign", "Verify", "GetPublicKey", "Decrypt", "Encrypt", "GenerateDataKey", "DescribeKey"):
        return [_need(call, f"kms:{call.operation}", arn, modelled=frozenset({"kms:SigningAlgorithm"}))]
    raise NoMapping(call.name)


def _secretsmanager(call: Call, role: Role) -> list[Need]:
    if call.operation != "GetSecretValue":
        raise NoMapping(call.name)
    secret = call.params["SecretId"]
    if not secret.startswith("arn:"):
        # A name: the ARN carries a random 6-character suffix, which the answer tells (else a stand-in one).
        secret = call.response_arn or _arn("secretsmanager", call.region, f"secret:{secret}-AbC123")
    return [_need(call, "secretsmanager:GetSecretValue", secret)]


def _ssm(call: Call, role: Role) -> list[Need]:
    if call.operation not in ("GetParameter", "GetParameters"):
        raise NoMapping(call.name)
    names = [call.params["Name"]] if call.operation == "GetParameter" else call.params["Names"]
    return [_need(call, f"ssm:{call.operation}", _arn("ssm", call.region, "parameter/" + n.lstrip("/"))) for n in names]


def _lambda(call: Call, role: Role) -> list[Need]:
    if call.operation not in ("Invoke", "InvokeAsync"):
        raise NoMapping(call.name)
    name = call.params["FunctionName"]
    arn = name if name.startswith("arn:") else _arn("lambda", call.region, f"function:{name}")
    return [_need(call, "lambda:InvokeFunction", arn)]


def _eks(call: Call, role: Role) -> list[Need]:
    if call.operation != "DescribeCluster":
        raise NoMapping(call.name)
    return [_need(call, "eks:DescribeCluster", _arn("eks", call.region, f"cluster/{call.params['name']}"))]


def _sts(call: Call, role: Role) -> list[Need]:
    if call.operation == "GetCallerIdentity":
        return []  # needs no permission: "No permissions are required to perform this operation"
    raise NoMapping(call.name)


def _cloudwatch(call: Call, role: Role) -> list[Need]:
    if call.operation != "PutMetricData":
        raise NoMapping(call.name)
    namespace = {"cloudwatch:namespace": call.params["Namespace"]}
    return [_need(call, "cloudwatch:PutMetricData", "*", namespace, frozenset(namespace))]


MAPPINGS: dict[str, Callable[[Call, Role], list[Need]]] = {
    "s3": _s3, "dynamodb": _dynamodb, "sns": _sns, "sqs": _sqs, "kms": _kms_call,
    "secretsmanager": _secretsmanager, "ssm": _ssm, "lambda": _lambda, "eks": _eks, "sts": _sts,
    "cloudwatch": _cloudwatch,
}  # fmt: skip


def needs(call: Call, role: Role) -> list[Need]:
    """The IAM requests AWS authorises for ``call`` made with ``role``; raises NoMapping if unknown."""
    mapping = MAPPINGS.get(call.service)
    try:
        if mapping is None:
            raise NoMapping(call.name)
        return mapping(call, role)
    except NoMapping as exc:
        detail = "" if str(exc) == call.name else f" ({exc})"
        raise NoMapping(f"no IAM mapping for {call.name}{detail}: add it to tests/iam/actions.py") from None


# Actions the Lambda service performs with the function's role, not the function's code: the
# unused-permission report names them apart, since no test call can exercise them.
SERVICE_ACTIONS = {
    "logs:CreateLogStream": "Lambda writes the function's logs",
    "logs:PutLogEvents": "Lambda writes the function's logs",
    "xray:PutTraceSegments": "Lambda's tracing (Tracing: Active)",
    "xray:PutTelemetryRecords": "Lambda's tracing (Tracing: Active)",
    "sqs:ReceiveMessage": "the SQS event source mapping polls with the role",
    "sqs:DeleteMessage": "the SQS event source mapping deletes handled messages",
    "sqs:GetQueueAttributes": "the SQS event source mapping reads the queue",
    "sqs:ChangeMessageVisibility": "the SQS event source mapping returns failed messages",
    "sqs:SendMessage": "an on-failure destination sends as the role",
}
