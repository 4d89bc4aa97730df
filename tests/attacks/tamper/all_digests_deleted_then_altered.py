"""Every digest deleted, with the chain head, then a sealed file altered: nothing is sealed any more,
so nothing can be proven."""

from pathlib import Path

from tests.attacks.tampering import archive_files, digests, flip_a_byte, head_file

ISSUE = "11.12"
FINDING = "NO-DIGEST"


def tamper(lake: Path) -> None:
    for digest in digests(lake):
        digest.unlink()
    head_file(lake).unlink()
    flip_a_byte(archive_files(lake)[0])
