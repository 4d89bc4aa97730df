"""`auditlake cluster add --kind-config/--kubeadm-patch`: what kind, kubeadm and the kube-apiserver static
pod are given, checked against their schemas (kind's v1alpha4 and kubeadm's v1beta3/v1beta4 Go types,
encoded in tests/fixtures/kind/ with their source commits), and the files the command writes."""

from __future__ import annotations

import base64
import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from click.testing import CliRunner
from cryptography import x509
from kubernetes.client import models

from auditlake.cli import main
from auditlake.clusters import docker_network
from auditlake.clusters.control_plane_config import (
    KUBECONFIG_VOLUME,
    POLICY_VOLUME,
    ApiServerFiles,
    KubeadmVersion,
    kind_config,
    kubeadm_cluster_configuration,
    static_pod_edit,
    static_pod_text,
)
from auditlake.clusters.docker_network import DockerUnavailable, WebhookHost, find_webhook_host, listen_address
from auditlake.clusters.serve_tls import covers, issue_serve_cert
from auditlake.clusters.webhook_kubeconfig import (
    DEFAULT_KUBECONFIG_PATH,
    DEFAULT_POLICY_PATH,
    apiserver_args,
    asset,
    render_kubeconfig,
)
from tests.helpers import ROOT

FIXTURES = ROOT / "tests" / "fixtures" / "kind"
KIND_SCHEMA = json.loads((FIXTURES / "kind-v1alpha4.schema.json").read_text())
KUBEADM_SCHEMAS = json.loads((FIXTURES / "kubeadm-clusterconfiguration.schema.json").read_text())


def kubeadm_schema(name: str) -> dict[str, Any]:
    return {**KUBEADM_SCHEMAS, "$ref": f"#/$defs/{name}"}


FILES = ApiServerFiles(
    policy_host=Path("/home/me/lake/clusters/kind/audit-policy.yaml"),
    kubeconfig_host=Path("/home/me/lake/clusters/kind/webhook.kubeconfig"),
    policy_path=DEFAULT_POLICY_PATH,
    kubeconfig_path=DEFAULT_KUBECONFIG_PATH,
    batch_max_wait="5s",
)
EXPECTED_ARGS = {
    "audit-policy-file": "/etc/kubernetes/audit/audit-policy.yaml",
    "audit-webhook-config-file": "/etc/kubernetes/audit/auditlake-webhook.kubeconfig",
    "audit-webhook-mode": "batch",
    "audit-webhook-batch-max-size": "45",
    "audit-webhook-batch-max-wait": "5s",
    "audit-webhook-truncate-enabled": "true",
    "audit-webhook-truncate-max-event-size": "65536",
    "audit-webhook-truncate-max-batch-size": "2949120",
}
EXPECTED_VOLUMES = [
    {"name": POLICY_VOLUME, "hostPath": DEFAULT_POLICY_PATH, "mountPath": DEFAULT_POLICY_PATH,
     "readOnly": True, "pathType": "File"},
    {"name": KUBECONFIG_VOLUME, "hostPath": DEFAULT_KUBECONFIG_PATH, "mountPath": DEFAULT_KUBECONFIG_PATH,
     "readOnly": True, "pathType": "File"},
]  # fmt: skip


def test_the_flags_are_exactly_these() -> None:
    """Pinned, so a change to a limit or a path is seen here and in the recipe (the batch limits are
    checked against the webhook's body limit in test_webhook_kubeconfig)."""
    assert FILES.args() == EXPECTED_ARGS
    assert "audit-webhook-batch-max-wait" not in apiserver_args()  # the stack's flags keep kube-apiserver's 30s


