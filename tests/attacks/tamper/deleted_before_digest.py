"""A file deleted between its compaction and the next digest: the ledger recorded it, no digest can
seal it; it used to be sealed as "never written" and verify said nothing."""

from pathlib import Path

from tests.attacks.tampering import archive_files

ISSUE = "11.12"
FINDING = "VANISHED"
WHEN = "before-digest"  # after the last compaction, before the digest that would seal its files


def tamper(lake: Path) -> None:
    archive_files(lake)[-1].unlink()
