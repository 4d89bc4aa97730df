"""``auditlake rules list|lint|push``: outputs and exit codes; push on moto writes the compiled rules
where the functions read them (the raw bucket's rules/custom.json), refuses what does not lint, and
--remove goes back to the built-in rules."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner, Result

from auditlake.cli import main
from auditlake.cli import rules as rules_cli
from auditlake.detect.rulesets import load_compiled
from auditlake.detect.sigma import load_rules
from auditlake.ingest.rules import CUSTOM_RULES
from auditlake.landing import RULES_PREFIX
from tests.helpers import AwsStack

RULES = Path(__file__).parents[1] / "fixtures" / "rules"
KEY = RULES_PREFIX + CUSTOM_RULES


def run(*args: str) -> Result:
    return CliRunner(mix_stderr=False).invoke(main, list(args), catch_exceptions=False)


def stack(aws: AwsStack, outputs: dict[str, str] | None = None) -> str:
    """A stand-in stack on moto whose RawBucketName is the test's bucket."""
    name = f"auditlake-{uuid.uuid4().hex[:8]}"
    outputs = {"RawBucketName": aws.bucket} if outputs is None else outputs
    template = {"Resources": {"Placeholder": {"Type": "AWS::SNS::Topic"}},
                "Outputs": {k: {"Value": v} for k, v in outputs.items()}}  # fmt: skip
    boto3.client("cloudformation").create_stack(StackName=name, TemplateBody=json.dumps(template))
    return name


def stored(aws: AwsStack) -> dict[str, Any] | None:
    try:
        return aws.s3.get_object(Bucket=aws.bucket, Key=KEY)  # type: ignore[no-any-return]
    except aws.s3.exceptions.NoSuchKey:
        return None


# ---------------------------------------------------------------- list


def test_list_json_is_one_array_of_the_rules_and_correlations() -> None:
    result = run("rules", "list", "--no-builtin-rules", "--rules", str(RULES / "custom"), "--format", "json")
    assert result.exit_code == 0 and result.stderr == ""
    items = json.loads(result.stdout)
    assert [set(item) for item in items] == [set(rules_cli.LIST_COLUMNS)] * 4
    by_name = {item["name"]: item for item in items}
    assert by_name["namespace-deletes"]["logsource"] == "correlation"
    assert by_name["namespace-deleted"]["generate"] is False
    assert by_name["events-oom-killed"] == {
        "id": "245a0c97-2224-4a78-a11c-0bbbc234af2b", "name": "events-oom-killed",
        "title": "Container killed for memory", "level": "low", "logsource": "events", "generate": True,
        "source": str(RULES / "custom" / "events-oom-killed.yml"),
    }  # fmt: skip


def test_list_shows_the_built_in_set_by_their_file_names() -> None:
    result = run("rules", "list", "--format", "json")
    assert result.exit_code == 0
    items = json.loads(result.stdout)
    assert len(items) > 40 and all(item["source"].startswith("builtin/") for item in items)
    assert {"name": "forbidden", "logsource": "correlation", "source": "builtin/forbidden.yml"}.items() <= next(
        item for item in items if item["name"] == "forbidden"
    ).items()


def test_list_table() -> None:
    result = run("rules", "list", "--no-builtin-rules", "--rules", str(RULES / "custom"))
    assert result.exit_code == 0
    assert "Shell opened in a production pod" in result.stdout and "exec-in-production" in result.stdout
    assert result.stderr == "4 rows\n"


def test_list_reports_each_load_problem_in_one_warning_line_and_lists_the_rest() -> None:
    result = run("rules", "list", "--no-builtin-rules", "--rules", str(RULES / "mixed"), "--format", "json")
    assert result.exit_code == 0
    assert [item["title"] for item in json.loads(result.stdout)] == ["Node deleted, again"]
    lines = result.stderr.splitlines()
    assert len(lines) == 4 and all(line.startswith(f"warning: {RULES / 'mixed'}/") for line in lines)
    assert any(
        line.startswith(f"warning: {RULES / 'mixed' / 'windows.yml'}: Windows process creation: not a")
        for line in lines
    )


def test_list_of_a_path_that_does_not_exist_is_one_error_line_exit_2(tmp_path: Path) -> None:
    result = run("rules", "list", "--rules", str(tmp_path / "nope"))
    assert result.exit_code == 2
    assert result.stderr == f"error: --rules {tmp_path / 'nope'}: no such file or directory\n" and result.stdout == ""


# ---------------------------------------------------------------- lint


