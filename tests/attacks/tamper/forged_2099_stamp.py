"""A forged file in a partition, named with a 2099 write stamp and its mtime set to 2099: it used to be
"not yet sealed" forever while queries returned its rows. Judged by its real write time it was
written after the last digest, and no compaction recorded it."""

from pathlib import Path

from tests.attacks.tampering import forge_2099_file

ISSUE = "11.12"
FINDING = "UNRECORDED"


def tamper(lake: Path) -> None:
    forge_2099_file(lake)
