"""The chain rolled back (newest digest removed, head reset), a file it sealed replaced and the ledger
made to agree, then digested again with the lake's own key: a consistent, validly signed chain.
Only the head an auditor recorded tells the new last digest from the old one."""

from pathlib import Path

from tests.attacks.tampering import cli, digests, flip_a_byte, reset_head_to, rewrite_ledger, sealed_by

ISSUE = "11.12"
FINDING = "HEAD"
AUDITOR = True


def tamper(lake: Path) -> None:
    older, newest = digests(lake)[-2:]
    victim = sealed_by(newest)[0]
    flip_a_byte(victim)
    rewrite_ledger(lake, victim.relative_to(lake / "archive").as_posix(), victim.read_bytes())
    newest.unlink()
    reset_head_to(lake, older)
    assert cli("digest", "--lake", str(lake)).exit_code == 0
    alone = cli("verify", "--lake", str(lake))
    assert alone.exit_code == 0, alone.stdout + alone.stderr  # the lake alone cannot tell
