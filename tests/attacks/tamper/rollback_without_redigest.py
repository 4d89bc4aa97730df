"""The newest digest removed and the chain head moved back to the one before: the lake agrees with
itself; only the head an auditor recorded shows the chain lost its end."""

from pathlib import Path

from tests.attacks.tampering import digests, reset_head_to, sealed_by

ISSUE = "11.12"
FINDING = "HEAD"
AUDITOR = True  # verify --expect-head (recorded after the honest digest) --public-key (exported)


def tamper(lake: Path) -> None:
    older, newest = digests(lake)[-2:]
    for path in sealed_by(newest):
        path.unlink()
    newest.unlink()
    reset_head_to(lake, older)
