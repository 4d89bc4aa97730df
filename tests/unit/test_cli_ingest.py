"""The command line starts without the CloudWatch path: cli/ingest.py imports it in the commands that
use it, and spells out the backfill's page limit for --help."""

from __future__ import annotations

import subprocess
import sys

from auditlake.cli import ingest as cli_ingest
from auditlake.ingest import backfill


def test_page_limit_matches_the_backfill() -> None:
    assert cli_ingest.PAGE_LIMIT == backfill.PAGE_LIMIT


def test_the_cli_starts_without_the_cloudwatch_path() -> None:
    probe = (
        "import sys, auditlake.cli; "
        "print(sorted(m for m in ('auditlake.ingest.cloudwatch', 'auditlake.ingest.backfill', "
        "'auditlake.events.files', 'aws_lambda_powertools.utilities.data_classes') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