def test_kind_config_is_a_valid_v1alpha4_cluster_with_the_mounts_and_the_patch() -> None:
    config = yaml.safe_load(yaml.safe_dump(kind_config("kind", FILES)))
    jsonschema.validate(config, KIND_SCHEMA)
    assert config["name"] == "kind"  # the kubeconfig context kind writes: kind-kind
    [node] = config["nodes"]
    assert node["role"] == "control-plane"
    assert node["extraMounts"] == [
        {"hostPath": "/home/me/lake/clusters/kind/audit-policy.yaml",
         "containerPath": "/etc/kubernetes/audit/audit-policy.yaml", "readOnly": True},
        {"hostPath": "/home/me/lake/clusters/kind/webhook.kubeconfig",
         "containerPath": "/etc/kubernetes/audit/auditlake-webhook.kubeconfig", "readOnly": True},
    ]  # fmt: skip
    [patch_text] = config["kubeadmConfigPatches"]
    patch = yaml.safe_load(patch_text)
    # No apiVersion: the patch matches kind's v1beta3 (Kubernetes < 1.36) and v1beta4 documents alike,
    # and kind converts the map-form extraArgs for v1beta4 (control_plane_config's docstring).
    assert "apiVersion" not in patch
    jsonschema.validate(patch, kubeadm_schema("v1beta3patch"))
    assert patch["apiServer"]["extraArgs"] == EXPECTED_ARGS
    assert patch["apiServer"]["extraVolumes"] == EXPECTED_VOLUMES
    # The chain: a file on this machine -> the node container (extraMount) -> the static pod (hostPath
    # volume) -> the flag that names it.
    for mount, volume, flag in zip(node["extraMounts"], patch["apiServer"]["extraVolumes"],
                                   ("audit-policy-file", "audit-webhook-config-file"), strict=True):  # fmt: skip
        assert mount["containerPath"] == volume["hostPath"]
        assert volume["mountPath"] == patch["apiServer"]["extraArgs"][flag]


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch, as kind applies a kubeadmConfigPatches entry to its generated config."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


def test_the_kind_patch_merged_into_kinds_own_v1beta3_config_keeps_kinds_settings() -> None:
    """Applied as kind applies it, the patch adds the audit flags beside kind's own (runtime-config), keeps
    its certSANs, and the result is still a valid v1beta3 ClusterConfiguration."""
    generated = yaml.safe_load((FIXTURES / "kind-kubeadm-v1beta3.yaml").read_text())
    patch = yaml.safe_load(kind_config("kind", FILES)["kubeadmConfigPatches"][0])
    assert patch["kind"] == generated["kind"]  # kind matches a patch to a document by kind (and apiVersion, absent)
    merged = merge_patch(generated, patch)
    jsonschema.validate({k: v for k, v in merged.items() if k != "metadata"}, kubeadm_schema("v1beta3"))
    assert merged["apiServer"]["extraArgs"] == {"runtime-config": "", **EXPECTED_ARGS}
    assert merged["apiServer"]["certSANs"] == ["localhost", "127.0.0.1"]
    assert merged["apiServer"]["extraVolumes"] == EXPECTED_VOLUMES
    assert {k: v for k, v in merged.items() if k != "apiServer"} == {
        k: v for k, v in generated.items() if k != "apiServer"
    }


def test_the_schemas_refuse_what_kind_and_kubeadm_refuse() -> None:
    """The fixtures are strict: a field kind does not know, a list-form extraArgs in a v1beta3 patch, and
    a map-form one in v1beta4 all fail (so the tests above can)."""
    config = kind_config("kind", FILES)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**config, "nodes": [{"role": "control-plane", "extraMount": []}]}, KIND_SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**config, "nodes": [{"role": "master"}]}, KIND_SCHEMA)
    v1beta4 = kubeadm_cluster_configuration(FILES, "v1beta4")
    v1beta3 = kubeadm_cluster_configuration(FILES, "v1beta3")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"kind": "ClusterConfiguration", "apiServer": v1beta4["apiServer"]},
                            kubeadm_schema("v1beta3patch"))  # fmt: skip
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**v1beta4, "apiServer": v1beta3["apiServer"]}, kubeadm_schema("v1beta4"))


@pytest.mark.parametrize("version", ["v1beta4", "v1beta3"])
def test_kubeadm_cluster_configuration_is_valid_for_its_version(version: KubeadmVersion) -> None:
    document = yaml.safe_load(yaml.safe_dump(kubeadm_cluster_configuration(FILES, version)))
    jsonschema.validate(document, kubeadm_schema(version))
    assert document["apiVersion"] == f"kubeadm.k8s.io/{version}"
    extra_args = document["apiServer"]["extraArgs"]
    if version == "v1beta4":  # a list of Arg, in order
        assert extra_args == [{"name": k, "value": v} for k, v in EXPECTED_ARGS.items()]
    else:
        assert extra_args == EXPECTED_ARGS
    assert document["apiServer"]["extraVolumes"] == EXPECTED_VOLUMES


