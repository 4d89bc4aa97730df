"""A FIFO named like an archive file in a partition: reading it hangs (verify hung when a forged
ledger line made it hash the file). Anything not a regular file is a finding and never opened."""

import os
from pathlib import Path

from tests.attacks.tampering import archive_files

ISSUE = "11.12"
FINDING = "IRREGULAR"


def tamper(lake: Path) -> None:
    os.mkfifo(archive_files(lake)[0].parent / "c9-20991231T235959Z-0badc0ffee02.parquet")
