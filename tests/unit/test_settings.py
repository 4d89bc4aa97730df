"""Settings are validated at cold start, every problem reported by variable name."""

from __future__ import annotations

import pytest

from auditlake import settings as s


def test_defaults() -> None:
    config = s.Settings.from_env({})
    assert config.redaction.covers("", "configmaps", "") and config.token_cache_seconds == 60


def test_values_are_read() -> None:
    config = s.Settings.from_env(
        {
            s.RAW_BUCKET: "raw",
            s.STATE_TABLE: "state",
            s.POLICY_PARAMETER: "/auditlake/policy",
            s.REDACT_CONFIGMAPS: "false",
            s.REDACT_RESOURCES: "sealedsecrets.bitnami.com, vaultsecrets.secrets.hashicorp.com",
            s.TOKEN_CACHE_SECONDS: "5",
        },
        required=(s.RAW_BUCKET, s.STATE_TABLE),
    )
    assert (config.raw_bucket, config.state_table, config.policy_parameter) == ("raw", "state", "/auditlake/policy")
    assert not config.redaction.covers("", "configmaps", "")
    assert config.redaction.covers("bitnami.com", "sealedsecrets", "") and config.token_cache_seconds == 5


def test_all_problems_at_once() -> None:
    with pytest.raises(s.SettingsError) as caught:
        s.Settings.from_env(
            {s.REDACT_CONFIGMAPS: "maybe", s.REDACT_RESOURCES: "*", s.TOKEN_CACHE_SECONDS: "-1"},
            required=(s.RAW_BUCKET, s.STATE_TABLE),
        )
    message = str(caught.value)
    for name in (s.RAW_BUCKET, s.STATE_TABLE, s.REDACT_CONFIGMAPS, s.REDACT_RESOURCES, s.TOKEN_CACHE_SECONDS):
        assert name in message


def test_the_poller_fan_out_bound() -> None:
    assert s.Settings.from_env({}).poller_max_fanout == 10  # the template's PollerMaxFanOut default
    assert s.Settings.from_env({s.POLLER_MAX_FANOUT: " 4 "}).poller_max_fanout == 4
    for bad, reason in (("0", "must be at least 1"), ("ten", "must be a whole number")):
        with pytest.raises(s.SettingsError, match=f"{s.POLLER_MAX_FANOUT} {reason}"):
            s.Settings.from_env({s.POLLER_MAX_FANOUT: bad})