def test_lint_clean() -> None:
    result = run("rules", "lint", str(RULES / "custom"), str(RULES / "pipeline"))
    assert (result.exit_code, result.stdout) == (0, "7 rules, no problems\n")


def test_lint_one_line_per_problem_exit_1() -> None:
    result = run("rules", "lint", str(RULES / "mixed"))
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert len(lines) == 6 and all(line.startswith(str(RULES / "mixed") + "/") for line in lines)
    orphan = RULES / "mixed" / "orphan-correlation.yml"
    assert f"{orphan}: Burst of a rule nobody loaded: refers to rules not loaded: no-such-rule" in lines
    assert result.stderr == "6 problems\n"


def test_lint_needs_a_directory() -> None:
    assert run("rules", "lint").exit_code == 2


# ---------------------------------------------------------------- push


def test_push_stores_the_compiled_rules_where_the_functions_read_them(aws: AwsStack) -> None:
    name = stack(aws)
    result = run("rules", "push", str(RULES / "custom"), "--stack", name)
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"pushed 3 rules, 1 correlation to s3://{aws.bucket}/{KEY}; the stack's functions load them within "
        "AUDITLAKE_RULES_CACHE_SECONDS (300 s by default)\n"
    )
    obj = stored(aws)
    assert obj is not None and obj["ContentType"] == "application/json"
    expected = load_rules([RULES / "custom"], builtin=False)
    assert load_compiled(obj["Body"].read()) == type(expected)(expected.rules, expected.correlations)

    again = run("rules", "push", str(RULES / "pipeline"), "--stack", name)  # a push replaces the whole set
    assert again.exit_code == 0
    titles = [rule.title for rule in load_compiled(aws.s3.get_object(Bucket=aws.bucket, Key=KEY)["Body"].read()).rules]
    assert titles == ["Pod mounting the Docker socket", "Pod adding SYS_ADMIN", "RBAC object touched"]

    removed = run("rules", "push", "--remove", "--stack", name)
    assert removed.exit_code == 0
    assert removed.stdout.startswith(f"removed s3://{aws.bucket}/{KEY}: the stack evaluates the built-in rules only")
    assert stored(aws) is None


def test_push_refuses_rules_that_do_not_lint_and_writes_nothing(aws: AwsStack) -> None:
    name = stack(aws)
    result = run("rules", "push", str(RULES / "mixed"), "--stack", name)
    assert result.exit_code == 1
    assert len(result.stdout.splitlines()) == 6
    assert result.stderr == "error: 6 problems: nothing pushed (auditlake rules lint shows them)\n"
    assert stored(aws) is None


def test_push_refuses_a_built_in_rules_id(aws: AwsStack, tmp_path: Path) -> None:
    builtin = (Path(rules_cli.__file__).parents[1] / "detect" / "builtin" / "pod-exec-attach.yml").read_text()
    (tmp_path / "copy.yml").write_text(builtin)
    result = run("rules", "push", str(tmp_path), "--stack", stack(aws))
    assert result.exit_code == 1
    assert "is a built-in rule's id; give it its own" in result.stdout
    assert stored(aws) is None


def test_push_refuses_an_empty_set(aws: AwsStack, tmp_path: Path) -> None:
    result = run("rules", "push", str(tmp_path), "--stack", stack(aws))
    assert result.exit_code == 1 and "nothing pushed (--remove goes back to the built-in rules)" in result.stderr


@pytest.mark.parametrize("args", [["--stack", "s"], [str(RULES / "custom"), "--remove", "--stack", "s"]])
def test_push_needs_directories_or_remove_alone(args: list[str]) -> None:
    result = run("rules", "push", *args)
    assert result.exit_code == 2 and "give rule directories to push, or --remove alone" in result.stderr


def test_push_to_a_stack_that_does_not_exist_is_one_error_line(aws: AwsStack) -> None:
    result = run("rules", "push", str(RULES / "custom"), "--stack", "no-such-stack")
    assert result.exit_code == 1
    assert result.stderr == "error: no stack no-such-stack in this account and region\n"


def test_push_to_a_stack_without_the_raw_bucket_output(aws: AwsStack) -> None:
    name = stack(aws, {"StateTableName": aws.table})
    result = run("rules", "push", str(RULES / "custom"), "--stack", name)
    assert result.exit_code == 1
    assert (
        result.stderr
        == f"error: stack {name} has no output RawBucketName: redeploy it with this release (sam deploy)\n"
    )


def test_the_cli_writes_the_key_the_functions_read() -> None:
    assert rules_cli.CUSTOM_RULES == CUSTOM_RULES
