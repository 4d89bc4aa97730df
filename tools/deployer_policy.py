"""Fill infra/iam/deployer-policy.json's placeholders for one stack and split it into IAM managed
policies: the whole document is over the 6,144 characters (whitespace not counted) a customer managed
policy may hold, so it is written as deployer-policy-1.json, -2.json... each within that limit, whole
statements only, in the file's order. Attach all of them to the deploying role or user.

    python tools/deployer_policy.py --stack auditlake-prod --region eu-west-1 --account 123456789012 --out-dir build/iam

The values are checked before anything is written: a stack name longer than 18 characters gets names
CloudFormation shortens, and the policy's `<stack>-*` patterns would miss them (infra/iam/README.md).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import click

ROOT = Path(__file__).resolve().parents[1]
POLICY = ROOT / "infra" / "iam" / "deployer-policy.json"
# https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html: managed policy size.
MANAGED_POLICY_CHARACTERS = 6144
LONGEST_STACK_NAME = 18  # tests/infra/test_deployer_policy.py derives it from the template's names


def default_glue_database(stack: str) -> str:
    """The template's default GlueDatabaseName: the stack name with `-` as `_`, lower-cased by Glue."""
    return stack.replace("-", "_").lower()


def fill(text: str, *, stack: str, region: str, account: str, database: str) -> dict[str, Any]:
    values = {
        "STACK_NAME": stack,
        "BUCKET_PREFIX": stack.lower(),  # CloudFormation lower-cases the bucket names it generates
        "GLUE_DATABASE": database,
        "REGION": region,
        "ACCOUNT_ID": account,
    }
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    document: dict[str, Any] = json.loads(text)
    return document


def size(document: dict[str, Any]) -> int:
    """Characters as IAM counts them: whitespace outside strings is not counted, and no string of the
    policy holds any."""
    return len(json.dumps(document, separators=(",", ":")))


def split(document: dict[str, Any], limit: int = MANAGED_POLICY_CHARACTERS) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for statement in document["Statement"]:
        if parts and size({**parts[-1], "Statement": [*parts[-1]["Statement"], statement]}) <= limit:
            parts[-1]["Statement"].append(statement)
            continue
        part = {"Version": document["Version"], "Statement": [statement]}
        if size(part) > limit:
            raise ValueError(f"statement {statement['Sid']} alone is over {limit} characters")
        parts.append(part)
    return parts


def fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


@click.command(
    help="""Write the deployer's IAM policies for one stack (infra/iam/deployer-policy.json, placeholders
filled, split into managed policies of at most 6,144 characters).

\b
Example:
  python tools/deployer_policy.py --stack auditlake-prod --region eu-west-1 \\
      --account "$(aws sts get-caller-identity --query Account --output text)" --out-dir build/iam
  for f in build/iam/deployer-policy-*.json; do
    aws iam create-policy --policy-name "auditlake-prod-deployer-$(basename "$f" .json | cut -d- -f3)" \\
        --policy-document "file://$f"
  done
"""
)
@click.option("--stack", required=True, help="Stack name you deploy as (18 characters or fewer).")
@click.option("--region", required=True, help="Region of the stack, e.g. eu-west-1.")
@click.option("--account", required=True, help="12-digit AWS account id of the stack.")
@click.option(
    "--glue-database",
    default="",
    help="The stack's GlueDatabaseName parameter, if you set it; default: the stack name, `-` as `_`, lower case.",
)
@click.option(
    "--out-dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for deployer-policy-1.json, -2.json...",
)
def main(stack: str, region: str, account: str, glue_database: str, out_dir: Path) -> None:
    if not re.fullmatch(r"[a-zA-Z][-a-zA-Z0-9]*", stack):
        fail(f"stack name {stack!r} is not one CloudFormation accepts (a letter, then letters, digits and -)")
    if len(stack) > LONGEST_STACK_NAME:
        fail(
            f"stack name {stack!r} has {len(stack)} characters, and CloudFormation would shorten the names it "
            f"generates from it past the policy's patterns (use a stack name of {LONGEST_STACK_NAME} or fewer)"
        )
    if not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", region):
        fail(f"region {region!r} is not a region name (e.g. --region eu-west-1)")
    if not re.fullmatch(r"\d{12}", account):
        fail(f"account {account!r} is not a 12-digit account id (aws sts get-caller-identity --query Account)")
    if glue_database and not re.fullmatch(r"[a-z0-9_]+", glue_database):
        fail(f"Glue database {glue_database!r} is not a lower-case Glue name (give it as the stack has it)")
    document = fill(
        POLICY.read_text(),
        stack=stack,
        region=region,
        account=account,
        database=glue_database or default_glue_database(stack),
    )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for number, part in enumerate(split(document), start=1):
            path = out_dir / f"deployer-policy-{number}.json"
            path.write_text(json.dumps(part, indent=2) + "\n")
            click.echo(f"{path} ({size(part)} characters)")
    except OSError as error:
        fail(f"cannot write {out_dir}: {error.strerror} (choose a writable --out-dir)")


if __name__ == "__main__":
    main()
