"""A partition directory that is a symlink to forged Parquet outside the lake: the archive listing
did not follow it, DuckDB did. Anything in the archive that is not a regular file or a directory
is a finding, never followed."""

import shutil
from pathlib import Path

from tests.attacks.tampering import archive_files

ISSUE = "11.12"
FINDING = "IRREGULAR"


def tamper(lake: Path) -> None:
    honest = archive_files(lake)[0]
    elsewhere = lake.parent / "elsewhere" / "hour=21"
    elsewhere.mkdir(parents=True)
    shutil.copy(honest, elsewhere / "c9-20991231T235959Z-0badc0ffee00.parquet")
    (lake / "archive" / "audit" / "dt=2099-12-31").symlink_to(elsewhere.parent, target_is_directory=True)
