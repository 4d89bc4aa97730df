"""`auditlake poll` against the fake API server with a kubeconfig, and `auditlake cluster add` for
the deployed poller (--eks, --server/--ca-file/--token-secret) on moto."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from auditlake.cli import main
from auditlake.clusters.registry import DynamoRegistry, PollConfig
from auditlake.query.named import LocalEngine
from tests.fakes.kube import FakeKube
from tests.helpers import AwsStack, corpus_kube_events


def run(*args: str) -> Any:
    return CliRunner(mix_stderr=False).invoke(main, list(args), catch_exceptions=False)


def test_poll_once_lists_then_watches_from_the_lake_checkpoint(fake_kube: FakeKube, tmp_path: Path) -> None:
    for event in corpus_kube_events():
        fake_kube.add(event)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(fake_kube.kubeconfig("reader-token"))
    lake = tmp_path / "lake"
    args = ("poll", "--kubeconfig", str(kubeconfig), "--cluster", "kind", "--lake", str(lake), "--once")
    first = run(*args)
    assert first.exit_code == 0, first.stderr
    assert "listed 113" in first.stderr and "emitted 113" in first.stderr
    assert (lake / "state" / "poller" / "kind.json").exists()  # the checkpoint lives in the lake
    fake_kube.recur(corpus_kube_events()[0]["metadata"]["uid"])
    second = run(*args, "--timeout", "3")
    assert second.exit_code == 0, second.stderr
    assert "listed 0" in second.stderr and "emitted 1" in second.stderr
    assert run("compact", "--lake", str(lake)).exit_code == 0
    archived = LocalEngine(lake / "archive").run("SELECT count(*), count(DISTINCT uid) FROM events")
    assert archived.rows == [(114, 113)]


def test_poll_reports_a_refused_token_clearly(fake_kube: FakeKube, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(fake_kube.kubeconfig("wrong"))
    result = run("poll", "--kubeconfig", str(kubeconfig), "--cluster", "kind", "--lake", str(tmp_path / "l"))
    assert result.exit_code == 1 and "HTTP 401" in result.stderr
    assert not (tmp_path / "l" / "raw").exists()


def test_poll_refuses_an_unknown_context(fake_kube: FakeKube, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(fake_kube.kubeconfig("reader-token"))
    result = run("poll", "--kubeconfig", str(kubeconfig), "--context", "nope", "--cluster", "kind",
                 "--lake", str(tmp_path / "l"))  # fmt: skip
    assert result.exit_code == 1 and "nope" in result.stderr


def test_cluster_add_eks_registers_polling_without_a_webhook_token(aws: AwsStack) -> None:
    result = run("cluster", "add", "prod", "--table", aws.table, "--eks", "--eks-name", "prod-eu-west-1")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""  # no kubeconfig: EKS audit arrives through CloudWatch
    assert "create-access-entry --cluster-name prod-eu-west-1" in result.stderr
    registry = DynamoRegistry(aws.dynamodb, aws.table)
    assert registry.polled() == {"prod": PollConfig("eks", eks_name="prod-eu-west-1")}
    assert not [i for i in aws.dynamodb.scan(TableName=aws.table)["Items"] if i["pk"]["S"].startswith("TOKEN#")]


def test_cluster_add_server_polls_with_a_secret_and_keeps_no_credential(aws: AwsStack, tmp_path: Path,
                                                                         kube_ca: Any) -> None:  # fmt: skip
    ca = tmp_path / "ca.pem"
    ca.write_bytes(kube_ca.cert_pem.bytes())
    secret = "arn:aws:secretsmanager:us-east-1:123456789012:secret:auditlake/edge-AbCdEf"
    poll = ("--server", "https://10.0.0.1:6443", "--ca-file", str(ca), "--token-secret", secret)
    hook = ("--url", "https://hook.example/v1/audit")
    new = run("cluster", "add", "edge", "--table", aws.table, *hook, *poll)
    assert new.exit_code == 0, new.stderr
    assert "users:" in new.stdout  # a new self-managed cluster also gets its webhook kubeconfig
    config = DynamoRegistry(aws.dynamodb, aws.table).polled()["edge"]
    assert (config.auth, config.server, config.token_secret) == ("static", "https://10.0.0.1:6443", secret)
    assert config.ca_pem == kube_ca.cert_pem.bytes().decode()
    # A cluster that already sends audit events gains polling, and keeps its token.
    assert run("cluster", "add", "old", "--table", aws.table, *hook).exit_code == 0
    again = run("cluster", "add", "old", "--table", aws.table, *hook, *poll, "--token-ttl", "120")
    assert again.exit_code == 0 and "now polled" in again.stderr and again.stdout == ""
    assert DynamoRegistry(aws.dynamodb, aws.table).polled()["old"].token_ttl == 120


def test_cluster_add_polling_options_are_checked(aws: AwsStack, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not a certificate")
    table = ("--table", aws.table, "--url", "https://h/v1/audit")
    cases = [
        (("--eks", "--server", "https://x"), "--eks takes its endpoint"),
        (("--server", "http://x:6443", "--token-secret", "s", "--insecure-skip-tls-verify"), "https:// URL"),
        (("--server", "https://x:6443", "--token-secret", "s"), "CA bundle is required"),
        (("--server", "https://x:6443", "--ca-file", str(ca), "--token-secret", "s"), "not a PEM"),
    ]
    for args, message in cases:
        result = run("cluster", "add", "c", *table, *args)
        assert result.exit_code == 2 and message in result.stderr, (args, result.stderr)
    local = run("cluster", "add", "c", "--lake", str(tmp_path), "--eks")
    assert local.exit_code == 2 and "auditlake poll --kubeconfig" in local.stderr


def test_poll_follow_polls_until_interrupted(fake_kube: FakeKube, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from auditlake.events.poller import EventsPoller, PollStats

    calls: list[tuple[float, bool]] = []

    def poll(self: EventsPoller, budget: float, *, keep_watching: bool = True) -> PollStats:
        calls.append((budget, keep_watching))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return PollStats(self.cluster, api="v1", emitted=2, resource_version=str(len(calls)))

    monkeypatch.setattr(EventsPoller, "poll", poll)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(fake_kube.kubeconfig("reader-token"))
    result = run("poll", "--kubeconfig", str(kubeconfig), "--cluster", "kind", "--lake", str(tmp_path), "--follow")
    assert result.exit_code == 0 and "next poll resumes from the checkpoint" in result.stderr
    assert calls == [(300, True)] * 3 and result.stderr.count("emitted 2") == 2
