"""A dangling symlink named like an archive file: it had no write time, so verify skipped it, and
once its target appeared queries read it. A symlink in the archive is a finding, never read."""

from pathlib import Path

from tests.attacks.tampering import archive_files

ISSUE = "11.12"
FINDING = "IRREGULAR"


def tamper(lake: Path) -> None:
    partition = archive_files(lake)[0].parent
    (partition / "c9-20991231T235959Z-0badc0ffee01.parquet").symlink_to(lake.parent / "not-yet-there.parquet")
