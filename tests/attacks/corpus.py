"""The attack corpus: one hostile input per file, each with the canary it must not leak.

A case (``tests/attacks/inputs/<name>.json``) is a JSON object:

- ``issue``: where it was reported (``"11.1"``); ``what``: one line saying what the attack does.
- ``via``: the ingest path it is delivered through: ``webhook`` (the local webhook core, as
  ``auditlake serve`` builds it), ``jsonl``, ``eventlist`` or ``cloudwatch`` (``auditlake ingest
  --format``), ``events`` (``auditlake ingest --kind events``: Kubernetes Events), or ``compact``
  (``input`` is written as a raw landing object, then compacted).
- the input, one of: ``input`` (a JSON value, sent as its JSON text), ``input_text`` (text sent as
  is), ``input_file`` (a file beside the case, sent byte for byte: for inputs JSON cannot hold).
- ``canary``: a string that must appear in no stored byte, in no output, in no log line; its base64
  form neither (Secrets carry ``data`` base64-encoded). ``null`` when the case is about loss only.
- ``expect``: what must hold after delivery and ``auditlake compact``: ``status`` (webhook reply),
  ``archived`` (rows in the archive), ``archived_ids`` (audit IDs, or Events' uids, that must be among them),
  ``quarantined`` (quarantined items, counted over every manifest and payload kept).

Helpers here deliver a case into a fresh lake and read back every stored byte as text: zstd frames
decompressed, Parquet files as their rows, everything else as bytes.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import zstandard

INPUTS = Path(__file__).parent / "inputs"


@dataclass(frozen=True)
class Case:
    name: str
    issue: str
    what: str
    via: str
    payload: bytes
    canary: str | None
    expect: dict[str, Any]

    @property
    def forms(self) -> list[bytes]:
        """The canary as it may be stored: plain, base64 (Secret ``data``), JSON-escaped inside a string."""
        if not self.canary:
            return []
        plain = self.canary.encode()
        return [plain, base64.b64encode(plain), base64.b64encode(plain).rstrip(b"=")]


def load(path: Path) -> Case:
    doc = json.loads(path.read_text())
    sources = [k for k in ("input", "input_text", "input_file") if k in doc]
    if len(sources) != 1:
        raise ValueError(f"{path.name}: give exactly one of input, input_text, input_file")
    if "input" in doc:
        payload = json.dumps(doc["input"]).encode()
    elif "input_text" in doc:
        payload = doc["input_text"].encode("utf-8", "surrogatepass")
    else:
        payload = (path.parent / doc["input_file"]).read_bytes()
    canary = (doc.get("canary") or "").encode()
    if canary and canary not in payload and base64.b64encode(canary) not in payload:
        raise ValueError(f"{path.name}: the canary is not in the input, so the case proves nothing")
    return Case(path.stem, doc["issue"], doc["what"], doc["via"], payload, doc.get("canary"), doc.get("expect", {}))


def cases() -> list[Case]:
    return [load(path) for path in sorted(INPUTS.glob("*.json"))]


def stored_texts(root: Path) -> Iterator[tuple[Path, bytes]]:
    """Every file under ``root`` as the bytes a reader gets out of it."""
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if path.suffix == ".parquet":
            table = pq.read_table(io.BytesIO(data))
            yield path, json.dumps(table.to_pylist(), default=str).encode()
        elif data[:4] == b"\x28\xb5\x2f\xfd":  # zstd frame magic: read every frame
            reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True)
            try:
                yield path, reader.read()
            except zstandard.ZstdError:
                yield path, data
        else:
            yield path, data


def leaks(case: Case, root: Path, outputs: str = "") -> list[str]:
    """Where the case's canary shows: stored files (relative to ``root``) and ``<output>``."""
    found = [str(path.relative_to(root)) for path, text in stored_texts(root) if any(f in text for f in case.forms)]
    if any(f.decode() in outputs for f in case.forms):
        found.append("<output>")
    return found
