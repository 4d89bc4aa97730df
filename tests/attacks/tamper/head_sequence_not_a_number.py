"""The chain head rewritten as ``{"sequence": "x"}``: verify exited with a traceback. A head that is
not a digest head is a HEAD finding."""

from pathlib import Path

from tests.attacks.tampering import head_file

ISSUE = "11.12"
FINDING = "HEAD"


def tamper(lake: Path) -> None:
    head_file(lake).write_text('{"sequence": "x"}')
