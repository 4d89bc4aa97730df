"""The chain head file cut short (a disk full, or someone's edit): verify exited with a traceback.
It is a HEAD finding."""

from pathlib import Path

from tests.attacks.tampering import head_file

ISSUE = "11.12"
FINDING = "HEAD"


def tamper(lake: Path) -> None:
    data = head_file(lake).read_bytes()
    head_file(lake).write_bytes(data[: len(data) // 2])
