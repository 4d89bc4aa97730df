"""What `auditlake cluster add` hands to the cluster operator."""

from __future__ import annotations

import yaml

from auditlake.kubeconfig import apiserver_flags, asset, render_kubeconfig
from auditlake.webhook import MAX_BODY_BYTES, TRUNCATE_MAX_BATCH_BYTES
from tests.conftest import ROOT


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
    assert int(flags["audit-webhook-truncate-max-batch-size"]) == TRUNCATE_MAX_BATCH_BYTES
    assert TRUNCATE_MAX_BATCH_BYTES < MAX_BODY_BYTES * 0.75  # headroom for the Lambda event envelope
    assert flags["audit-webhook-batch-max-size"] == "400" and "audit-policy-file" in flags


def test_infra_files_are_the_packaged_assets() -> None:
    for name in ("audit-policy.yaml", "audit-webhook-kubeconfig.yaml.tmpl"):
        assert (ROOT / "infra" / "kubernetes" / name).read_text() == asset(name)
