"""The newest digest removed together with the files only it sealed: the older chain is intact, but
shorter than its head."""

from pathlib import Path

from tests.attacks.tampering import digests, sealed_by

ISSUE = "11.12"
FINDING = "HEAD"


def tamper(lake: Path) -> None:
    newest = digests(lake)[-1]
    for path in sealed_by(newest):
        path.unlink()
    newest.unlink()
