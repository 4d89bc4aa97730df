"""A forged file in a partition, named with a 2099 write stamp and its mtime set to 2099: it used to be
"not yet sealed" forever while queries returned its rows. Judged by its real write time it was
written after the last digest, and no compaction recorded it."""

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

from tests.attacks.tampering import archive_files

ISSUE = "11.12"
FINDING = "UNRECORDED"


def tamper(lake: Path) -> None:
    honest = archive_files(lake)[0]
    cluster = honest.name.split("-")[0]
    forged = honest.with_name(f"{cluster}-20991231T235959Z-0badc0ffee00.parquet")
    shutil.copy(honest, forged)
    future = datetime(2099, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()
    os.utime(forged, (future, future))
