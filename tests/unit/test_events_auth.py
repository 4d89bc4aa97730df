"""Poller credentials: EKS tokens and their refresh, Secrets Manager tokens and their TTL, registry
entries that cannot work are refused when they are written."""

from __future__ import annotations

import base64
from urllib.parse import parse_qs, urlparse

import botocore.session
import pytest

from auditlake.clusters.registry import PollConfig, RegistryError
from auditlake.events.api import BEARER, KubeError
from auditlake.events.auth import (
    EKS_TOKEN_PREFIX,
    EksCredentials,
    StaticCredentials,
    eks_token,
    regional_sts,
    secret_token,
)
from tests.helpers import ManualClock


def sts(region: str = "eu-west-1") -> object:
    """The poller's STS client, with made-up credentials: presigning is local, nothing is sent."""
    session = botocore.session.Session()
    session.set_credentials("AKIAEXAMPLE", "secret")
    return regional_sts(region, session=session)


def presigned_url(token: str) -> str:
    assert token.startswith(EKS_TOKEN_PREFIX) and "=" not in token  # base64url without padding
    return base64.urlsafe_b64decode(token[len(EKS_TOKEN_PREFIX) :] + "==").decode()


def test_eks_token_is_a_presigned_get_caller_identity_bound_to_the_cluster() -> None:
    url = presigned_url(eks_token(sts(), "prod"))
    parsed = urlparse(url)
    query = parse_qs(parsed.query)
    assert parsed.scheme == "https" and parsed.netloc == "sts.eu-west-1.amazonaws.com" and parsed.path == "/"
    assert query["Action"] == ["GetCallerIdentity"] and query["Version"] == ["2011-06-15"]
    assert query["X-Amz-Expires"] == ["60"]
    assert "x-k8s-aws-id" in query["X-Amz-SignedHeaders"][0].split(";")


# The hosts aws-iam-authenticator accepts are the partition's STS hosts: a China or GovCloud cluster
# refuses a token naming sts.<region>.amazonaws.com of another partition (or the aws-only global host).
@pytest.mark.parametrize(
    ("region", "host"),
    [
        ("us-east-1", "sts.us-east-1.amazonaws.com"),
        ("eu-west-1", "sts.eu-west-1.amazonaws.com"),
        ("cn-north-1", "sts.cn-north-1.amazonaws.com.cn"),
        ("us-gov-west-1", "sts.us-gov-west-1.amazonaws.com"),
    ],
)
def test_eks_token_names_the_regional_sts_host_of_the_partition(
    region: str, host: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What a workstation or a test may configure must not leak into the token: the legacy global
    # endpoint, or an emulator's URL.
    monkeypatch.setenv("AWS_STS_REGIONAL_ENDPOINTS", "legacy")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    query = parse_qs(urlparse(url := presigned_url(eks_token(sts(region), "prod"))).query)
    assert urlparse(url).netloc == host
    # Signed for that region's STS (the credential scope), with the cluster header signed.
    assert query["X-Amz-Credential"][0].split("/")[2:4] == [region, "sts"]
    assert query["X-Amz-SignedHeaders"][0].split(";") == ["host", "x-k8s-aws-id"]


def test_eks_token_takes_the_region_of_the_environment_like_the_lambda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "cn-northwest-1")
    session = botocore.session.Session()
    session.set_credentials("AKIAEXAMPLE", "secret")
    url = presigned_url(eks_token(regional_sts(session=session), "prod"))
    assert urlparse(url).netloc == "sts.cn-northwest-1.amazonaws.com.cn"


class Eks:
    calls = 0

    def describe_cluster(self, name: str) -> dict[str, object]:
        self.calls += 1
        ca = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").decode()
        return {
            "cluster": {"endpoint": "https://ABC.gr7.eu-west-1.eks.amazonaws.com", "certificateAuthority": {"data": ca}}
        }


def test_eks_credentials_describe_once_and_mint_a_new_token_before_15_minutes(monkeypatch: pytest.MonkeyPatch) -> None:
    minted: list[str] = []

    def mint(client: object, name: str) -> str:
        minted.append(name)
        return f"k8s-aws-v1.token{len(minted)}"

    monkeypatch.setattr("auditlake.events.auth.eks_token", mint)
    clock, eks = ManualClock(), Eks()
    credentials = EksCredentials(eks, sts(), "prod", clock=clock)
    configuration = credentials.configuration()
    assert configuration.host == "https://ABC.gr7.eu-west-1.eks.amazonaws.com" and configuration.verify_ssl
    assert "BEGIN CERTIFICATE" in configuration.ca_cert_data
    assert configuration.get_api_key_with_prefix(BEARER) == "Bearer k8s-aws-v1.token1"
    clock.now = 9 * 60
    assert configuration.get_api_key_with_prefix(BEARER) == "Bearer k8s-aws-v1.token1"
    clock.now = 10 * 60  # tokens live 15 minutes: a new one well before
    assert configuration.get_api_key_with_prefix(BEARER) == "Bearer k8s-aws-v1.token2"
    credentials.invalidate()  # a 401: mint at once
    assert configuration.get_api_key_with_prefix(BEARER) == "Bearer k8s-aws-v1.token3"
    assert credentials.configuration() is configuration and eks.calls == 1 and minted == ["prod"] * 3


def test_a_cluster_that_is_not_active_yet_is_a_clear_error() -> None:
    class Creating:
        def describe_cluster(self, name: str) -> dict[str, object]:
            return {"cluster": {"status": "CREATING"}}

    with pytest.raises(KubeError, match="DescribeCluster has no 'endpoint'"):
        EksCredentials(Creating(), sts(), "prod").configuration()


def test_static_token_is_read_again_after_its_ttl_and_at_once_after_a_401() -> None:
    clock, reads = ManualClock(), []

    def read(force: bool) -> str:
        reads.append(force)
        return f"token-{len(reads)}"

    configuration = StaticCredentials(read, "https://k8s:6443", "PEM", token_ttl=600, clock=clock).configuration()
    assert configuration.get_api_key_with_prefix(BEARER) == "Bearer token-1"
    clock.now = 599
    assert configuration.get_api_key_with_prefix(BEARER) == "Bearer token-1"
    clock.now = 600
    assert configuration.get_api_key_with_prefix(BEARER) == "Bearer token-2"
    assert reads == [False, False]


def test_secret_token_forms() -> None:
    assert secret_token("  abc\n") == "abc"
    assert secret_token('{"token": "abc", "note": "rotated 2026-11"}') == "abc"
    for bad in ("", "{}", '{"token": 5}', "{broken"):
        with pytest.raises(KubeError):
            secret_token(bad)


def test_poll_config_refuses_what_cannot_work_and_round_trips() -> None:
    for kwargs, message in [
        ({"auth": "static", "server": "http://x", "token_secret": "s", "ca_pem": "P"}, "https://"),
        ({"auth": "static", "server": "https://x", "ca_pem": "P"}, "token secret"),
        ({"auth": "static", "server": "https://x", "token_secret": "s"}, "CA bundle"),
        ({"auth": "eks"}, "EKS name"),
        ({"auth": "kubeconfig"}, "eks or static"),
    ]:
        with pytest.raises(RegistryError, match=message):
            PollConfig(**kwargs)  # type: ignore[arg-type]
    config = PollConfig("static", server="https://x", token_secret="arn", insecure_skip_tls_verify=True)
    assert PollConfig.from_json(config.to_json()) == config
    with pytest.raises(RegistryError, match="unreadable"):
        PollConfig.from_json('{"auth": "eks", "eks_name": "a", "surprise": 1}')
