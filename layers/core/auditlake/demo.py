"""``make demo``: the whole ingest path on a local lake, through real processes and real HTTP.

synth -> ``auditlake serve`` (subprocess, HTTP on a free port) <- ``auditlake replay`` (subprocess)
-> local lake; then the summary, and a scan of every stored byte for the planted secret values.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

from .kubeconfig import asset
from .landing import decode_lines
from .stores.local import LocalStore
from .summary import summarise
from .synth import PLANTED_SECRET_VALUE

MARKER = ".auditlake-demo"
CLUSTER = "demo"


def _run(console: Console, args: list[str]) -> None:
    console.print(f"[bold]$ auditlake {' '.join(args)}[/bold]", highlight=False)
    subprocess.run([sys.executable, "-m", "auditlake", *args], check=True)  # noqa: S603 - our own CLI


def run_demo(lake: Path, *, minutes: float, rate: float, seed: int) -> None:
    from .cli import print_summary

    console = Console()
    if lake.exists():
        if not (lake / MARKER).exists() and any(lake.iterdir()):
            raise SystemExit(f"{lake} exists and is not a demo lake; choose another --lake")
        shutil.rmtree(lake)
    lake.mkdir(parents=True)
    (lake / MARKER).write_text("created by auditlake demo; deleted by the next run\n")
    inputs = lake / "inputs"
    inputs.mkdir()
    synth_file = inputs / "synth.jsonl"
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
    token_file = lake / "tokens" / f"{CLUSTER}.token"
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
    console.print(f"[bold]$ auditlake {' '.join(serve_args)} &[/bold]", highlight=False)
    server = subprocess.Popen(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "auditlake", *serve_args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        ready = server.stdout.readline().strip()
        if not ready.startswith("listening on "):
            raise SystemExit(f"serve did not start: {ready!r}")
        url = ready.removeprefix("listening on ")
        console.print(f"  {ready}")
        _run(console, ["replay", str(synth_file), "--url", url, "--token-file", str(token_file)])
    finally:
        server.terminate()
        server.wait(timeout=30)

    store = LocalStore(lake)
    started = time.perf_counter()
    print_summary(summarise(store), console)
    leaks = _scan_for(store, PLANTED_SECRET_VALUE.encode())
    checked = sum(1 for _ in store.list("raw/")) + sum(1 for _ in store.list("quarantine/"))
    verdict = "[green]none[/green]" if not leaks else f"[red]FOUND in {leaks}[/red]"
    console.print(f"planted secret values in the lake: {verdict} ({checked} objects scanned)")
    console.print(f"lake: {lake}/ (raw/ and quarantine/), scanned in {time.perf_counter() - started:.1f}s")
    if leaks:
        raise SystemExit(1)


def _scan_for(store: LocalStore, needle: bytes) -> list[str]:
    found = []
    for key in [*store.list("raw/"), *store.list("quarantine/")]:
        data = store.get(key)
        if key.endswith(".zst"):
            data = b"\n".join(decode_lines(data))
        if needle in data:
            found.append(key)
    return found
