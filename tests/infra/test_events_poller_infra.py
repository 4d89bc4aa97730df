"""The Events poller's infrastructure: schedule, role, trimmed kube layer, Kubernetes RBAC, EKS access."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.fakes.kube import FakeKube
from tests.helpers import ROOT, corpus_kube_events
from tests.infra.test_build import size
from tests.infra.test_template import _statements


def test_poller_runs_every_minute_with_the_kube_layer(transformed: dict[str, Any]) -> None:
    function = transformed["Resources"]["EventsPollerFunction"]["Properties"]
    layers = [layer["Ref"] for layer in function["Layers"]]  # versioned names: CoreLayer<hash>
    assert [name.rstrip("0123456789abcdef") for name in layers] == ["CoreLayer", "KubeLayer"]  # never pyarrow
    assert function["Timeout"] == 60 and function["Environment"]["Variables"]["AUDITLAKE_STATE_TABLE"]
    (rule,) = [r for n, r in transformed["Resources"].items()
               if r["Type"] == "AWS::Events::Rule" and n.startswith("EventsPollerFunction")]  # fmt: skip
    assert rule["Properties"]["ScheduleExpression"] == "rate(1 minute)"
    configs = [
        r["Properties"]
        for r in transformed["Resources"].values()
        if r["Type"] == "AWS::Lambda::EventInvokeConfig"
        and r["Properties"]["FunctionName"] == {"Ref": "EventsPollerFunction"}
    ]
    assert configs[0]["MaximumRetryAttempts"] == 0  # the next minute resumes from the checkpoint


def test_poller_role_is_scoped(transformed: dict[str, Any]) -> None:
    statements = {s["Sid"]: s for s in _statements(transformed["Resources"]["EventsPollerRole"])}
    assert set(statements) == {
        "OwnLogs", "Tracing", "WriteEventsLanding", "ReadPollingRegistry", "PollerLeases",
        "DescribeEksClusters", "ReadPollerTokens", "UseDataKey", "ReadBackQuarantine",
        "ReadCustomRules", "ListCustomRules", "PublishAlerts", "PageFindingsOnce",
    }  # fmt: skip
    # Create-only quarantine: a retried poll compares its entry with the stored one, and reads nothing else.
    assert statements["ReadBackQuarantine"]["Action"] == "s3:GetObject"
    assert statements["ReadBackQuarantine"]["Resource"] == [
        {"Fn::Sub": "${RawBucket.Arn}/quarantine/events/*"},
    ]
    # The Events and the findings the rules made of them land together.
    assert statements["WriteEventsLanding"]["Resource"] == [
        {"Fn::Sub": "${RawBucket.Arn}/raw/events/*"},
        {"Fn::Sub": "${RawBucket.Arn}/quarantine/events/*"},
        {"Fn::Sub": "${RawBucket.Arn}/raw/findings/*"},
    ]
    registry = statements["ReadPollingRegistry"]["Condition"]["ForAllValues:StringEquals"]["dynamodb:LeadingKeys"]
    leases = statements["PollerLeases"]["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
    assert (registry, leases) == (["POLLING", "SEEN"], ["POLLER#*"])
    assert not any("dynamodb:Scan" in str(s["Action"]) for s in statements.values())  # no whole-table reads
    assert statements["PollerLeases"]["Action"] == "dynamodb:UpdateItem"  # leases: no PutItem/DeleteItem
    # PutItem, GetItem, UpdateItem, DeleteItem only for the paging claims of findings (one page per object, window).
    paging = statements["PageFindingsOnce"]
    assert paging["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["FINDING#*"]}}
    assert statements["DescribeEksClusters"]["Action"] == "eks:DescribeCluster"
    assert statements["ReadPollerTokens"]["Action"] == "secretsmanager:GetSecretValue"
    assert statements["ReadPollerTokens"]["Resource"]["Fn::Sub"].endswith(":secret:${PollerSecretPrefix}*")
    # Fan-out: the poller may invoke itself and nothing else, by the ARN CloudFormation gives it. No
    # FunctionName: one built from the stack name can exceed Lambda's 64 characters.
    assert "FunctionName" not in transformed["Resources"]["EventsPollerFunction"]["Properties"]
    fan_out = transformed["Resources"]["EventsPollerFanOutPolicy"]
    assert fan_out["Type"] == "AWS::IAM::Policy" and fan_out["Properties"]["Roles"] == [{"Ref": "EventsPollerRole"}]
    assert fan_out["Properties"]["PolicyDocument"]["Statement"] == [
        {"Sid": "FanOut", "Effect": "Allow", "Action": "lambda:InvokeFunction",
         "Resource": {"Fn::GetAtt": ["EventsPollerFunction", "Arn"]}}
    ]  # fmt: skip
    # The handler invokes the ARN it was invoked by (the context's), so the name is never needed.
    app = (ROOT / "functions" / "events_poller" / "app.py").read_text()
    assert "function_arn=context.invoked_function_arn" in app


def test_poller_fan_out_is_bounded_by_a_parameter(transformed: dict[str, Any]) -> None:
    variables = transformed["Resources"]["EventsPollerFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["AUDITLAKE_POLLER_MAX_FANOUT"] == {"Ref": "PollerMaxFanOut"}
    parameter = transformed["Parameters"]["PollerMaxFanOut"]
    assert (parameter["Type"], parameter["Default"], parameter["MinValue"]) == ("Number", 10, 1)


def test_rbac_grants_reading_events_of_both_groups_and_nothing_else() -> None:
    docs = list(yaml.safe_load_all((ROOT / "infra" / "kubernetes" / "events-reader-rbac.yaml").read_text()))
    (role,) = [d for d in docs if d["kind"] == "ClusterRole"]
    assert role["rules"] == [{"apiGroups": ["", "events.k8s.io"], "resources": ["events"],
                              "verbs": ["get", "list", "watch"]}]  # fmt: skip
    (binding,) = [d for d in docs if d["kind"] == "ClusterRoleBinding"]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    subjects = {(s["kind"], s["name"]) for s in binding["subjects"]}
    assert subjects == {("Group", "auditlake:events-reader"), ("ServiceAccount", "auditlake-events-poller")}
    (account,) = [d for d in docs if d["kind"] == "ServiceAccount"]
    assert account["automountServiceAccountToken"] is False


def test_eks_access_entry_example_maps_the_role_to_that_group() -> None:
    path = ROOT / "infra" / "kubernetes" / "eks-access-entry.yaml"
    result = subprocess.run([str(Path(sys.executable).parent / "cfn-lint"), str(path)], capture_output=True, text=True,
                            check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout
    template = yaml.safe_load(path.read_text().replace("!Ref ", ""))
    entry = template["Resources"]["EventsPollerAccess"]["Properties"]
    assert entry["KubernetesGroups"] == ["auditlake:events-reader"] and entry["Type"] == "STANDARD"


POLL = """
import sys, kubernetes
assert kubernetes.__file__.startswith(sys.argv[1]), kubernetes.__file__
from auditlake.events.api import KubeApi
from auditlake.events.auth import StaticCredentials
from auditlake.landing import Landing
from auditlake.events.leases import LocalLeases
from auditlake.events.poller import EventsPoller
from auditlake.stores.local import LocalStore
url, ca, lake = sys.argv[2], open(sys.argv[3]).read(), sys.argv[4]
api = KubeApi(StaticCredentials(lambda force: "reader-token", url, ca))
stats = EventsPoller(api, Landing(LocalStore(lake), "events"), LocalLeases(lake + "/leases"), "c", holder="h").poll(
    20, keep_watching=False)
print(stats.emitted, stats.api)
"""


def test_the_trimmed_kube_layer_polls(built: Path, fake_kube: FakeKube, tmp_path: Path) -> None:
    layer = built / "KubeLayer" / "python"
    assert not (layer / "kubernetes" / "client" / "models").exists()
    assert not (layer / "kubernetes" / "aio").exists() and not (layer / "pydantic").exists()
    assert size(built / "KubeLayer") < 3 * 2**20  # the full client with its dependencies is ~120 MB
    for event in corpus_kube_events()[:10]:
        fake_kube.add(event)
    ca = tmp_path / "ca.pem"
    ca.write_bytes(fake_kube.ca.cert_pem.bytes())
    env = {"PYTHONPATH": f"{layer}:{ROOT / 'layers' / 'core'}", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", POLL, str(layer), fake_kube.url, str(ca), str(tmp_path / "lake")],
                         env=env, capture_output=True, text=True, check=False)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["10", "events.k8s.io/v1"]