def test_static_pod_edit_uses_the_pod_fields_of_the_official_client() -> None:
    """The lines to paste into kube-apiserver.yaml name only fields of core/v1 Container, VolumeMount,
    Volume and HostPathVolumeSource (the official client's generated models), with the paths above."""
    edit = static_pod_edit(FILES)
    assert set(edit) <= set(models.V1Container.attribute_map.values()) | {"volumes"}
    assert "volumes" in models.V1PodSpec.attribute_map.values()
    assert edit["command"] == [f"--{k}={v}" for k, v in EXPECTED_ARGS.items()]
    for mount in edit["volumeMounts"]:
        assert set(mount) <= set(models.V1VolumeMount.attribute_map.values())
    for volume in edit["volumes"]:
        assert set(volume) <= set(models.V1Volume.attribute_map.values())
        assert set(volume["hostPath"]) <= set(models.V1HostPathVolumeSource.attribute_map.values())
    assert [(m["name"], m["mountPath"]) for m in edit["volumeMounts"]] == [
        (v["name"], v["hostPath"]["path"]) for v in edit["volumes"]
    ]
    text = static_pod_text(FILES)
    assert "    - --audit-webhook-config-file=/etc/kubernetes/audit/auditlake-webhook.kubeconfig" in text
    assert (
        "  - name: auditlake-audit-policy\n    hostPath:\n      path: /etc/kubernetes/audit/audit-policy.yaml" in text
    )


def test_the_kubeconfig_trusts_the_serve_ca_and_loads_in_the_official_client(tmp_path: Path) -> None:
    from kubernetes import config as kube_config

    issued = issue_serve_cert("172.18.0.1")
    text = render_kubeconfig("https://172.18.0.1:8443/v1/audit", "alk_secret", issued.ca_pem)
    document = yaml.safe_load(text)
    cluster = document["clusters"][0]["cluster"]
    assert base64.b64decode(cluster["certificate-authority-data"]) == issued.ca_pem
    assert "insecure-skip-tls-verify" not in text and text.count("alk_secret") == 1
    path = tmp_path / "webhook.kubeconfig"
    path.write_text(text)
    client = kube_config.new_client_from_config(config_file=str(path))
    assert client.configuration.host == "https://172.18.0.1:8443/v1/audit"
    assert client.configuration.verify_ssl is True
    assert Path(client.configuration.ssl_ca_cert).read_bytes() == issued.ca_pem
    assert client.configuration.get_api_key_with_prefix("BearerToken", alias="authorization") == "Bearer alk_secret"
    # Without a CA, the template is untouched (the stack's public certificate).
    assert render_kubeconfig("https://x/v1/audit", "t") == render_kubeconfig("https://x/v1/audit", "t", None)


def test_serve_cert_is_signed_by_a_ca_that_signs_nothing_else() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    issued = issue_serve_cert("172.18.0.1", now=now)
    ca = x509.load_pem_x509_certificate(issued.ca_pem)
    cert = x509.load_pem_x509_certificate(issued.cert_pem)
    cert.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["172.18.0.1", "127.0.0.1"]
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    assert b"PRIVATE KEY" in issued.key_pem and b"PRIVATE KEY" not in issued.ca_pem + issued.cert_pem
    assert not hasattr(issued, "ca_key_pem")  # the CA's key is gone once the certificate is signed
    assert covers(issued.cert_pem, "172.18.0.1", now=now) and covers(issued.cert_pem, "127.0.0.1", now=now)
    assert not covers(issued.cert_pem, "172.17.0.1", now=now)
    assert not covers(issued.cert_pem, "172.18.0.1", now=now + timedelta(days=340))  # renewed before its end
    named = x509.load_pem_x509_certificate(issue_serve_cert("host.docker.internal").cert_pem)
    dns = named.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert dns.get_values_for_type(x509.DNSName) == ["host.docker.internal", "localhost"]


class FakeDocker:
    def __init__(self, system: str, networks: dict[str, str]) -> None:
        self.system, self.networks = system, networks
        self.calls: list[list[str]] = []

    def __call__(self, args: list[str]) -> str:
        self.calls.append(args)
        if args[0] == "info":
            return self.system + "\n"
        name = args[2]
        if name not in self.networks:
            raise DockerUnavailable(f"Error response from daemon: network {name} not found")
        return self.networks[name]


