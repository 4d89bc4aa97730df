"""Helpers for the tampering cases (tests/attacks/tamper/): what someone with write access to a
local lake can do to its archive, digests, chain head and ledger."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from auditlake.cli import main
from auditlake.local_lake import LocalLake


def cli(*args: str) -> Any:
    return CliRunner(mix_stderr=False).invoke(main, list(args), catch_exceptions=False)


def digests(lake: Path) -> list[Path]:
    return sorted((lake / "archive" / "digests").glob("*.json"))


def sealed_by(path: Path) -> list[Path]:
    """The archive files a digest lists."""
    lake = path.parents[2]
    return [lake / "archive" / obj["key"] for obj in json.loads(path.read_text())["objects"]]


def archive_files(lake: Path) -> list[Path]:
    return sorted((lake / "archive" / "audit").rglob("*.parquet"))


def forge_2099_file(lake: Path) -> None:
    """A copy of an archive file beside it, named with a 2099 write stamp and its mtime set to 2099."""
    honest = archive_files(lake)[0]
    cluster = honest.name.split("-")[0]
    forged = honest.with_name(f"{cluster}-20991231T235959Z-0badc0ffee00.parquet")
    shutil.copy(honest, forged)
    future = datetime(2099, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()
    os.utime(forged, (future, future))


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def head_file(lake: Path) -> Path:
    return LocalLake(lake).digest_head_file


def reset_head_to(lake: Path, digest: Path | None) -> None:
    """Point the local chain head at ``digest`` (None: no head), as the digester would have."""
    if digest is None:
        head_file(lake).unlink()
        return
    data = digest.read_bytes()
    doc = json.loads(data)
    head = {"sequence": doc["sequence"], "key": f"digests/{digest.name}",
            "sha256": hashlib.sha256(data).hexdigest(), "to": doc["to"]}  # fmt: skip
    head_file(lake).write_text(json.dumps(head))


def rewrite_ledger(lake: Path, key: str, data: bytes) -> None:
    """Make the ledger say ``key`` was written with ``data``."""
    for hour in sorted(LocalLake(lake).ledger_dir.glob("*.jsonl")):
        lines = hour.read_text().splitlines()
        for i, line in enumerate(lines):
            entry = json.loads(line)
            if entry.get("key") == key:  # (a line {"stored": key} marks a write)
                entry.update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
                lines[i] = json.dumps(entry)
        hour.write_text("".join(f"{line}\n" for line in lines))
