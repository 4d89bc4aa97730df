"""Every tampering of the corpus (tests/attacks/tamper/, one per file) on an honest local lake:
verify passes on the lake before it, and fails with the case's FINDING after it. Cases marked
AUDITOR are verified as an auditor would: with the chain head recorded after the honest digest
(--expect-head) and the public key exported then and kept outside the lake (--public-key). Cases
with VERIFY_LATER are verified that much later (verify's clock moved)."""

from __future__ import annotations

import importlib
import shutil
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType

import pytest

from tests.attacks.tampering import cli
from tests.helpers import corpus_path

CASES = sorted(p.stem for p in (Path(__file__).parent / "tamper").glob("*.py") if p.stem != "__init__")


def _load(name: str) -> ModuleType:
    return importlib.import_module(f"tests.attacks.tamper.{name}")


def _ok(lake: Path, *extra: str) -> str:
    result = cli("verify", "--lake", str(lake), *extra)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "verified" in result.stderr
    return str(result.stderr)


@pytest.fixture(scope="module")
def compacted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lake with one digest, then a second cluster's events compacted and not yet sealed."""
    lake = tmp_path_factory.mktemp("honest") / "lake"
    for cluster, log in (("c1", "liggitt__audit2rbac__demo_v1beta1_original.jsonl"),
                         ("c2", "liggitt__audit2rbac__demo_v1.jsonl")):  # fmt: skip
        assert cli("ingest", str(corpus_path(f"audit/{log}")), "--cluster", cluster, "--lake", str(lake)).exit_code == 0
        assert cli("compact", "--lake", str(lake)).exit_code == 0
        if cluster == "c1":
            assert cli("digest", "--lake", str(lake)).exit_code == 0
    return lake


@pytest.mark.parametrize("name", CASES)
def test_tampering_is_caught(name: str, compacted: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    case = _load(name)
    lake = tmp_path / "lake"
    shutil.copytree(compacted, lake)
    assert "not yet sealed" in _ok(lake)
    when = getattr(case, "WHEN", "after-digest")
    assert when in ("before-digest", "after-digest"), name
    if when == "before-digest":
        case.tamper(lake)
    public = tmp_path / "kept-elsewhere.pem"
    sealed = cli("digest", "--lake", str(lake), "--export-public-key", str(public))
    assert sealed.exit_code == 0, sealed.stderr
    head = sealed.stderr.split("chain head ", 1)[1].split()[0]
    auditor = ("--expect-head", head, "--public-key", str(public)) if getattr(case, "AUDITOR", False) else ()
    if when == "after-digest":
        _ok(lake, *auditor)
        case.tamper(lake)
    later: timedelta = getattr(case, "VERIFY_LATER", timedelta(0))

    class _Later(datetime):
        @classmethod
        def now(cls, tz: object = None) -> datetime:  # type: ignore[override]
            return datetime.now(tz) + later  # type: ignore[arg-type]

    monkeypatch.setattr("auditlake.cli.archive.datetime", _Later)
    result = cli("verify", "--lake", str(lake), *auditor)
    assert result.exit_code == 1, (name, result.stdout + result.stderr)
    assert case.FINDING in result.stdout, (name, result.stdout + result.stderr)
    assert "verified" not in result.stderr


def test_every_case_names_its_issue_and_finding() -> None:
    assert len(CASES) >= 8
    for name in CASES:
        case = _load(name)
        assert case.ISSUE in ("11.12", "11.13") and case.FINDING and case.__doc__, name
