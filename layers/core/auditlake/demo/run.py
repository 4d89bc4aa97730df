"""``make demo``: the whole pipeline on a local lake, through real processes and real HTTP.

synth -> ``auditlake serve`` (subprocess, HTTP on a free port) <- ``auditlake replay`` (subprocess)
-> raw landing; the synthetic Kubernetes Events are ingested; ``auditlake compact`` builds the
Parquet archive; the named queries answer the planted incidents, and the detection findings (the
built-in rules, evaluated by ``serve`` and ``ingest`` as events arrive) are shown by rule. Every
stored byte (raw, quarantine, findings, archive) is scanned for the secret values the traffic
carried: the Secret's and the AWS key planted in a ConfigMap, which a rule finds but which must
never be stored.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from auditlake.clusters.webhook_kubeconfig import asset
from auditlake.demo.synth import INCIDENT_SECRET, PLANTED_AWS_KEY, PLANTED_SECRET_VALUE
from auditlake.landing import decode_lines
from auditlake.local_lake import LocalLake
from auditlake.model import SIGMA_LEVEL_RANK

CLUSTER = "demo"


def _run(console: Console, args: list[str], *, quiet: bool = False) -> None:
    """``auditlake ARGS`` in a process of its own, shown as a command line unless ``quiet``."""
    if not quiet:
        console.print(f"[bold]$ auditlake {' '.join(args)}[/bold]", highlight=False)
    subprocess.run([sys.executable, "-m", "auditlake", *args], check=True)  # noqa: S603 - our own CLI


def run_demo(lake: Path, *, minutes: float, rate: float, seed: int) -> None:
    console = Console(soft_wrap=not sys.stdout.isatty())  # piped: a command it prints stays one line
    local = LocalLake(lake)
    if lake.exists():
        if not local.demo_marker_file.exists() and any(lake.iterdir()):
            raise SystemExit(f"{lake} exists and is not a demo lake; choose another --lake")
        shutil.rmtree(lake)
    local.create()  # marked a lake before serve starts, whatever happens to it
    local.demo_marker_file.write_text("created by auditlake demo; deleted by the next run\n")
    inputs = local.inputs_dir
    inputs.mkdir()
    synth_file = inputs / "synth.jsonl"
    events_file = inputs / "events.jsonl"
    policy_file = inputs / "pipeline-policy.yaml"
    policy_file.write_text(asset("audit-policy.yaml"))

    _run(
        console,
        [
            "synth",
            "--minutes",
            f"{minutes:g}",
            "--rate",
            f"{rate:g}",
            "--seed",
            str(seed),
            "--out",
            str(synth_file),
            "--events-out",
            str(events_file),
        ],
    )
    _run(
        console,
        [
            "cluster",
            "add",
            CLUSTER,
            "--lake",
            str(lake),
            "--kubeconfig-out",
            str(inputs / "webhook.kubeconfig"),
        ],
    )
    token_file = local.token_file(CLUSTER)
    serve_args = [
        "serve",
        "--lake",
        str(lake),
        "--port",
        "0",
        "--cluster",
        CLUSTER,
        "--token-file",
        str(token_file),
        "--policy",
        str(policy_file),
    ]
    serve_log = inputs / "serve.log"
    console.print(f"[bold]$ auditlake {' '.join(serve_args)} 2>{serve_log} &[/bold]", highlight=False)
    with serve_log.open("w") as log:
        server = subprocess.Popen(  # noqa: S603 - our own CLI
            [sys.executable, "-m", "auditlake", *serve_args],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        try:
            assert server.stdout is not None
            ready = server.stdout.readline().strip()
            if not ready.startswith("listening on "):
                raise SystemExit(f"serve did not start: {ready!r} (see {serve_log})")
            url = ready.removeprefix("listening on ")
            console.print(f"  {ready}")
            _run(console, ["replay", str(synth_file), "--url", url, "--token-file", str(token_file)])
        finally:
            server.terminate()
            server.wait(timeout=60)
    # What serve printed as the burst happened: one line per page (every reply is in serve.log).
    pages = [line for line in serve_log.read_text().splitlines() if line.startswith("ALERT ")]
    for line in pages:
        console.print(f"  [bold red]{line}[/bold red]", highlight=False)
    kept = sorted(str(path.relative_to(lake)) for path in local.alerts_dir.glob("*.jsonl"))
    console.print(f"  pages: {len(pages)}, kept in {', '.join(kept) or 'none'}", highlight=False)

    _run(console, ["ingest", str(events_file), "--kind", "events", "--cluster", CLUSTER, "--lake", str(lake)])
    # The summary as `auditlake summary` prints it (the CLI renders; the demo only drives it).
    _run(console, ["summary", "--lake", str(lake)], quiet=True)
    _run(console, ["compact", "--lake", str(lake)])
    _run(console, ["digest", "--lake", str(lake)])
    _run(console, ["verify", "--lake", str(lake)])

    since = (datetime.now(UTC) - timedelta(minutes=minutes + 5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    window = ["--param", f"since={since}"]
    namespace, secret = INCIDENT_SECRET
    for name, params in (
        ("secret_changes", ["--param", f"name={secret}", "--param", f"namespace={namespace}"]),
        ("forbidden_bursts", []),
        ("pod_exec", []),
        ("pod_evictions_deletions", []),
        ("node_membership", []),
    ):
        _run(console, ["query", name, "--lake", str(lake), *window, *params])
    _show_findings(console, lake, since)
    report_file = (lake / "report.html").resolve()
    _run(console, ["report", "--lake", str(lake), "--since", since, "--out", str(report_file)])

    leaks, checked = _scan_for(local, PLANTED_SECRET_VALUE.encode(), PLANTED_AWS_KEY.encode())
    verdict = "[green]none[/green]" if not leaks else f"[red]FOUND in {leaks}[/red]"
    console.print(
        f"planted secret values in the lake: {verdict} "
        f"({checked} objects scanned: raw, quarantine, findings, archive, report)"
    )
    console.print(
        f"lake: {lake}/  (try: auditlake query --list; auditlake query identity_timeline "
        f"--lake {lake} --param identity=mallory@example.com)",
        highlight=False,
    )
    console.print(f"report: {report_file}  (open it in a browser: file://{report_file})", highlight=False)
    if leaks:
        raise SystemExit(1)


def _show_findings(console: Console, lake: Path, since: str, top: int = 8) -> None:
    """The findings section: ``auditlake findings --format json`` (archive and raw), counted by
    rule, highest level first, then the first ``top`` findings at the highest levels."""
    args = ["findings", "--lake", str(lake), "--since", since, "--format", "json"]
    console.print(f"[bold]$ auditlake {' '.join(args)}[/bold]", highlight=False)
    out = subprocess.run(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "auditlake", *args], check=True, capture_output=True, text=True
    ).stdout
    found: list[dict[str, Any]] = json.loads(out or "[]")
    counts = Counter((f["rule_id"], f["title"], f["level"]) for f in found)
    table = Table(title=f"findings: {len(found)} from {len(counts)} rules", title_justify="left")
    for column in ("level", "rule", "title", "findings"):
        table.add_column(column, justify="right" if column == "findings" else "left")
    for (rule, title, level), count in sorted(counts.items(), key=lambda kv: (-SIGMA_LEVEL_RANK[kv[0][2]], -kv[1])):
        table.add_row(level, rule, title, str(count))
    console.print(table)
    ranked = sorted(found, key=lambda f: (-SIGMA_LEVEL_RANK[f["level"]], f["at"]))
    for finding in ranked[:top]:
        where = "/".join(part for part in (finding.get("namespace"), finding.get("name")) if part)
        console.print(
            f"  {finding['at'][:19]} [bold]{finding['level']}[/bold] {finding['title']}: "
            f"{finding.get('identity') or '?'} {finding.get('verb') or ''} {finding.get('resource') or ''} {where}",
            highlight=False,
        )


def _scan_for(lake: LocalLake, *needles: bytes) -> tuple[list[str], int]:
    """Keys of objects whose content holds any of ``needles``, decompressed (raw) or decoded
    (Parquet), and how many objects were scanned (all but the demo's inputs)."""
    import pyarrow.parquet as pq

    store = lake.store()
    inputs = lake.inputs_dir.relative_to(lake.root).as_posix() + "/"
    found, checked = [], 0
    for key in store.list(""):
        if key.startswith(inputs):
            continue
        checked += 1
        data = store.get(key)
        if key.endswith(".zst"):
            data = b"\n".join(decode_lines(data))
        elif key.endswith(".parquet"):
            table = pq.read_table(io.BytesIO(data))
            data = "\n".join(str(v) for column in table.columns for v in column.to_pylist()).encode()
        if any(needle in data for needle in needles):
            found.append(key)
    return found, checked
