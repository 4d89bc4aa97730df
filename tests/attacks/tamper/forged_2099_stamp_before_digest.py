"""The same forgery placed before a digest: the digest seals only what the ledger recorded, so from
then on the file is extra (written, by its real write time, before the last digest's end)."""

from pathlib import Path

from tests.attacks.tampering import forge_2099_file

ISSUE = "11.12"
FINDING = "EXTRA"
WHEN = "before-digest"


def tamper(lake: Path) -> None:
    forge_2099_file(lake)