def test_webhook_host_is_the_kind_gateway_then_the_bridge_then_the_docker_desktop_name() -> None:
    gateways = {"kind": "fc00:f853:ccd:e793::1 172.18.0.1 \n", "bridge": "172.17.0.1 \n"}
    linux = FakeDocker("Ubuntu 24.04.1 LTS|name=seccomp,profile=builtin name=cgroupns ", gateways)
    assert find_webhook_host(linux, "linux", {}) == WebhookHost("172.18.0.1", "172.18.0.1",
                                                            "the gateway of the docker network 'kind'")  # fmt: skip
    assert linux.calls == [["info", "--format", docker_network.INFO],
                           ["network", "inspect", "kind", "--format", docker_network.GATEWAYS]]  # fmt: skip
    first_cluster = FakeDocker("Debian GNU/Linux 13 (trixie)", {"bridge": "172.17.0.1 \n"})
    host = find_webhook_host(first_cluster, "linux", {})
    assert (host.host, host.listen) == ("172.17.0.1", "172.17.0.1") and "no docker network 'kind'" in host.why
    ipv6_only = FakeDocker("Fedora", {"kind": "fc00::1 \n", "bridge": "172.17.0.1 \n"})
    assert find_webhook_host(ipv6_only, "linux", {}).host == "172.17.0.1"
    # kind's own variable for another network: that network's gateway, as kind puts the nodes there.
    custom = FakeDocker("Ubuntu", {"kind": "172.18.0.1", "lab-net": "10.89.0.1", "bridge": "172.17.0.1"})
    host = find_webhook_host(custom, "linux", {"KIND_EXPERIMENTAL_DOCKER_NETWORK": "lab-net"})
    assert host.host == "10.89.0.1" and "'lab-net'" in host.why
    for desktop in (find_webhook_host(FakeDocker("Docker Desktop", {}), "linux", {}),
                    find_webhook_host(FakeDocker("OrbStack", {}), "darwin", {})):  # fmt: skip
        assert (desktop.host, desktop.listen) == ("host.docker.internal", "0.0.0.0")
    with pytest.raises(DockerUnavailable):
        find_webhook_host(FakeDocker("Ubuntu", {}), "linux", {})
    rootless = FakeDocker(
        "Ubuntu 24.04|name=seccomp,profile=builtin name=rootless name=cgroupns ", {"kind": "172.18.0.1"}
    )
    with pytest.raises(DockerUnavailable, match="rootless"):
        find_webhook_host(rootless, "linux", {})

    def no_daemon(_args: list[str]) -> str:
        raise DockerUnavailable("Cannot connect to the Docker daemon at unix:///var/run/docker.sock")

    with pytest.raises(DockerUnavailable, match="Cannot connect"):
        find_webhook_host(no_daemon, "linux", {})
    assert listen_address("192.168.1.20") == "192.168.1.20" and listen_address("fd00::2") == "fd00::2"
    assert listen_address("auditlake.lan") == "0.0.0.0"
    for host in ("172.18.0.1", "fd00:10::1", "host.docker.internal", "build-01"):
        assert docker_network.valid_host(host), host
    for host in ("", "https://h", "h:8443", "h/v1", "-h", "a b", "[fd00::1]", "a..b"):
        assert not docker_network.valid_host(host), host


# ----------------------------------------------------------------------------- the command


def run(*args: str) -> Any:
    return CliRunner(mix_stderr=False).invoke(main, list(args), catch_exceptions=False)


