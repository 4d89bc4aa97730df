"""Credentials for the poller, per cluster: EKS IAM tokens, a token in Secrets Manager, or a kubeconfig.

No credential comes from the environment or reaches a log. TLS verification is on unless a
cluster's registry entry says ``insecure_skip_tls_verify`` (the poller then warns on every run).

An EKS token is a presigned STS GetCallerIdentity URL; the cluster's authenticator accepts it only
when it names an STS host of the cluster's partition. ``regional_sts`` builds the client that signs
it, on the regional endpoint botocore's resolver gives for the region (``sts.cn-north-1.amazonaws.com.cn``
in aws-cn, ``sts.us-gov-west-1.amazonaws.com`` in GovCloud), whatever the environment configures.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any

import botocore.session
from kubernetes.client.configuration import Configuration

from auditlake.clusters.registry import PollConfig
from auditlake.events.api import BEARER, Credentials, KubeError
from auditlake.jsonio import JSONError, loads

EKS_TOKEN_PREFIX = "k8s-aws-v1."  # noqa: S105 - the token format's prefix, not a secret
# An EKS token (a presigned STS GetCallerIdentity URL) is accepted for 15 minutes; make a new one
# well before, so a long watch never starts with a token about to expire.
EKS_TOKEN_REFRESH_SECONDS = 10 * 60
_PRESIGN_SECONDS = 60  # what aws-iam-authenticator and `aws eks get-token` sign for


def regional_sts(region: str | None = None, *, session: botocore.session.Session | None = None) -> Any:
    """An STS client for ``eks_token`` on the partition's regional endpoint of ``region`` (default: the
    session's: ``AWS_DEFAULT_REGION``, which Lambda sets to the function's region), credentials from
    ``session`` (default: a new one, reading the environment's chain as boto3 does). The two endpoint
    settings below are set on ``session``.

    Regional, not the legacy global ``sts.amazonaws.com`` that ``AWS_STS_REGIONAL_ENDPOINTS=legacy``
    would pick in us-east-1: the global host exists only in the aws partition. A configured endpoint
    (``AWS_ENDPOINT_URL``, a test's emulator) is ignored: the token must name a real STS host, and
    signing it is local, so nothing is sent there.
    """
    session = session or botocore.session.Session()
    session.set_config_variable("sts_regional_endpoints", "regional")
    session.set_config_variable("ignore_configured_endpoint_urls", True)
    return session.create_client("sts", region_name=region)


def eks_token(sts: Any, cluster_name: str) -> str:
    """``k8s-aws-v1.`` + base64url(presigned GetCallerIdentity URL that signs x-k8s-aws-id)."""

    def add_cluster_header(request: Any, **_kwargs: Any) -> None:
        request.headers["x-k8s-aws-id"] = cluster_name

    event = "before-sign.sts.GetCallerIdentity"
    sts.meta.events.register(event, add_cluster_header)
    try:
        url = sts.generate_presigned_url("get_caller_identity", Params={}, ExpiresIn=_PRESIGN_SECONDS, HttpMethod="GET")
    finally:
        sts.meta.events.unregister(event, add_cluster_header)
    return EKS_TOKEN_PREFIX + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


def _configuration(server: str, ca_pem: str | None, *, insecure: bool) -> Configuration:
    configuration = Configuration(host=server.rstrip("/"))
    configuration.verify_ssl = not insecure
    configuration.ca_cert_data = ca_pem or None
    return configuration


class EksCredentials:
    """Endpoint and CA from DescribeCluster (once per process), tokens minted from the function's role."""

    def __init__(
        self,
        eks: Any,
        sts: Any,
        cluster_name: str,
        *,
        insecure: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.eks, self.sts, self.cluster_name, self.insecure, self.clock = eks, sts, cluster_name, insecure, clock
        self._configuration: Configuration | None = None
        self._minted_at: float | None = None

    def configuration(self) -> Configuration:
        if self._configuration is None:
            try:
                cluster = self.eks.describe_cluster(name=self.cluster_name)["cluster"]
                endpoint = cluster["endpoint"]
                ca_pem = base64.b64decode(cluster["certificateAuthority"]["data"]).decode()
            except KeyError as exc:
                raise KubeError(
                    f"EKS cluster {self.cluster_name}: DescribeCluster has no {exc} (not ACTIVE?)"
                ) from None
            configuration = _configuration(endpoint, ca_pem, insecure=self.insecure)
            configuration.refresh_api_key_hook = self._refresh  # type: ignore[assignment]
            self._configuration = configuration
        return self._configuration

    def _refresh(self, configuration: Configuration) -> None:
        now = self.clock()
        if self._minted_at is None or now - self._minted_at >= EKS_TOKEN_REFRESH_SECONDS:
            configuration.api_key[BEARER] = "Bearer " + eks_token(self.sts, self.cluster_name)
            self._minted_at = now

    def invalidate(self) -> None:
        self._minted_at = None


class StaticCredentials:
    """A server URL and CA from the registry, a token from Secrets Manager re-read every ``token_ttl``
    seconds and at once after a 401 (the token was rotated)."""

    def __init__(
        self,
        read_secret: Callable[[bool], str],
        server: str,
        ca_pem: str | None,
        *,
        insecure: bool = False,
        token_ttl: int = 600,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.read_secret, self.token_ttl, self.clock = read_secret, token_ttl, clock
        self._configuration = _configuration(server, ca_pem, insecure=insecure)
        self._configuration.refresh_api_key_hook = self._refresh  # type: ignore[assignment]
        self._read_at: float | None = None
        self._force = False

    def configuration(self) -> Configuration:
        return self._configuration

    def _refresh(self, configuration: Configuration) -> None:
        now = self.clock()
        if self._force or self._read_at is None or now - self._read_at >= self.token_ttl:
            configuration.api_key[BEARER] = "Bearer " + secret_token(self.read_secret(self._force))
            self._read_at, self._force = now, False

    def invalidate(self) -> None:
        self._force = True


def secret_token(value: str) -> str:
    """The token in a secret: the whole SecretString, or its ``token`` field when it is JSON."""
    text = value.strip()
    if text.startswith("{"):
        try:
            doc = loads(text.encode())
        except JSONError:
            doc = None
        if not isinstance(doc, dict) or not isinstance(doc.get("token"), str):
            raise KubeError("the token secret is JSON without a string 'token' field")
        text = doc["token"].strip()
    if not text:
        raise KubeError("the token secret is empty")
    return text


class KubeconfigCredentials:
    """A kubeconfig file and context, as kubectl reads them (client certificates, exec plugins,
    tokens); read again after a 401."""

    def __init__(self, path: str, context: str | None = None) -> None:
        self.path, self.context = path, context
        self._configuration: Configuration | None = None

    def configuration(self) -> Configuration:
        if self._configuration is None:
            from kubernetes.config.config_exception import ConfigException
            from kubernetes.config.kube_config import load_kube_config

            configuration = Configuration()
            try:
                load_kube_config(
                    config_file=self.path, context=self.context, client_configuration=configuration,
                    persist_config=False,
                )  # fmt: skip
            except ConfigException as exc:
                raise KubeError(f"kubeconfig {self.path}: {exc}") from None
            self._configuration = configuration
        return self._configuration

    def invalidate(self) -> None:
        self._configuration = None


def credentials_for(config: PollConfig, *, eks: Any = None, sts: Any = None, secrets: Any = None) -> Credentials:
    """The credentials a registry entry asks for, from the clients the adapter built."""
    if config.auth == "eks":
        return EksCredentials(eks, sts, config.eks_name or "", insecure=config.insecure_skip_tls_verify)
    secret_id = config.token_secret or ""

    def read(force: bool) -> str:
        value = secrets.get(secret_id, max_age=config.token_ttl, force_fetch=force)
        return value if isinstance(value, str) else bytes(value).decode()

    return StaticCredentials(
        read, config.server or "", config.ca_pem, insecure=config.insecure_skip_tls_verify, token_ttl=config.token_ttl
    )
