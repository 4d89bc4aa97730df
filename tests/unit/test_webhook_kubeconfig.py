"""What `auditlake cluster add` hands to the cluster operator."""

from __future__ import annotations

import yaml

from auditlake.clusters.webhook_kubeconfig import apiserver_flags, asset, render_kubeconfig
from auditlake.http_api import (
    BATCH_MAX_EVENTS,
    MAX_BODY_BYTES,
    TRUNCATE_MAX_BATCH_BYTES,
    TRUNCATE_MAX_EVENT_BYTES,
)
from tests.helpers import ROOT


def test_kubeconfig_points_at_the_webhook_with_the_token() -> None:
    text = render_kubeconfig("https://x.execute-api.eu-west-1.amazonaws.com/v1/audit", "alk_abc")
    config = yaml.safe_load(text)
    assert config["current-context"] == "auditlake"
    assert config["clusters"][0]["cluster"] == {"server": "https://x.execute-api.eu-west-1.amazonaws.com/v1/audit"}
    assert config["users"][0]["user"] == {"token": "alk_abc"}
    assert "insecure-skip-tls-verify" not in text


def test_the_token_appears_exactly_once() -> None:
    assert render_kubeconfig("https://hook.example/v1/audit", "alk_unique-token").count("alk_unique-token") == 1


def test_flags_keep_batches_under_the_lambda_limit() -> None:
    flags = dict(flag.removeprefix("--").split("=", 1) for flag in apiserver_flags())
    assert flags["audit-webhook-truncate-enabled"] == "true"
    # In batch mode a POST holds at most batch-max-size events of at most truncate-max-event-size
    # each (test_webhook_envelope checks it against the Lambda invocation envelope).
    assert int(flags["audit-webhook-batch-max-size"]) == BATCH_MAX_EVENTS
    assert int(flags["audit-webhook-truncate-max-event-size"]) == TRUNCATE_MAX_EVENT_BYTES
    assert BATCH_MAX_EVENTS * TRUNCATE_MAX_EVENT_BYTES < MAX_BODY_BYTES
    assert int(flags["audit-webhook-truncate-max-batch-size"]) == TRUNCATE_MAX_BATCH_BYTES <= MAX_BODY_BYTES
    assert flags["audit-webhook-mode"] == "batch" and "audit-policy-file" in flags


def test_infra_files_are_the_packaged_assets() -> None:
    for name in ("audit-policy.yaml", "audit-webhook-kubeconfig.yaml.tmpl"):
        assert (ROOT / "infra" / "kubernetes" / name).read_text() == asset(name)