def test_cluster_add_kind_config_writes_everything_kind_and_serve_need(tmp_path: Path) -> None:
    lake, out = tmp_path / "lake", tmp_path / "kind.yaml"
    result = run("cluster", "add", "kind", "--lake", str(lake), "--kind-config", str(out),
                 "--webhook-host", "172.18.0.1")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    base = (lake / "clusters" / "kind").resolve()
    # stdout: the serve command alone, shell-quoted (`... > serve.sh`); the kubeconfig holds the token:
    # written 0600, never printed.
    serve = (
        f"auditlake serve --lake {lake} --cluster kind --token-file {lake / 'tokens' / 'kind.token'} "
        f"--host 172.18.0.1 --port 8443 --tls-cert {base / 'serve.crt'} --tls-key {base / 'serve.key'}"
    )
    assert result.stdout == serve + "\n"
    token = (lake / "tokens" / "kind.token").read_text().strip()
    assert token not in result.stderr
    for name, mode in (("webhook.kubeconfig", 0o600), ("serve.key", 0o600), ("audit-policy.yaml", None)):
        assert (base / name).exists()
        if mode is not None:
            assert stat.S_IMODE((base / name).stat().st_mode) == mode, name
    assert (base / "audit-policy.yaml").read_text() == asset("audit-policy.yaml")
    config = yaml.safe_load(out.read_text())
    jsonschema.validate(config, KIND_SCHEMA)
    assert [m["hostPath"] for m in config["nodes"][0]["extraMounts"]] == [
        str(base / "audit-policy.yaml"), str(base / "webhook.kubeconfig")]  # fmt: skip
    assert all(Path(m["hostPath"]).is_absolute() for m in config["nodes"][0]["extraMounts"])
    kubeconfig = yaml.safe_load((base / "webhook.kubeconfig").read_text())
    assert kubeconfig["clusters"][0]["cluster"]["server"] == "https://172.18.0.1:8443/v1/audit"
    ca = base64.b64decode(kubeconfig["clusters"][0]["cluster"]["certificate-authority-data"])
    assert ca == (base / "ca.crt").read_bytes()
    assert kubeconfig["users"][0]["user"]["token"] == token
    x509.load_pem_x509_certificate((base / "serve.crt").read_bytes()).verify_directly_issued_by(
        x509.load_pem_x509_certificate(ca)
    )
    said = " ".join(result.stderr.split())
    assert serve in said
    assert f"kind create cluster --config {out}" in said
    assert f"auditlake poll --lake {lake} --cluster kind --context kind-kind" in said

    # Again (e.g. to add a kubeadm patch, or after `kind delete cluster`): the token and the certificate stay.
    cert = (base / "serve.crt").read_bytes()
    again = run("cluster", "add", "kind", "--lake", str(lake), "--kind-config", str(out),
                "--webhook-host", "172.18.0.1", "--kubeadm-patch", str(tmp_path / "kubeadm.yaml"))  # fmt: skip
    assert again.exit_code == 0, again.stderr
    assert (lake / "tokens" / "kind.token").read_text().strip() == token
    assert (base / "serve.crt").read_bytes() == cert and "kept" in again.stderr
    kubeadm = yaml.safe_load((tmp_path / "kubeadm.yaml").read_text())
    jsonschema.validate(kubeadm, kubeadm_schema("v1beta4"))
    assert "spec.containers[0].command" in again.stderr and "--audit-policy-file=" in again.stderr
    # A new host: a new certificate (the old one does not name it).
    moved = run("cluster", "add", "kind", "--lake", str(lake), "--kind-config", str(out),
                "--webhook-host", "host.docker.internal", "--webhook-port", "9443")  # fmt: skip
    assert moved.exit_code == 0, moved.stderr
    assert (base / "serve.crt").read_bytes() != cert and "--host 0.0.0.0 --port 9443" in " ".join(moved.stderr.split())
    assert "anyone who reaches this machine can connect" in moved.stderr


def test_cluster_add_asks_docker_for_the_kind_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from auditlake.cli import clusters

    gateway = WebhookHost("172.18.0.1", "172.18.0.1", "the gateway of the docker network 'kind'")
    monkeypatch.setattr(clusters, "find_webhook_host", lambda: gateway)
    result = run("cluster", "add", "kind", "--lake", str(tmp_path / "l"), "--kind-config", str(tmp_path / "k.yaml"))
    assert (
        result.exit_code == 0 and "webhook host 172.18.0.1: the gateway of the docker network 'kind'" in result.stderr
    )

    def no_docker() -> WebhookHost:
        raise DockerUnavailable("docker is not installed (no `docker` on PATH)")

    monkeypatch.setattr(clusters, "find_webhook_host", no_docker)
    result = run("cluster", "add", "k2", "--lake", str(tmp_path / "l"), "--kind-config", str(tmp_path / "k2.yaml"))
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "error: cannot ask Docker where a kind node reaches this machine: docker is not installed "
        "(no `docker` on PATH) (start Docker, or pass --webhook-host ADDRESS)"
    )
    assert not (tmp_path / "k2.yaml").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--kind-config", "k.yaml", "--table", "t"), "give --lake"),
        (("--kubeadm-patch", "p.yaml", "--lake", "l"), "--kubeadm-patch needs --webhook-host"),
        (("--kind-config", "k.yaml", "--lake", "l", "--url", "https://x/v1/audit"), "--url/--kubeconfig-out do not go"),
        (("--lake", "l", "--webhook-host", "10.0.0.1"), "go with --kind-config or --kubeadm-patch"),
        (("--kind-config", "k.yaml", "--lake", "l", "--webhook-port", "0"), "--webhook-port"),
        (("--kind-config", "k.yaml", "--lake", "l", "--webhook-host", "https://10.0.0.1"), "not an IP address"),
        (("--kind-config", "k.yaml", "--lake", "l", "--webhook-host", "10.0.0.1:8443"), "not an IP address"),
        (("--kind-config", "k.yaml", "--lake", "l", "--webhook-host", "[fd00::1]"), "not an IP address"),
    ],
)
def test_cluster_add_refuses_what_does_not_go_together(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       args: tuple[str, ...], message: str) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    result = run("cluster", "add", "c1", *args)
    assert result.exit_code == 2 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "l" / "tokens").exists()


