"""The newest digest removed while a file it sealed is altered: the file now looks written after the
last digest, and the chain is shorter than its head."""

from pathlib import Path

from tests.attacks.tampering import digests, flip_a_byte, sealed_by

ISSUE = "11.12"
FINDING = "HEAD"


def tamper(lake: Path) -> None:
    newest = digests(lake)[-1]
    flip_a_byte(sealed_by(newest)[0])
    newest.unlink()
