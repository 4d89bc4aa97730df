"""How each deployed function assembles the core from settings and the clients its adapter built."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from auditlake.audit.pipeline import AuditPipeline, PipelineConfig
from auditlake.audit.policy_source import PolicySource
from auditlake.clusters.registry import DynamoRegistry, PollConfig
from auditlake.ingest.rules import CUSTOM_RULES, RuleSource
from auditlake.ingest.webhook import AuditWebhook
from auditlake.landing import RULES_PREFIX, Landing
from auditlake.metrics import MetricsSink
from auditlake.settings import Settings
from auditlake.stores.s3 import S3Store
from auditlake.trust.alerts import (
    Correlations,
    DynamoCounter,
    DynamoPageClaims,
    FindingPages,
    Watch,
    forbidden_thresholds,
    sns_notifier,
)
from auditlake.trust.liveness import Heartbeats

if TYPE_CHECKING:
    from auditlake.archive.compactor import Compactor
    from auditlake.archive.hourly import DynamoCompactedHours
    from auditlake.detect.ir import Correlation
    from auditlake.detect.matches import Detector
    from auditlake.events.poller import PollerFleet
    from auditlake.ingest.cloudwatch import EksAuditForwarder
    from auditlake.trust.digest import Digester


def rules_from_settings(settings: Settings, s3: Any) -> RuleSource:
    """The detection rules, compiled once per cold start: the built-in set (the layer's compiled
    builtin.json; none when ``settings.builtin_rules`` is off) plus the custom document in the raw
    bucket (``auditlake rules push``), re-read every ``settings.rules_cache_seconds``. It is the
    ingest paths' Detector, and its ``correlations`` are what the Watch counts."""
    from botocore.exceptions import ClientError

    from auditlake.detect.ir import RuleSet
    from auditlake.detect.rulesets import builtin_rules, load_compiled

    key = RULES_PREFIX + CUSTOM_RULES

    def fetch() -> bytes | None:
        try:
            body: bytes = s3.get_object(Bucket=settings.raw_bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchKey", "404", "NotFound"):
                return None  # nothing pushed: the built-in rules only
            raise
        return body

    builtin = builtin_rules() if settings.builtin_rules else RuleSet()
    return RuleSource(builtin, fetch, load=load_compiled, max_age=settings.rules_cache_seconds)


def pipeline_from_settings(settings: Settings, ssm: Any | None, detector: Detector | None = None) -> AuditPipeline:
    if not settings.policy_parameter:
        return AuditPipeline(PipelineConfig(None, settings.redaction), detector)
    if ssm is None:
        raise ValueError("a policy parameter is configured but no SSM client was given")
    from aws_lambda_powertools.utilities.parameters import SSMProvider  # only when a policy is configured

    provider = SSMProvider(boto3_client=ssm)
    name, max_age = settings.policy_parameter, settings.policy_cache_seconds

    def fetch() -> str | None:
        value = provider.get(name, max_age=max_age)
        return value if isinstance(value, str) or value is None else str(value)

    return AuditPipeline(PolicySource(fetch, settings.redaction), detector)


def watch_from_settings(
    settings: Settings,
    *,
    dynamodb: Any | None,
    sns: Any | None,
    correlations: Callable[[], Sequence[Correlation]] | None = None,
    heartbeats: bool = True,
) -> Watch:
    """Paging when the stack has a topic: correlation rules counted in the state table (the 403
    bursts with AlertThreshold / SecretsAlertThreshold) and findings at or above AlertLevel paged
    once per FindingDedupMinutes (``sns`` makes the SNS client when the first alert is sent); and
    heartbeats when there is a state table (``heartbeats`` False: a path that does not say the
    audit log still arrives, the Events poller). ``correlations``: the rules in force (the ingest
    paths' RuleSource), else the built-in ones."""
    bursts = findings = None
    if settings.alert_topic:
        if sns is None or dynamodb is None:
            raise ValueError("an alert topic is configured but no SNS or DynamoDB client was given")
        if correlations is None:
            correlations = _builtin_correlations(settings)
        notify = sns_notifier(sns, settings.alert_topic)
        bursts = Correlations(
            DynamoCounter(dynamodb, settings.state_table),
            notify,
            correlations,
            thresholds=forbidden_thresholds(settings.alert_threshold, settings.secrets_alert_threshold),
        )
        findings = FindingPages(
            DynamoPageClaims(dynamodb, settings.state_table),
            notify,
            level=settings.alert_level,
            dedup_minutes=settings.finding_dedup_minutes,
        )
    beats = Heartbeats(dynamodb, settings.state_table) if dynamodb is not None and heartbeats else None
    return Watch(bursts, beats, findings)


def _builtin_correlations(settings: Settings) -> Callable[[], Sequence[Correlation]]:
    from auditlake.detect.rulesets import builtin_rules  # the layer's compiled builtin.json

    found = builtin_rules().correlations if settings.builtin_rules else ()
    return lambda: found


def build_compactor(settings: Settings, *, s3: Any, dynamodb: Any) -> Compactor:
    from auditlake.archive.compactor import Compactor  # pyarrow: only the compactor's function has it
    from auditlake.archive.locks import DynamoLocks
    from auditlake.trust.ledger import DynamoLedger

    return Compactor(
        S3Store(s3, settings.raw_bucket),
        archive_stores(settings, s3),
        DynamoLocks(dynamodb, settings.state_table),
        ledger=DynamoLedger(dynamodb, settings.state_table),
    )


def build_compacted_hours(settings: Settings, *, dynamodb: Any) -> DynamoCompactedHours:
    from auditlake.archive.hourly import DynamoCompactedHours  # beside the compactor: pyarrow

    return DynamoCompactedHours(dynamodb, settings.state_table)


def archive_stores(settings: Settings, s3: Any) -> dict[str, S3Store]:
    return {
        "audit": S3Store(s3, settings.audit_bucket),
        "events": S3Store(s3, settings.events_bucket),
        "findings": S3Store(s3, settings.findings_bucket),
    }


def build_digester(settings: Settings, *, s3: Any, dynamodb: Any, kms: Any) -> Digester:
    from auditlake.trust.digest import Digester, DynamoChainHead, KmsSigner
    from auditlake.trust.ledger import DynamoLedger

    return Digester(
        DynamoLedger(dynamodb, settings.state_table),
        archive_stores(settings, s3),
        DynamoChainHead(dynamodb, settings.state_table),
        KmsSigner(kms, settings.digest_key),
        retention=digest_retention(settings),
    )


def digest_retention(settings: Settings) -> dict[str, int]:
    """What each digest records of the stack's retention, by prefix (``stack_retention``); what is
    not given is not recorded (never expires)."""
    from auditlake.trust.retention import stack_retention  # the digest's and doctor's, not ingest's cold start

    return stack_retention(
        settings.audit_retention_days, settings.events_retention_days, settings.findings_retention_days
    )


def build_webhook(
    settings: Settings,
    *,
    s3: Any,
    dynamodb: Any,
    ssm: Any | None = None,
    sns: Any | None = None,
    metrics: MetricsSink | None = None,
) -> AuditWebhook:
    rules = rules_from_settings(settings, s3)
    return AuditWebhook(
        DynamoRegistry(dynamodb, settings.state_table, cache_seconds=settings.token_cache_seconds),
        pipeline_from_settings(settings, ssm, rules),
        Landing(S3Store(s3, settings.raw_bucket), "audit"),
        metrics=metrics,
        watch=watch_from_settings(settings, dynamodb=dynamodb, sns=sns, correlations=rules.correlations),
    )


def build_forwarder(
    settings: Settings,
    *,
    s3: Any,
    ssm: Any | None = None,
    dynamodb: Any | None = None,
    sns: Any | None = None,
    metrics: MetricsSink | None = None,
) -> EksAuditForwarder:
    from auditlake.ingest.cloudwatch import EksAuditForwarder

    rules = rules_from_settings(settings, s3)
    return EksAuditForwarder(
        pipeline_from_settings(settings, ssm, rules),
        Landing(S3Store(s3, settings.raw_bucket), "audit"),
        metrics=metrics,
        watch=watch_from_settings(settings, dynamodb=dynamodb, sns=sns, correlations=rules.correlations),
    )


def build_poller_fleet(
    settings: Settings,
    *,
    s3: Any,
    dynamodb: Any,
    eks: Any,
    sts: Any,
    secrets: Any,
    lambda_client: Any,
    metrics: MetricsSink | None = None,
    sns: Any | None = None,
) -> PollerFleet:
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

    from auditlake.events.api import KubeApi  # the kubernetes client: only the poller's function has it
    from auditlake.events.auth import credentials_for
    from auditlake.events.leases import DynamoLeases
    from auditlake.events.poller import PollerFleet

    provider = SecretsProvider(boto3_client=secrets)
    rules = rules_from_settings(settings, s3)

    def connect(config: PollConfig) -> KubeApi:
        return KubeApi(credentials_for(config, eks=eks, sts=sts, secrets=provider))

    return PollerFleet(
        DynamoRegistry(dynamodb, settings.state_table),
        Landing(S3Store(s3, settings.raw_bucket), "events"),
        DynamoLeases(dynamodb, settings.state_table),
        connect,
        metrics=metrics,
        heartbeats=Heartbeats(dynamodb, settings.state_table),
        silence_minutes=settings.silence_minutes,
        invoker=lambda_client,
        max_fanout=settings.poller_max_fanout,
        detector=rules,
        # Findings and correlations of Events rules page; no heartbeat (Events do not say the audit log arrives).
        watch=watch_from_settings(
            settings, dynamodb=dynamodb, sns=sns, correlations=rules.correlations, heartbeats=False
        ),
    )
