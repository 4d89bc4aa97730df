"""Every abuse of the local webhook endpoint in ``serve/`` (one per file): the attack's own answer is
checked by the case, and afterwards the endpoint still stores a real batch at once."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from tests.attacks.serving import good_batch, running

CASES = sorted(p.stem for p in (Path(__file__).parent / "serve").glob("*.py") if p.stem != "__init__")


@pytest.mark.parametrize("name", CASES)
def test_serve_holds_under_abuse(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    case = importlib.import_module(f"tests.attacks.serve.{name}")
    assert case.ISSUE.startswith("11.") and case.__doc__
    with running(tmp_path / "lake", monkeypatch) as address:
        case.attack(address)
        assert good_batch(address) == 200
