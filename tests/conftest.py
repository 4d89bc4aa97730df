"""Shared test paths and helpers. The shared corpus is read in place, never copied."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORPUS = (ROOT / ".." / "shared" / "corpus").resolve()
EVENTS = ROOT / "tests" / "events"


def corpus_path(relative: str) -> Path:
    path = CORPUS / relative
    if not path.exists():
        # A missing corpus is a broken checkout, not a reason to skip: fail loudly.
        raise FileNotFoundError(f"shared corpus file missing: {path}")
    return path


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open("rb") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def fixture(name: str) -> Any:
    return json.loads((EVENTS / name).read_text())


@pytest.fixture
def corpus() -> Path:
    return CORPUS
