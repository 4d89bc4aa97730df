"""A directory named like an archive file in a partition, forged Parquet inside: a glob over
``*.parquet`` names the directory, a reader may descend it. It is a finding."""

import shutil
from pathlib import Path

from tests.attacks.tampering import archive_files

ISSUE = "11.12"
FINDING = "IRREGULAR"


def tamper(lake: Path) -> None:
    honest = archive_files(lake)[0]
    folder = honest.with_name("c9-20991231T235959Z-0badc0ffee03.parquet")
    folder.mkdir()
    shutil.copy(honest, folder / "part-0.parquet")
