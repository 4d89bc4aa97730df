"""``auditlake doctor --stack S``: the post-deploy smoke test of a deployed stack.

Contract: one line per check on stdout, ``ok``, ``WARN`` or ``FAIL``, the check's name, what was found
and, when it is not ok, what to do; then a count on stderr. The command exits 1 when any check
FAILs, 0 otherwise (WARNs included). A check that AWS refuses (no permission, a throttle, a resource
gone) is that check's FAIL line, naming the refused operation; only a stack that cannot be read at
all ends the run early, as a one-line ``error:``. No check changes the stack, except two that the
user asks for by running doctor: one Athena query in the stack's workgroup (its result lands in the
results bucket) and, with ``--webhook-token-file``, one synthetic audit event POSTed to the webhook
(archived like any other, user ``auditlake-doctor``).

What it checks, from the stack's description (status, parameters, outputs) and its resource list:
the stack is in a usable ``*_COMPLETE`` state; every output the CLI relies on is there; each bucket
is versioned, KMS-encrypted by default, blocks public access and has lifecycle rules, no rule of the
archive buckets expires keys sooner than the stack's retention parameters, and the audit bucket has
Object Lock with the stack's mode and days and no digest expires before the files it seals; the
state table is active with TTL on; each function exists, and how many errors it had in the last
hour; no alarm of the stack is in ALARM; the digest chain head is younger than 3 hours; the
account's Lambda concurrency leaves room for the compactor (5), the poller's fan-out (one per polled
cluster up to PollerMaxFanOut, plus the schedule's) and the webhook; the Glue database (a lower-case
name) and its three tables (audit, events, findings) exist over the archive buckets (partitions
projected); the workgroup enforces KMS result encryption; and a query on the current hour completes
in it (the read path: Athena, Glue, S3, KMS). Time comes from the injected ``now``; waiting for
Athena from the injected ``sleep``.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from auditlake import __version__
from auditlake.cli.render import explain, fail
from auditlake.cli.stack import (
    ATHENA_RESULTS_BUCKET,
    ATHENA_WORKGROUP,
    AUDIT_ARCHIVE_BUCKET,
    DATA_KEY,
    DIGEST_FUNCTION,
    EVENTS_ARCHIVE_BUCKET,
    FINDINGS_ARCHIVE_BUCKET,
    GLUE_DATABASE,
    RAW_BUCKET,
    REQUIRED_OUTPUTS,
    STATE_TABLE,
    WEBHOOK_FUNCTION,
    WEBHOOK_URL,
    outputs_of,
)
from auditlake.landing import valid_cluster_name
from auditlake.state_table import TTL
from auditlake.timestamps import format_utc, parse

OK, WARN, FAIL = "ok", "WARN", "FAIL"

# verify --stack calls a chain stale after 3 h; digests are written at five past every hour.
DIGEST_MAX_AGE = timedelta(hours=3)
# The compactor runs at most this many at once: its SQS event source's two (late objects,
# template.yaml ScalingConfig) and the hourly run. The poller's fan-out is bounded by PollerMaxFanOut.
COMPACTOR_CONCURRENCY = 3
# Below this account quota, a burst of webhook batches next to the compactor and the poller's
# fan-out can be throttled (new accounts may start at 10; the usual default is 1,000).
CONCURRENCY_COMFORT = 100
ATHENA_TIMEOUT = timedelta(minutes=2)
TABLES = ("audit", "events", "findings")
# Each archive's retention parameter: no lifecycle rule may expire its keys sooner (the digests record it).
RETENTION_PARAMETERS = {
    "audit": "AuditRetentionDays",
    "events": "EventsRetentionDays",
    "findings": "FindingsRetentionDays",
}
# Keys as the compactor and the digest function write them, to ask the lifecycle rules about.
AUDIT_FILE, DIGEST_FILE = "audit/dt=2026-01-01/hour=00/c.parquet", "digests/0000000001.json"


@dataclass(frozen=True)
class Check:
    status: str  # ok | WARN | FAIL
    name: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.status:<4}  {self.name}: {self.detail}"
        return f"{text} -> {self.fix}" if self.fix and self.status != OK else text


class StackUnreadable(Exception):
    """The stack cannot be described at all: nothing else can be checked."""


def _refused(exc: Exception) -> str:
    """A ClientError or BotoCoreError as one line: the operation, the code, what it means."""
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code, message = error.get("Code", "?"), error.get("Message", "")
        text = f"{exc.operation_name} refused: {code}" + (f" ({message})" if message else "")
        if "AccessDenied" in code or code in ("UnauthorizedOperation", "AuthorizationError"):
            text += "; the caller may lack that permission"
        return text
    return f"{type(exc).__name__}: {exc}"


class Doctor:
    """The checks of one stack, in the order a reader fixes them: each yields Check lines."""

    def __init__(
        self,
        session: Any,
        stack: str,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], None] = time.sleep,
        athena_timeout: timedelta = ATHENA_TIMEOUT,
        webhook_token: str | None = None,
        cluster: str | None = None,
    ) -> None:
        self.session, self.stack, self.now, self.sleep = session, stack, now, sleep
        self.athena_timeout = athena_timeout
        self.webhook_token, self.cluster = webhook_token, cluster
        self._clients: dict[str, Any] = {}
        self.description: dict[str, Any] = {}
        self.outputs: dict[str, str] = {}
        self.parameters: dict[str, str] = {}
        self.resources: dict[str, list[tuple[str, str]]] = {}  # type -> [(logical id, physical id)]
        self._workgroup_found: dict[str, Any] | None = None

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.session.client(service)
        return self._clients[service]

    # ------------------------------------------------------------ the run

    def load(self) -> None:
        """Describe the stack and list its resources; StackUnreadable when it cannot be described."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.description = self.client("cloudformation").describe_stacks(StackName=self.stack)["Stacks"][0]
        except ClientError as exc:
            raise StackUnreadable(f"stack {self.stack}: {_refused(exc)}") from None
        # A BotoCoreError here (no region, no credentials) is the command's: one line, as every command says it.
        self.outputs = outputs_of(self.description)  # as the other commands read them
        self.parameters = {
            p["ParameterKey"]: p.get("ParameterValue", "") for p in self.description.get("Parameters", [])
        }
        try:
            for page in (
                self.client("cloudformation").get_paginator("list_stack_resources").paginate(StackName=self.stack)
            ):
                for resource in page["StackResourceSummaries"]:
                    self.resources.setdefault(resource["ResourceType"], []).append(
                        (resource["LogicalResourceId"], resource.get("PhysicalResourceId", ""))
                    )
        except (BotoCoreError, ClientError) as exc:
            raise StackUnreadable(f"stack {self.stack}: {_refused(exc)}") from None

    def run(self) -> Iterator[Check]:
        """Every check, in order. Call ``load`` first (``checks`` does both)."""
        steps: list[tuple[str, Callable[[], Iterator[Check]]]] = [
            ("stack", self.check_stack),
            ("outputs", self.check_outputs),
            ("buckets", self.check_buckets),
            ("state table", self.check_table),
            ("digest head", self.check_digest_head),
            ("functions", self.check_functions),
            ("alarms", self.check_alarms),
            ("concurrency", self.check_concurrency),
            ("glue", self.check_glue),
            ("athena", self.check_athena),
        ]
        if self.webhook_token is not None:
            steps.append(("webhook", self.check_webhook))
        from botocore.exceptions import BotoCoreError, ClientError

        for name, step in steps:
            try:
                yield from step()
            except (BotoCoreError, ClientError) as exc:
                yield Check(FAIL, name, f"cannot check: {_refused(exc)}", "grant it, or run doctor as a role that may")

    def checks(self) -> Iterator[Check]:
        self.load()
        yield from self.run()

    # ------------------------------------------------------------ stack and outputs

    def check_stack(self) -> Iterator[Check]:
        status = self.description.get("StackStatus", "?")
        if status in ("CREATE_COMPLETE", "UPDATE_COMPLETE", "IMPORT_COMPLETE"):
            yield Check(OK, "stack", f"{self.stack} is {status}")
        elif status in ("UPDATE_ROLLBACK_COMPLETE", "IMPORT_ROLLBACK_COMPLETE"):
            yield Check(
                WARN, "stack", f"{self.stack} is {status}: the last update failed and was rolled back",
                "the previous version runs; read the failed update's events: aws cloudformation "
                f"describe-stack-events --stack-name {self.stack}",
            )  # fmt: skip
        elif status.endswith("_IN_PROGRESS"):
            yield Check(FAIL, "stack", f"{self.stack} is {status}", "wait for it to finish, then run doctor again")
        else:  # ROLLBACK_COMPLETE (the creation failed), *_FAILED, DELETE_COMPLETE
            reason = self.description.get("StackStatusReason", "no reason given")
            yield Check(
                FAIL, "stack", f"{self.stack} is {status}: {reason}",
                f"read aws cloudformation describe-stack-events --stack-name {self.stack}; a stack in "
                "ROLLBACK_COMPLETE must be deleted before it is deployed again",
            )  # fmt: skip

    def check_outputs(self) -> Iterator[Check]:
        missing = [name for name in REQUIRED_OUTPUTS if not self.outputs.get(name)]
        if missing:
            yield Check(
                FAIL, "outputs", f"missing {', '.join(missing)}",
                "this stack is not from this version's template.yaml (or was edited): sam deploy it",
            )  # fmt: skip
        else:
            yield Check(OK, "outputs", f"all {len(REQUIRED_OUTPUTS)} outputs the CLI reads are present")

    # ------------------------------------------------------------ buckets

    def _buckets(self) -> list[tuple[str, str]]:
        """(role, name) of the stack's buckets, from the outputs."""
        found = [
            (role, self.outputs[key])
            for role, key in (
                ("raw", RAW_BUCKET),
                ("audit", AUDIT_ARCHIVE_BUCKET),
                ("events", EVENTS_ARCHIVE_BUCKET),
                ("findings", FINDINGS_ARCHIVE_BUCKET),
            )
            if self.outputs.get(key)
        ]
        location = self._workgroup_location()
        if self.outputs.get(ATHENA_RESULTS_BUCKET):
            found.append(("results", self.outputs[ATHENA_RESULTS_BUCKET]))
        elif location:  # a stack from before the output: the bucket the workgroup writes to
            found.append(("results", location.removeprefix("s3://").split("/", 1)[0]))
        return found

    def _workgroup(self) -> dict[str, Any] | None:
        """The stack's workgroup (read once: the buckets and athena checks both need it)."""
        if self._workgroup_found is None and self.outputs.get(ATHENA_WORKGROUP):
            name = self.outputs[ATHENA_WORKGROUP]
            self._workgroup_found = self.client("athena").get_work_group(WorkGroup=name)["WorkGroup"]
        return self._workgroup_found

    def _workgroup_location(self) -> str | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            workgroup = self._workgroup()
        except (BotoCoreError, ClientError):
            return None  # the athena check reports it
        if workgroup is None:
            return None
        location = workgroup.get("Configuration", {}).get("ResultConfiguration", {}).get("OutputLocation")
        return str(location) if location else None

    def check_buckets(self) -> Iterator[Check]:
        for role, bucket in self._buckets():
            yield self._bucket(role, bucket)

    def _bucket(self, role: str, bucket: str) -> Check:
        from botocore.exceptions import BotoCoreError, ClientError

        s3, name = self.client("s3"), f"bucket {role}"
        problems, fixes, found = [], [], []
        try:
            s3.head_bucket(Bucket=bucket)
        except ClientError as exc:
            return Check(FAIL, name, f"{bucket}: {_refused(exc)}", "it should exist while the stack does: sam deploy")

        def optional(call: Callable[..., Any], missing: str) -> Any:
            """A configuration S3 answers with an error code when there is none."""
            try:
                return call(Bucket=bucket)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == missing:
                    return None
                raise

        try:
            versioning = s3.get_bucket_versioning(Bucket=bucket).get("Status", "never enabled")
            if versioning == "Enabled":
                found.append("versioned")
            else:
                problems.append(f"versioning {versioning}")
                fixes.append(
                    f"aws s3api put-bucket-versioning --bucket {bucket} --versioning-configuration Status=Enabled"
                )
            encryption = optional(s3.get_bucket_encryption, "ServerSideEncryptionConfigurationNotFoundError")
            rules = (encryption or {}).get("ServerSideEncryptionConfiguration", {}).get("Rules", [])
            default = rules[0].get("ApplyServerSideEncryptionByDefault", {}) if rules else {}
            key = self.outputs.get(DATA_KEY, "")
            if default.get("SSEAlgorithm") not in ("aws:kms", "aws:kms:dsse"):
                problems.append(f"default encryption {default.get('SSEAlgorithm', 'none')}, not KMS")
                fixes.append(f"aws s3api put-bucket-encryption --bucket {bucket} with SSEAlgorithm aws:kms and {key}")
            elif key and default.get("KMSMasterKeyID") not in (key, key.rsplit("/", 1)[-1]):
                problems.append(f"KMS key {default.get('KMSMasterKeyID')} is not the stack's ({key})")
                fixes.append("the stack's DataKeyArn should be the bucket's default key")
            else:
                found.append("KMS")
            block = optional(s3.get_public_access_block, "NoSuchPublicAccessBlockConfiguration")
            settings = (block or {}).get("PublicAccessBlockConfiguration", {})
            flags = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
            if all(settings.get(flag) for flag in flags):
                found.append("public access blocked")
            else:
                problems.append(
                    "public access not blocked (" + ", ".join(f for f in flags if not settings.get(f)) + ")"
                )
                fixes.append(
                    f"aws s3api put-public-access-block --bucket {bucket} --public-access-block-configuration "
                    + ",".join(f"{f}=true" for f in flags)
                )
            lifecycle = optional(s3.get_bucket_lifecycle_configuration, "NoSuchLifecycleConfiguration")
            enabled = [r for r in (lifecycle or {}).get("Rules", []) if r.get("Status") == "Enabled"]
            if enabled:
                found.append(f"{len(enabled)} lifecycle rules")
            else:
                problems.append("no lifecycle rule: nothing expires or changes tier")
                fixes.append(f"aws cloudformation detect-stack-drift --stack-name {self.stack}, then restore the rules")
            if role in RETENTION_PARAMETERS:
                kept = (self._object_lock(bucket, optional), self._digest_expiry(lifecycle)) if role == "audit" else ()
                for ok, what, fix in (*kept, self._sooner_expiry(lifecycle, role)):
                    if what:
                        (found if ok else problems).append(what)
                    if fix:
                        fixes.append(fix)
        except (BotoCoreError, ClientError) as exc:
            return Check(FAIL, name, f"{bucket}: cannot check: {_refused(exc)}")
        if problems:
            return Check(FAIL, name, f"{bucket}: " + "; ".join(problems), "; ".join(fixes))
        return Check(OK, name, f"{bucket}: " + ", ".join(found))

    def _digest_expiry(self, lifecycle: dict[str, Any] | None) -> tuple[bool, str, str]:
        """(as it should be, what was found, what to do): digests must not expire before the files
        they seal, or verify finds sealed files whose digest is gone (the README's "Digests expire
        with the files they seal")."""
        from auditlake.trust.retention import Retention

        retention = Retention.from_lifecycle((lifecycle or {}).get("Rules", []))
        now = self.now()
        files, digests = AUDIT_FILE, DIGEST_FILE
        file_due, digest_due = retention.eligible(files, now), retention.eligible(digests, now)
        found = f"files expire {_after(retention.describe(files))}, digests {_after(retention.describe(digests))}"
        if digest_due is not None and (file_due is None or digest_due < file_due):
            return False, f"{found}: digests expire before the files they seal", (
                "give digests/ the same expiry as audit/ (template.yaml's digest-expiry rule): sam deploy"
            )  # fmt: skip
        return True, found, ""

    def _sooner_expiry(self, lifecycle: dict[str, Any] | None, store: str) -> tuple[bool, str, str]:
        """(as it should be, what was found, what to do): no rule may expire the archive's keys
        sooner than the stack's AuditRetentionDays / EventsRetentionDays / FindingsRetentionDays, which
        the digests record (verify reports what such a rule removes as missing, and the rule as RETENTION)."""
        from auditlake.trust.retention import sooner_rules, stack_retention

        parameter = RETENTION_PARAMETERS[store]
        days = str(self.parameters.get(parameter, ""))
        if not days.isdigit():
            return True, "", ""
        # Only this store's parameter is read: sooner_rules looks at this store's prefixes only.
        given: dict[str, int | None] = {name: None for name in RETENTION_PARAMETERS}
        given[store] = int(days)
        stack = stack_retention(given["audit"], given["events"], given["findings"])
        sooner = sooner_rules(stack, store, (lifecycle or {}).get("Rules", []))
        if not sooner:
            return True, "", ""
        what = "; ".join(f"rule {rule} {why}, the stack's {parameter} is {kept}" for rule, why, kept in sooner)
        rules = ", ".join(sorted({rule for rule, _, _ in sooner}))
        return False, what, (
            f"remove lifecycle rule(s) {rules} (aws cloudformation detect-stack-drift, then sam deploy restores "
            "the stack's rules): verify reports what they expire as missing"
        )  # fmt: skip

    def _object_lock(self, bucket: str, optional: Callable[..., Any]) -> tuple[bool, str, str]:
        """(as it should be, what was found, what to do) for the audit bucket's Object Lock."""
        config = optional(self.client("s3").get_object_lock_configuration, "ObjectLockConfigurationNotFoundError")
        lock = (config or {}).get("ObjectLockConfiguration", {})
        if lock.get("ObjectLockEnabled") != "Enabled":
            return (
                False,
                "Object Lock off",
                ("Object Lock can only be turned on when a bucket is created: this is not the template's audit bucket"),
            )
        retention = lock.get("Rule", {}).get("DefaultRetention", {})
        mode, days = retention.get("Mode", "NONE"), retention.get("Days") or (retention.get("Years", 0) * 365)
        want_mode = self.parameters.get("AuditObjectLockMode", mode)
        want_days = self.parameters.get("AuditRetentionDays", str(days))
        found = f"Object Lock {mode}" + (f" {days} days" if mode != "NONE" else " (no default retention)")
        if mode != want_mode or (want_mode != "NONE" and str(days) != want_days):
            want = f"{want_mode} {want_days} days" if want_mode != "NONE" else "NONE"
            return (
                False,
                f"{found}, the stack says {want}",
                "sam deploy restores the stack's retention (new objects only)",
            )
        return True, found, ""

    # ------------------------------------------------------------ state table and digest

    def check_table(self) -> Iterator[Check]:
        table = self.outputs.get(STATE_TABLE)
        if not table:
            return
        dynamodb = self.client("dynamodb")
        status = dynamodb.describe_table(TableName=table)["Table"]["TableStatus"]
        ttl = dynamodb.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
        if status != "ACTIVE":
            yield Check(FAIL, "state table", f"{table} is {status}", "wait until it is ACTIVE")
        elif ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING") or ttl.get("AttributeName") != TTL:
            yield Check(
                FAIL, "state table", f"{table}: TTL {ttl.get('TimeToLiveStatus', 'off')} on "
                f"{ttl.get('AttributeName', 'no attribute')}: counters, leases and ledger entries never expire",
                f"aws dynamodb update-time-to-live --table-name {table} "
                "--time-to-live-specification Enabled=true,AttributeName=ttl",
            )  # fmt: skip
        else:
            yield Check(OK, "state table", f"{table}: ACTIVE, TTL on ttl")

    def check_digest_head(self) -> Iterator[Check]:
        from auditlake.trust.digest import DigestError, DynamoChainHead

        table = self.outputs.get(STATE_TABLE)
        if not table:
            return
        logs = f"aws logs tail {self._log_group('DigestLogs', DIGEST_FUNCTION)} --since 3h"
        try:
            head = DynamoChainHead(self.client("dynamodb"), table).load()
        except DigestError as exc:
            yield Check(FAIL, "digest head", str(exc), "auditlake verify --stack names what is wrong")
            return
        now = self.now()
        if head is None:
            created = self.description.get("CreationTime")
            age = f" (the stack is {_age(now - created)} old)" if isinstance(created, datetime) else ""
            yield Check(
                WARN, "digest head", f"no digest yet{age}",
                "the first is written at five past the first full hour after deployment; "
                f"if that has passed, read {logs}",
            )  # fmt: skip
            return
        ends = parse(head["to"])
        if now - ends > DIGEST_MAX_AGE:
            yield Check(
                FAIL, "digest head", f"digest {head['sequence']} ends {format_utc(ends)}, {_age(now - ends)} ago: "
                "the hourly digest is not sealing (verify --stack reports STALE)", f"read {logs}",
            )  # fmt: skip
        else:
            yield Check(
                OK, "digest head", f"digest {head['sequence']} ends {format_utc(ends)} ({_age(now - ends)} ago)"
            )

    def _log_group(self, logical: str, function: str) -> str:
        """The stack's log group ``logical`` (template.yaml gives each function its own, named
        /auditlake/<stack>/..., as <Name>Logs next to <Name>Function), else Lambda's default for
        ``function`` (a function name, or the output naming it)."""
        for name, physical in self.resources.get("AWS::Logs::LogGroup", []):
            if name == logical and physical:
                return physical
        return f"/aws/lambda/{self.outputs.get(function, function)}"

    # ------------------------------------------------------------ functions and alarms

    def check_functions(self) -> Iterator[Check]:
        functions = [(logical, physical) for logical, physical in self.resources.get("AWS::Lambda::Function", [])]
        if not functions:
            yield Check(FAIL, "functions", "the stack lists no function", "this is not an auditlake stack")
            return
        now = self.now()
        for logical, name in functions:
            yield self._function(logical, name, now)

    def _function(self, logical: str, name: str, now: datetime) -> Check:
        from botocore.exceptions import ClientError

        label = f"function {logical}"
        try:
            config = self.client("lambda").get_function(FunctionName=name)["Configuration"]
        except ClientError as exc:
            return Check(FAIL, label, f"{name}: {_refused(exc)}", "sam deploy recreates it")
        state, update = config.get("State", "Active"), config.get("LastUpdateStatus", "Successful")
        if state == "Failed" or update == "Failed":
            reason = config.get("StateReason") or config.get("LastUpdateStatusReason") or ""
            return Check(FAIL, label, f"{name}: {state}/{update} {reason}".rstrip(), "sam deploy again")
        points = self.client("cloudwatch").get_metric_statistics(
            Namespace="AWS/Lambda", MetricName="Errors", Dimensions=[{"Name": "FunctionName", "Value": name}],
            StartTime=now - timedelta(hours=1), EndTime=now, Period=3600, Statistics=["Sum"],
        )["Datapoints"]  # fmt: skip
        errors = int(sum(p.get("Sum", 0) for p in points))
        if errors:
            return Check(
                WARN, label, f"{name}: {errors} errors in the last hour",
                f"aws logs tail {self._log_group(logical.removesuffix('Function') + 'Logs', name)} "
                "--since 1h --filter-pattern ERROR",
            )  # fmt: skip
        return Check(OK, label, f"{name}: {state}, no errors in the last hour")

    def check_alarms(self) -> Iterator[Check]:
        names = [physical for _, physical in self.resources.get("AWS::CloudWatch::Alarm", [])]
        if not names:
            yield Check(WARN, "alarms", "the stack lists no alarm", "nothing pages when a function fails")
            return
        alarms: dict[str, dict[str, Any]] = {}
        cloudwatch = self.client("cloudwatch")
        for start in range(0, len(names), 100):  # DescribeAlarms takes at most 100 names
            for page in cloudwatch.get_paginator("describe_alarms").paginate(AlarmNames=names[start : start + 100]):
                alarms.update(
                    {a["AlarmName"]: a for a in page.get("MetricAlarms", []) + page.get("CompositeAlarms", [])}
                )
        missing = [n for n in names if n not in alarms]
        firing = [a for a in alarms.values() if a.get("StateValue") == "ALARM"]
        for alarm in firing:
            yield Check(
                FAIL, "alarm", f"{alarm['AlarmName']} is in ALARM: {alarm.get('StateReason', '')}",
                "see Alerts in the README for what each alarm means",
            )  # fmt: skip
        if missing:
            yield Check(FAIL, "alarms", f"missing: {', '.join(missing)}", "sam deploy recreates them")
        if not firing and not missing:
            waiting = sum(1 for a in alarms.values() if a.get("StateValue") == "INSUFFICIENT_DATA")
            note = f" ({waiting} without data yet: usual on a new stack)" if waiting else ""
            yield Check(OK, "alarms", f"{len(alarms)} alarms, none in ALARM{note}")

    # ------------------------------------------------------------ concurrency

    def check_concurrency(self) -> Iterator[Check]:
        from auditlake.clusters.registry import DynamoRegistry, RegistryError

        limits = self.client("lambda").get_account_settings()["AccountLimit"]
        quota = int(limits.get("ConcurrentExecutions", 0))
        unreserved = int(limits.get("UnreservedConcurrentExecutions", quota))
        polled, note = 0, ""
        if self.outputs.get(STATE_TABLE):
            try:
                polled = len(DynamoRegistry(self.client("dynamodb"), self.outputs[STATE_TABLE]).polled())
            except RegistryError as exc:
                note = f" (polled clusters unknown: {exc})"
        # The schedule's invocation and the polls it starts (one per polled cluster, at most
        # PollerMaxFanOut a minute), the compactor's three, and at least one each for the webhook, the
        # EKS forwarder and the digest.
        fan_out = min(polled, int(self.parameters.get("PollerMaxFanOut") or polled))
        need = COMPACTOR_CONCURRENCY + fan_out + 1 + 3
        detail = (
            f"account quota {quota}, {unreserved} unreserved; at least {need} needed "
            f"(compactor {COMPACTOR_CONCURRENCY}, poller {fan_out} + 1, webhook, forwarder, digest){note}"
        )
        increase = "request an increase of 'Concurrent executions' (Service Quotas, AWS Lambda)"
        if unreserved < need:
            yield Check(FAIL, "lambda concurrency", detail, increase)
        elif quota < CONCURRENCY_COMFORT:
            yield Check(WARN, "lambda concurrency", detail + ": webhook bursts will be throttled (kube-apiserver "
                        "retries, then drops)", increase)  # fmt: skip
        else:
            yield Check(OK, "lambda concurrency", detail)

    # ------------------------------------------------------------ the query path

    def check_glue(self) -> Iterator[Check]:
        from botocore.exceptions import ClientError

        database = self.outputs.get(GLUE_DATABASE)
        if not database:
            return
        if database != database.lower():  # derived from a mixed-case stack name: CloudFormation cannot lower-case it
            yield Check(
                WARN, "glue name",
                f"database {database} is not lower case: Glue's API wants lower-case names, so deleting the stack "
                "may fail to delete it",
                "set GlueDatabaseName to a lower-case name (the tables are recreated over the same archive)",
            )  # fmt: skip
        glue = self.client("glue")
        try:
            glue.get_database(Name=database)
        except ClientError as exc:
            yield Check(FAIL, "glue", f"database {database}: {_refused(exc)}", "sam deploy recreates it")
            return
        buckets = {
            "audit": self.outputs.get(AUDIT_ARCHIVE_BUCKET),
            "events": self.outputs.get(EVENTS_ARCHIVE_BUCKET),
            "findings": self.outputs.get(FINDINGS_ARCHIVE_BUCKET),
        }
        for table in TABLES:
            try:
                found = glue.get_table(DatabaseName=database, Name=table)["Table"]
            except ClientError as exc:
                yield Check(FAIL, f"glue {table}", f"{database}.{table}: {_refused(exc)}", "sam deploy recreates it")
                continue
            location = found.get("StorageDescriptor", {}).get("Location", "")
            projected = found.get("Parameters", {}).get("projection.enabled") == "true"
            # Without the bucket's output (a stack from an older template) the outputs check has
            # failed already; here only what can still be told: the table is projected.
            want = f"s3://{buckets[table]}/{table}/" if buckets[table] else location
            if location != want or not projected:
                problems = ([] if location == want else [f"reads {location or 'nothing'}, not {want}"]) + (
                    [] if projected else ["partition projection off: queries find no partition"]
                )
                yield Check(FAIL, f"glue {table}", f"{database}.{table}: " + "; ".join(problems), "sam deploy")
            else:
                yield Check(OK, f"glue {table}", f"{database}.{table} over {location}, partitions projected")

    def check_athena(self) -> Iterator[Check]:
        workgroup_name, database = self.outputs.get(ATHENA_WORKGROUP), self.outputs.get(GLUE_DATABASE)
        if not workgroup_name or not database:
            return
        workgroup = self._workgroup() or {}
        config = workgroup.get("Configuration", {})
        encryption = config.get("ResultConfiguration", {}).get("EncryptionConfiguration", {})
        option = encryption.get("EncryptionOption", "none")
        if workgroup.get("State", "ENABLED") != "ENABLED":
            yield Check(FAIL, "athena workgroup", f"{workgroup_name} is {workgroup.get('State')}",
                        f"aws athena update-work-group --work-group {workgroup_name} --state ENABLED")  # fmt: skip
            return
        if option not in ("SSE_KMS", "CSE_KMS") or not config.get("EnforceWorkGroupConfiguration"):
            yield Check(
                WARN, "athena workgroup", f"{workgroup_name}: results encrypted {option}, "
                f"enforced {bool(config.get('EnforceWorkGroupConfiguration'))}: results hold audit data",
                "sam deploy this version (results under the stack's KMS key, enforced)",
            )  # fmt: skip
        else:
            yield Check(OK, "athena workgroup", f"{workgroup_name}: results {option}, enforced")
        yield self._round_trip(workgroup_name, database)

    def _round_trip(self, workgroup: str, database: str) -> Check:
        athena, now = self.client("athena"), self.now()
        # One hour of today, bounded on both partition columns: a few KB scanned, never a year.
        sql = "SELECT count(*) AS n FROM audit WHERE dt = ? AND hour = ?"
        values = [f"'{now:%Y-%m-%d}'", str(now.hour)]
        query_id = athena.start_query_execution(
            QueryString=sql, WorkGroup=workgroup, QueryExecutionContext={"Database": database},
            ExecutionParameters=values,
        )["QueryExecutionId"]  # fmt: skip
        deadline = now + self.athena_timeout
        while True:
            status = athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]["Status"]
            if status["State"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
                break
            if self.now() >= deadline:
                athena.stop_query_execution(QueryExecutionId=query_id)
                return Check(FAIL, "athena query", f"{query_id} still {status['State']} after "
                             f"{int(self.athena_timeout.total_seconds())} s (stopped)",
                             "look at the workgroup's running queries and service health")  # fmt: skip
            self.sleep(1.0)
        if status["State"] != "SUCCEEDED":
            return Check(
                FAIL, "athena query", f"{query_id} {status['State']}: {status.get('StateChangeReason', '')}",
                "the caller needs Athena, Glue, s3 on the archive and results buckets, kms:Decrypt and "
                "kms:GenerateDataKey on the data key (README: Querying)",
            )  # fmt: skip
        rows = athena.get_query_results(QueryExecutionId=query_id, MaxResults=2)["ResultSet"].get("Rows", [])
        count = rows[1]["Data"][0].get("VarCharValue") if len(rows) > 1 and rows[1].get("Data") else None
        found = f"{count} audit rows archived in hour {now:%Y-%m-%d} {now.hour:02d}" if count is not None else "no rows"
        return Check(OK, "athena query", f"SELECT on {database}.audit in {workgroup} SUCCEEDED: {found}")

    # ------------------------------------------------------------ the write path

    def check_webhook(self) -> Iterator[Check]:
        from auditlake.clusters.registry import DynamoRegistry, token_hash

        url, table = self.outputs.get(WEBHOOK_URL), self.outputs.get(STATE_TABLE)
        if not url or not table or self.webhook_token is None or self.cluster is None:
            return
        owner = DynamoRegistry(self.client("dynamodb"), table).cluster_for(token_hash(self.webhook_token))
        if owner != self.cluster:
            found = f"belongs to cluster {owner}" if owner else "is not registered (or was revoked)"
            yield Check(FAIL, "webhook", f"the token {found}, not {self.cluster}: nothing sent",
                        f"auditlake cluster rotate-token {self.cluster} --stack {self.stack}")  # fmt: skip
            return
        body = synthetic_eventlist(self.now())
        request = urllib.request.Request(  # noqa: S310 - the stack's https URL (its own output)
            url, data=body, method="POST",
            headers={"Authorization": f"Bearer {self.webhook_token}", "Content-Type": "application/json"},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - see above
                status, text = response.status, response.read(2000).decode(errors="replace")
        except urllib.error.HTTPError as exc:
            status, text = exc.code, exc.read(2000).decode(errors="replace")
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            yield Check(
                FAIL, "webhook", f"POST {url}: {getattr(exc, 'reason', exc)}", "is the URL reachable from here?"
            )
            return
        if status != 200:
            logs = self._log_group("WebhookLogs", WEBHOOK_FUNCTION)
            yield Check(FAIL, "webhook", f"POST {url}: {status} {text.strip()[:300]}",
                        f"aws logs tail {logs} --since 10m")  # fmt: skip
            return
        yield Check(
            OK, "webhook", f"POST {url}: 200 {text.strip()[:200]} (user auditlake-doctor, cluster {self.cluster})"
        )


def synthetic_eventlist(now: datetime) -> bytes:
    """One harmless audit event, as kube-apiserver would send it: a read of a path no API server
    serves, by user ``auditlake-doctor``, so it is easy to tell apart (and to leave out) in queries."""
    stamp = format_utc(now)
    event = {
        "level": "Metadata", "auditID": str(uuid.uuid4()), "stage": "ResponseComplete",
        "requestURI": "/auditlake-doctor", "verb": "get",
        "user": {"username": "auditlake-doctor", "groups": ["system:authenticated"]},
        "sourceIPs": ["127.0.0.1"], "userAgent": f"auditlake-doctor/{__version__}",
        "responseStatus": {"metadata": {}, "code": 200},
        "requestReceivedTimestamp": stamp, "stageTimestamp": stamp,
        "annotations": {"auditlake.io/synthetic": "auditlake doctor round trip"},
    }  # fmt: skip
    envelope = {"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": [event]}
    return json.dumps(envelope).encode()


def webhook_token(text: str) -> str:
    """The token in a file: the file itself, or the webhook kubeconfig `cluster add` wrote (its user's token)."""
    import yaml

    if "kind: Config" in text:
        try:
            users = (yaml.safe_load(text) or {}).get("users") or [{}]
            return str(users[0].get("user", {}).get("token") or "").strip()
        except (yaml.YAMLError, AttributeError, TypeError):
            return ""
    return text.strip()


def _after(rule: str) -> str:
    """Retention.describe's "365 days" / "on 2027-01-01" / "never" as words after "expire"."""
    return rule if rule.startswith("on ") or rule == "never" else f"after {rule}"


def _age(delta: timedelta) -> str:
    minutes = max(0, int(delta.total_seconds() // 60))  # clocks a second apart are not "-1 min"
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def _session(region: str | None, profile: str | None) -> Any:
    import boto3

    return boto3.session.Session(region_name=region, profile_name=profile)


@click.command()
@click.option("--stack", required=True, help="The deployed stack to check.")
@click.option("--region", help="AWS region (default: the SDK's).")
@click.option("--profile", help="AWS profile (default: the SDK's).")
@click.option("--webhook-token-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Also POST one synthetic audit event with this cluster's token (a file holding it, or its "
              "webhook kubeconfig) and expect 200.")  # fmt: skip
@click.option("--cluster", help="The cluster the token belongs to (with --webhook-token-file).")
def doctor(stack: str, region: str | None, profile: str | None, webhook_token_file: Path | None,
           cluster: str | None) -> None:  # fmt: skip
    """Check a deployed stack: resources, settings, recent errors, the digest chain, the query path.

    One line per check (ok, WARN, FAIL and what to do); exits 1 when any check FAILs.

    \b
    Example:
      auditlake doctor --stack my-auditlake --region eu-west-1 --webhook-token-file c1.kubeconfig --cluster c1
    """
    from botocore.exceptions import BotoCoreError

    token = None
    if webhook_token_file is not None:
        if cluster is None or not valid_cluster_name(cluster):
            raise click.UsageError("--webhook-token-file needs --cluster NAME (the cluster the token belongs to)")
        token = webhook_token(webhook_token_file.read_text(encoding="utf-8"))
        if not token:
            raise click.BadParameter("no token in it", param_hint="--webhook-token-file")
    elif cluster is not None:
        raise click.UsageError("--cluster goes with --webhook-token-file")
    counts = {OK: 0, WARN: 0, FAIL: 0}
    try:
        checker = Doctor(_session(region, profile), stack, webhook_token=token, cluster=cluster)
        for check in checker.checks():
            click.echo(check.line())
            counts[check.status] += 1
    except (StackUnreadable, BotoCoreError) as exc:  # no credentials, no region, no such stack or profile
        fail(str(exc) if isinstance(exc, StackUnreadable) else explain(exc) or str(exc))
    click.echo(f"{counts[OK]} ok, {counts[WARN]} WARN, {counts[FAIL]} FAIL", err=True)
    if counts[FAIL]:
        raise SystemExit(1)