def test_cluster_help_has_examples_and_describes_every_option() -> None:
    from auditlake.cli.clusters import cluster

    for command in cluster.commands.values():
        for param in command.params:
            if param.param_type_name == "option":
                assert getattr(param, "help", None), f"{command.name} {param.name}"
        assert "Example" in (command.help or ""), command.name
    assert "Examples:" in (cluster.help or "")
    text = run("cluster", "add", "--help").stdout
    assert "auditlake cluster add kind --lake lake --kind-config kind.yaml" in text
    assert "kind create cluster --config kind.yaml" in text and "--kubeadm-patch kubeadm-audit.yaml" in text


@pytest.mark.parametrize("wait", ["5s", "500ms", "1m30s", "2.5s"])
def test_batch_max_wait_takes_go_durations(tmp_path: Path, wait: str) -> None:
    result = run("cluster", "add", "kind", "--lake", str(tmp_path / "l"), "--kind-config", str(tmp_path / "k.yaml"),
                 "--webhook-host", "10.0.0.1", "--batch-max-wait", wait)  # fmt: skip
    assert result.exit_code == 0, result.stderr
    patch = yaml.safe_load(yaml.safe_load((tmp_path / "k.yaml").read_text())["kubeadmConfigPatches"][0])
    assert patch["apiServer"]["extraArgs"]["audit-webhook-batch-max-wait"] == wait


@pytest.mark.parametrize("wait", ["5", "5 s", "soon", ""])
def test_batch_max_wait_refuses_what_kube_apiserver_would(tmp_path: Path, wait: str) -> None:
    result = run("cluster", "add", "kind", "--lake", str(tmp_path / "l"), "--kind-config", str(tmp_path / "k.yaml"),
                 "--webhook-host", "10.0.0.1", "--batch-max-wait", wait)  # fmt: skip
    assert result.exit_code == 2 and "not a duration" in result.stderr
    assert not (tmp_path / "k.yaml").exists()


def test_run_docker_says_why_docker_could_not_answer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DockerUnavailable, match="docker is not installed"):
        docker_network.run_docker(["info"])
    fake = tmp_path / "docker"
    fake.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = info ]; then echo "Ubuntu 24.04 LTS"; exit 0; fi\n'
        'if [ "$3" = kind ]; then echo "Error response from daemon: network kind not found" >&2; exit 1; fi\n'
        'echo "172.17.0.1 "\n'
    )
    fake.chmod(0o755)
    with pytest.raises(DockerUnavailable, match=r"^Error response from daemon: network kind not found$"):
        docker_network.run_docker(["network", "inspect", "kind"])
    host = find_webhook_host(platform="linux", environ={})  # the real runner, through the fake docker on PATH
    assert (host.host, host.listen) == ("172.17.0.1", "172.17.0.1")


def test_an_ipv6_webhook_host_is_bracketed_in_the_url_and_named_in_the_certificate(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    result = run("cluster", "add", "v6", "--lake", str(lake), "--kind-config", str(tmp_path / "k.yaml"),
                 "--webhook-host", "fd00:10::1")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    base = lake / "clusters" / "v6"
    kubeconfig = yaml.safe_load((base / "webhook.kubeconfig").read_text())
    assert kubeconfig["clusters"][0]["cluster"]["server"] == "https://[fd00:10::1]:8443/v1/audit"
    assert covers((base / "serve.crt").read_bytes(), "fd00:10::1") and "--host fd00:10::1" in result.stdout
    assert "https://[fd00:10::1]:8443/v1/audit" in result.stderr  # printed as text, not taken for markup
