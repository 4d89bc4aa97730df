"""A forged Parquet file named ``.tmp-*`` (the prefix of the store's own temp files) in a partition:
the archive listing skipped it and DuckDB's glob read it, so verify said verified while queries
returned its rows. Queries now read only the files the archive lists; verify reports a temp file
older than a write takes (verify runs ten minutes later)."""

import shutil
from datetime import timedelta
from pathlib import Path

from tests.attacks.tampering import archive_files

ISSUE = "11.12"
FINDING = "LEFTOVER"
VERIFY_LATER = timedelta(minutes=10)  # verify's clock: the temp file is older than a write takes


def tamper(lake: Path) -> None:
    honest = archive_files(lake)[0]
    shutil.copy(honest, honest.with_name(".tmp-forged.parquet"))
