"""One settings model for every function, validated at cold start. Environment variable names
live here and nowhere else. No credential is ever read from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from auditlake.audit.redact import RedactionConfig
from auditlake.model import SIGMA_LEVELS

RAW_BUCKET = "AUDITLAKE_RAW_BUCKET"
AUDIT_BUCKET = "AUDITLAKE_AUDIT_BUCKET"
EVENTS_BUCKET = "AUDITLAKE_EVENTS_BUCKET"
STATE_TABLE = "AUDITLAKE_STATE_TABLE"
POLICY_PARAMETER = "AUDITLAKE_POLICY_PARAMETER"
POLICY_CACHE_SECONDS = "AUDITLAKE_POLICY_CACHE_SECONDS"
REDACT_CONFIGMAPS = "AUDITLAKE_REDACT_CONFIGMAPS"
REDACT_RESOURCES = "AUDITLAKE_REDACT_RESOURCES"
TOKEN_CACHE_SECONDS = "AUDITLAKE_TOKEN_CACHE_SECONDS"  # noqa: S105 - a variable name
ALERT_TOPIC = "AUDITLAKE_ALERT_TOPIC"
DIGEST_KEY = "AUDITLAKE_DIGEST_KEY"
SILENCE_MINUTES = "AUDITLAKE_SILENCE_MINUTES"
ALERT_THRESHOLD = "AUDITLAKE_ALERT_THRESHOLD"
SECRETS_ALERT_THRESHOLD = "AUDITLAKE_SECRETS_ALERT_THRESHOLD"
POLLER_MAX_FANOUT = "AUDITLAKE_POLLER_MAX_FANOUT"
AUDIT_RETENTION_DAYS = "AUDITLAKE_AUDIT_RETENTION_DAYS"
EVENTS_RETENTION_DAYS = "AUDITLAKE_EVENTS_RETENTION_DAYS"
FINDINGS_BUCKET = "AUDITLAKE_FINDINGS_BUCKET"
FINDINGS_RETENTION_DAYS = "AUDITLAKE_FINDINGS_RETENTION_DAYS"
ALERT_LEVEL = "AUDITLAKE_ALERT_LEVEL"  # findings at or above this Sigma level are paged
FINDING_DEDUP_MINUTES = "AUDITLAKE_FINDING_DEDUP_MINUTES"  # one page per (rule, cluster, identity, object) per window
BUILTIN_RULES = "AUDITLAKE_BUILTIN_RULES"  # false: only the custom rules under landing.RULES_PREFIX
RULES_CACHE_SECONDS = "AUDITLAKE_RULES_CACHE_SECONDS"  # how often the custom rules are re-read

DEFAULT_REDACTION = RedactionConfig.build()
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


class SettingsError(RuntimeError):
    pass


@dataclass(frozen=True)
class Settings:
    raw_bucket: str = ""
    audit_bucket: str = ""
    events_bucket: str = ""
    state_table: str = ""
    policy_parameter: str = ""
    policy_cache_seconds: int = 300
    redaction: RedactionConfig = DEFAULT_REDACTION
    token_cache_seconds: int = 60
    alert_topic: str = ""
    alert_threshold: int = 10
    secrets_alert_threshold: int = 0  # 0: no secrets-only rule
    digest_key: str = ""  # KMS asymmetric key that signs the hourly digests
    silence_minutes: int = 30  # a cluster quiet this long counts as silent (dead-man alarm)
    poller_max_fanout: int = 10  # Events polls started per minute at most (Lambda concurrency)
    # The stack's AuditRetentionDays / EventsRetentionDays: the digest records them, signed, and
    # verify accepts only what they let S3 expire. None: not given, nothing recorded.
    audit_retention_days: int | None = None
    events_retention_days: int | None = None
    findings_bucket: str = ""
    findings_retention_days: int | None = None
    alert_level: str = "high"  # model.SIGMA_LEVELS
    finding_dedup_minutes: int = 60
    builtin_rules: bool = True
    rules_cache_seconds: int = 300

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ, *, required: tuple[str, ...] = ()) -> Settings:
        """Read and validate; every problem is reported at once, by variable name."""
        problems: list[str] = []
        for name in required:
            if not env.get(name, "").strip():
                problems.append(f"{name} is required")
        configmaps = env.get(REDACT_CONFIGMAPS, "true").strip().lower()
        if configmaps not in _TRUE | _FALSE:
            problems.append(f"{REDACT_CONFIGMAPS} must be true or false, got {configmaps!r}")
        builtin_rules = env.get(BUILTIN_RULES, "true").strip().lower()
        if builtin_rules not in _TRUE | _FALSE:
            problems.append(f"{BUILTIN_RULES} must be true or false, got {builtin_rules!r}")
        alert_level = env.get(ALERT_LEVEL, "high").strip().lower()
        if alert_level not in SIGMA_LEVELS:
            problems.append(f"{ALERT_LEVEL} must be one of {', '.join(SIGMA_LEVELS)}, got {alert_level!r}")
        extra = [part for part in env.get(REDACT_RESOURCES, "").split(",") if part.strip()]
        redaction = DEFAULT_REDACTION
        try:
            redaction = RedactionConfig.build(configmaps=configmaps not in _FALSE, extra=extra)
        except ValueError as exc:
            problems.append(f"{REDACT_RESOURCES}: {exc}")
        numbers = {}
        for name, default in (
            (TOKEN_CACHE_SECONDS, 60),
            (POLICY_CACHE_SECONDS, 300),
            (ALERT_THRESHOLD, 10),
            (SECRETS_ALERT_THRESHOLD, 0),
            (SILENCE_MINUTES, 30),
            (POLLER_MAX_FANOUT, 10),
            (FINDING_DEDUP_MINUTES, 60),
            (RULES_CACHE_SECONDS, 300),
        ):
            raw = env.get(name, str(default)).strip()
            if not raw.isdigit():
                problems.append(f"{name} must be a whole number, got {raw!r}")
                raw = str(default)
            numbers[name] = int(raw)
        for name in (ALERT_THRESHOLD, POLLER_MAX_FANOUT, FINDING_DEDUP_MINUTES):
            if numbers[name] < 1:
                problems.append(f"{name} must be at least 1")
        retention: dict[str, int | None] = {}
        for name in (AUDIT_RETENTION_DAYS, EVENTS_RETENTION_DAYS, FINDINGS_RETENTION_DAYS):
            raw = env.get(name, "").strip()
            retention[name] = int(raw) if raw.isdigit() and int(raw) >= 1 else None
            if raw and retention[name] is None:
                problems.append(f"{name} must be a whole number of days, at least 1, got {raw!r}")
        if problems:
            raise SettingsError("invalid configuration: " + "; ".join(problems))
        return cls(
            raw_bucket=env.get(RAW_BUCKET, "").strip(),
            audit_bucket=env.get(AUDIT_BUCKET, "").strip(),
            events_bucket=env.get(EVENTS_BUCKET, "").strip(),
            state_table=env.get(STATE_TABLE, "").strip(),
            policy_parameter=env.get(POLICY_PARAMETER, "").strip(),
            policy_cache_seconds=numbers[POLICY_CACHE_SECONDS],
            redaction=redaction,
            token_cache_seconds=numbers[TOKEN_CACHE_SECONDS],
            alert_topic=env.get(ALERT_TOPIC, "").strip(),
            alert_threshold=numbers[ALERT_THRESHOLD],
            secrets_alert_threshold=numbers[SECRETS_ALERT_THRESHOLD],
            digest_key=env.get(DIGEST_KEY, "").strip(),
            silence_minutes=numbers[SILENCE_MINUTES],
            poller_max_fanout=numbers[POLLER_MAX_FANOUT],
            audit_retention_days=retention[AUDIT_RETENTION_DAYS],
            events_retention_days=retention[EVENTS_RETENTION_DAYS],
            findings_bucket=env.get(FINDINGS_BUCKET, "").strip(),
            findings_retention_days=retention[FINDINGS_RETENTION_DAYS],
            alert_level=alert_level if alert_level in SIGMA_LEVELS else "high",
            finding_dedup_minutes=numbers[FINDING_DEDUP_MINUTES],
            builtin_rules=builtin_rules not in _FALSE,
            rules_cache_seconds=numbers[RULES_CACHE_SECONDS],
        )
