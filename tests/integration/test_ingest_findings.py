"""The command line's ingest paths evaluate the rules (``--rules DIR``, ``--no-builtin-rules``) with the
real engine: `auditlake serve` (real HTTP), `auditlake ingest` (audit, CloudWatch payloads and
--kind events); findings land with their batch, the summary counts them, and no stored byte holds
the planted key's value."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from auditlake.landing import decode_lines
from tests.helpers import eventlist_body, subscription_document

FIXTURES = Path(__file__).parents[1] / "fixtures" / "detect"
RULES = FIXTURES / "rules"
AUDIT_RULE = "6f0e2f55-1d4e-4c1a-9a57-0c1b8f1f0a01"
EVENTS_RULE = "6f0e2f55-1d4e-4c1a-9a57-0c1b8f1f0a02"
KEY = b"AKIAIOSFODNN7EXAMPLE"
ONLY_OURS = ("--rules", str(RULES), "--no-builtin-rules")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "auditlake", *args], check=False, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"{args[0]} exited {result.returncode}:\n{result.stderr[-4000:]}"
    return result


def planted() -> dict[str, Any]:
    event: dict[str, Any] = json.loads((FIXTURES / "configmap-aws-key.json").read_text())
    return event


def findings(lake: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for path in sorted((lake / "raw" / "findings").rglob("*.ndjson.zst"))
        for line in decode_lines(path.read_bytes())
    ]


def stored_bytes(lake: Path) -> bytes:
    out = []
    for path in sorted(p for p in lake.rglob("*") if p.is_file() and "inputs" not in p.parts):
        data = path.read_bytes()
        out.append(b"\n".join(decode_lines(data)) if path.name.endswith(".zst") else data)
    return b"\n".join(out)


@pytest.mark.parametrize("fmt", ["jsonl", "cloudwatch"])
def test_ingest_with_rules_stores_findings_and_never_the_key(tmp_path: Path, fmt: str) -> None:
    source = tmp_path / "in.json"
    if fmt == "jsonl":
        source.write_text(json.dumps(planted()) + "\n")
        args = ["--cluster", "prod"]
    else:
        source.write_text(json.dumps(subscription_document([json.dumps(planted())])))
        args = ["--format", "cloudwatch"]
    lake = tmp_path / "lake"
    result = cli("ingest", str(source), "--lake", str(lake), *args, *ONLY_OURS)
    assert "findings 1" in result.stderr
    (finding,) = findings(lake)
    assert (finding["rule_id"], finding["cluster"], finding["name"]) == (AUDIT_RULE, "prod", "billing-env")
    assert "aws_access_key_id" in finding["details"]
    assert KEY not in stored_bytes(lake)


def test_ingest_events_with_rules(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    result = cli("ingest", str(FIXTURES / "event-backoff.json"), "--kind", "events", "--cluster", "prod",
                 "--lake", str(lake), *ONLY_OURS)  # fmt: skip
    assert "findings 1" in result.stderr
    assert [f["rule_id"] for f in findings(lake)] == [EVENTS_RULE]


def test_a_rule_file_that_does_not_load_is_a_warning(tmp_path: Path) -> None:
    broken = tmp_path / "rules"
    broken.mkdir()
    (broken / "broken.yml").write_text("title: [unclosed\n")
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps(planted()) + "\n")
    result = cli("ingest", str(source), "--cluster", "prod", "--lake", str(tmp_path / "lake"),
                 "--rules", str(broken), "--no-builtin-rules")  # fmt: skip
    assert "rules warning:" in result.stderr and "broken.yml" in result.stderr
    assert "findings 0" in result.stderr


def test_serve_with_rules_stores_findings_before_it_answers(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    token_file = tmp_path / "token"
    token_file.write_text("alk_serve-findings-token\n")
    server = subprocess.Popen(
        [sys.executable, "-m", "auditlake", "serve", "--lake", str(lake), "--port", "0", "--cluster", "lab",
         "--token-file", str(token_file), *ONLY_OURS],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        line = server.stdout.readline().strip()
        assert line.startswith("listening on "), server.stderr.read() if server.stderr else line
        request = urllib.request.Request(
            line.removeprefix("listening on "),
            data=eventlist_body([planted()]),
            headers={"Authorization": "Bearer alk_serve-findings-token", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            body = json.loads(answer.read())
        assert answer.status == 200 and body["findings"] == 1
        # The 200 came after the findings were stored: they are there now, before the server stops.
        (finding,) = findings(lake)
        assert (finding["rule_id"], finding["cluster"]) == (AUDIT_RULE, "lab")
    finally:
        server.terminate()
        _, err = server.communicate(timeout=30)
    assert KEY not in stored_bytes(lake) and KEY.decode() not in err
