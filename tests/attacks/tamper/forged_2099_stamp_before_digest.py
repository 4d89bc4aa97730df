"""The same forgery placed before a digest: the digest seals only what the ledger recorded, so from
then on the file is extra (written, by its real write time, before the last digest's end)."""

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

from tests.attacks.tampering import archive_files

ISSUE = "11.12"
FINDING = "EXTRA"
WHEN = "before-digest"


def tamper(lake: Path) -> None:
    honest = archive_files(lake)[0]
    cluster = honest.name.split("-")[0]
    forged = honest.with_name(f"{cluster}-20991231T235959Z-0badc0ffee00.parquet")
    shutil.copy(honest, forged)
    future = datetime(2099, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()
    os.utime(forged, (future, future))
