"""`sam build` succeeds for the target platform, and every function fits Lambda's 250 MB."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import parse_sam_yaml

LIMIT = 250 * 1024 * 1024
AARCH64 = 183  # ELF e_machine


def size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def test_each_function_with_its_layers_fits_the_limit(built: Path) -> None:
    template = parse_sam_yaml((built / "template.yaml").read_text())
    functions = {  # the Fn::ForEach block stays as written: CloudFormation expands it at deploy
        n: r
        for n, r in template["Resources"].items()
        if isinstance(r, dict) and r["Type"] == "AWS::Serverless::Function"
    }
    assert functions
    for name, function in functions.items():
        total = size(built / name) + sum(
            size(built / layer["Ref"]) for layer in function["Properties"].get("Layers", [])
        )
        assert total < LIMIT, f"{name}: {total / 2**20:.0f} MB unzipped"


def test_native_code_is_built_for_arm64(built: Path) -> None:
    libraries = list((built / "CoreLayer" / "python").rglob("*.so"))
    assert libraries
    for library in libraries:
        header = library.read_bytes()[:20]
        assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == AARCH64, library.name
    assert not list((built / "CoreLayer" / "python" / "zstandard").glob("_cffi*"))


def test_arrow_layer_is_trimmed(built: Path) -> None:
    pyarrow = built / "ArrowLayer" / "python" / "pyarrow"
    assert (pyarrow / "parquet").is_dir() and list(pyarrow.glob("_json.*.so"))
    for gone in ("include", "tests", "flight.py"):
        assert not (pyarrow / gone).exists(), gone
    assert not list(pyarrow.glob("libarrow_flight*")) and not list(pyarrow.glob("libarrow_s3*"))
    assert size(built / "ArrowLayer") < 110 * 2**20


def test_layer_holds_the_core_and_the_function_only_its_adapter(built: Path) -> None:
    layer = built / "CoreLayer" / "python"
    assert (layer / "auditlake" / "ingest" / "webhook.py").exists() and (
        layer / "auditlake" / "assets" / "audit-policy.yaml"
    ).exists()
    assert not (layer / "boto3").exists()  # the runtime's own boto3 is used
    # Byte code only for the target's Python (written when a Python 3.13 is at hand at build time).
    assert {p.name.split(".")[-2] for p in layer.rglob("*.pyc")} <= {"cpython-313"}
    for function in ("WebhookFunction", "CompactorFunction"):
        assert sorted(p.name for p in (built / function).iterdir()) == ["app.py"]


def test_layer_ships_the_compiled_builtin_rules_without_pysigma(built: Path) -> None:
    """The layer's build compiles the built-in Sigma rules to detect/builtin.json; pySigma itself is
    a build-time tool (not in requirements.txt, not in the layer), so the functions never parse YAML rules."""
    from auditlake.detect.rulesets import load_compiled
    from auditlake.detect.sigma import load_rules

    layer = built / "CoreLayer" / "python"
    compiled = load_compiled((layer / "auditlake" / "detect" / "builtin.json").read_bytes())
    expected = load_rules([], builtin=True)
    assert compiled.rules and [r.id for r in compiled.rules] == [r.id for r in expected.rules]
    assert [c.id for c in compiled.correlations] == [c.id for c in expected.correlations]
    assert not (layer / "sigma").exists()
    requirements = (Path(__file__).parents[2] / "layers" / "core" / "requirements.txt").read_text().lower()
    assert "sigma" not in requirements
