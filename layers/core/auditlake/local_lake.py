"""The embedded lake's composition root: every path under ``--lake`` in one place, and the local
adapters the CLI and the demo build from them (``assembly.py`` is the Lambda functions' counterpart).

Layout of a lake directory (nothing else joins paths under it)::

    raw/ quarantine/            the raw landing: the lake itself is the Store's root
    archive/                    the Parquet archive (audit/, events/, findings/) and its digests/
    tokens/<cluster>.token      webhook bearer tokens made by ``cluster add --lake`` (0600)
    clusters/<cluster>/         what ``cluster add --lake --kind-config/--kubeadm-patch`` wrote for that API
                                server: audit-policy.yaml, webhook.kubeconfig (0600: it holds the token),
                                ca.crt, and serve's TLS certificate and key (serve.crt, serve.key 0600)
    alerts/<day>.jsonl          alerts as they were sent (correlation bursts, paged findings)
    inputs/                     what ``auditlake demo`` generated and replayed
    .auditlake-lake             marks a lake: written by ``create()``, which only the commands that make
                                a lake call (ingest, serve, poll, cluster add, backfill --lake, demo)
    .auditlake-demo             marks a lake ``auditlake demo`` made (and may delete)
    .locks/                     compaction locks
    state/checkpoints/          backfill checkpoints (a lake of an earlier version kept them in
                                checkpoints/: they are moved here the first time they are asked for)
    checkpoints/                an earlier version's: once moved, its lock files stay, and MOVED says so
    state/poller/               Events poller checkpoints and leases
    state/ledger/               the archive's write ledger (what the digests seal)
    state/compacted/<kind>/<yyyy-mm-ddThh>[.keys]   landing hours compacted whole, and the raw objects archived
    state/alerts.json           correlation counters (403 bursts)
    state/pages.json            findings paged, each until its dedup window ends
    state/digest-key.pem        the digest signing key, made on first use
    state/digest-head.json      the digest chain's head

Contract: paths are pure (building a ``LocalLake`` touches nothing); builders create what their
adapter creates, nothing more, except ``checkpoints()``, which moves an earlier version's checkpoints.
``create()`` makes the directory and its marker; ``is_lake()`` says whether a directory is a lake: its
marker, or (a lake made before the marker existed) one of the entries of ``LAYOUT``. Reading commands
refuse a directory that is not one, so a mistyped path is an error, not an empty answer.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from auditlake.archive.locks import LocalLocks
from auditlake.events.leases import LocalLeases
from auditlake.ingest.checkpoints import LocalCheckpoints
from auditlake.jsonio import dumps
from auditlake.landing import Landing
from auditlake.stores import Store
from auditlake.stores.local import LocalStore
from auditlake.trust.alerts import (
    Correlations,
    FindingPages,
    LocalCounter,
    LocalPageClaims,
    Notify,
    forbidden_thresholds,
)
from auditlake.trust.ledger import LocalLedger

if TYPE_CHECKING:
    from auditlake.archive.hourly import LocalCompactedHours
    from auditlake.detect.ir import Correlation, RuleSet
    from auditlake.detect.matches import Detector
    from auditlake.trust.digest import LocalChainHead, LocalSigner

log = logging.getLogger(__name__)

# Where the previous layout kept backfill checkpoints, relative to the lake; once they are all moved,
# MOVED in it says so and it is not read again.
OLD_CHECKPOINTS = "checkpoints"
MOVED = "MOVED"
MARKER = ".auditlake-lake"
# What a lake made before MARKER existed holds at least one of (each made by the first write there).
LAYOUT = ("raw", "quarantine", "archive", "state", "tokens", "clusters", "alerts", "inputs", ".auditlake-demo")


@dataclass(frozen=True)
class LocalLake:
    root: Path

    # ------------------------------------------------------------ paths

    @property
    def archive_dir(self) -> Path:
        return self.root / "archive"

    @property
    def tokens_dir(self) -> Path:
        return self.root / "tokens"

    def token_file(self, cluster: str) -> Path:
        return self.tokens_dir / f"{cluster}.token"

    def cluster_dir(self, cluster: str) -> Path:
        """What ``cluster add --kind-config/--kubeadm-patch`` writes for that cluster's API server."""
        return self.root / "clusters" / cluster

    @property
    def alerts_dir(self) -> Path:
        return self.root / "alerts"

    @property
    def inputs_dir(self) -> Path:
        return self.root / "inputs"

    @property
    def marker_file(self) -> Path:
        return self.root / MARKER

    @property
    def demo_marker_file(self) -> Path:
        return self.root / ".auditlake-demo"

    @property
    def locks_dir(self) -> Path:
        return self.root / ".locks"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def checkpoints_dir(self) -> Path:
        return self.state_dir / "checkpoints"

    @property
    def old_checkpoints_dir(self) -> Path:
        return self.root / OLD_CHECKPOINTS

    @property
    def poller_dir(self) -> Path:
        return self.state_dir / "poller"

    @property
    def ledger_dir(self) -> Path:
        return self.state_dir / "ledger"

    @property
    def compacted_dir(self) -> Path:
        return self.state_dir / "compacted"

    @property
    def alert_counter_file(self) -> Path:
        return self.state_dir / "alerts.json"

    @property
    def page_claims_file(self) -> Path:
        return self.state_dir / "pages.json"

    @property
    def digest_key_file(self) -> Path:
        return self.state_dir / "digest-key.pem"

    @property
    def digest_head_file(self) -> Path:
        return self.state_dir / "digest-head.json"

    # ------------------------------------------------------------ the lake itself

    def is_lake(self) -> bool:
        """A directory with the marker, or with an entry of an earlier version's ``LAYOUT``."""
        if not self.root.is_dir():
            return False
        return self.marker_file.is_file() or any((self.root / name).exists() for name in LAYOUT)

    def create(self) -> None:
        """Make the lake's directory (and its parents) and the marker; nothing when both exist.
        OSError (PermissionError, NotADirectoryError, a read-only file system) when it cannot be
        made or written: probed by writing the marker, so a lake that cannot be written fails here,
        before a command has read its input."""
        self.root.mkdir(parents=True, exist_ok=True)
        if not os.access(self.root, os.W_OK | os.X_OK):  # also False on a read-only file system
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self.root))
        if not self.marker_file.is_file():
            # Written in place (not create-only): two commands creating one lake write the same text.
            self.marker_file.write_text("an auditlake lake (see auditlake --help)\n", encoding="utf-8")

    # ------------------------------------------------------------ adapters

    def store(self) -> LocalStore:
        """The raw landing's store (keys raw/..., quarantine/...)."""
        return LocalStore(self.root)

    def landing(self, kind: str = "audit") -> Landing:
        return Landing(self.store(), kind)

    def archive(self) -> LocalStore:
        return LocalStore(self.archive_dir)

    def archives(self) -> dict[str, Store]:
        """The compactor's and the digests' archives by kind: locally all kinds share one (each
        under its own prefix: audit/, events/, findings/)."""
        archive = self.archive()
        return {"audit": archive, "events": archive, "findings": archive}

    def checkpoints(self) -> LocalCheckpoints:
        self._move_old_checkpoints()
        return LocalCheckpoints(self.checkpoints_dir)

    def _move_old_checkpoints(self) -> None:
        # A lake made by an earlier version keeps backfill checkpoints in LAKE/checkpoints (names hold
        # "/": backfill/<cluster>.json). Each is moved under its own lock, the one the earlier version's
        # LocalCheckpoints takes, so neither a run of that version nor a second run of this one (two
        # backfills started together) sees it half moved: linked to the new place, then unlinked (a
        # link fails if the new place has one, where a rename would replace it). Lock files stay: one
        # may be held or waited on, and unlinking it would let two runs hold "the same" lock.
        old = self.old_checkpoints_dir
        if not old.is_dir() or (old / MOVED).exists():
            return
        for path in sorted(old.rglob("*.json")):
            self._move_old_checkpoint(path, self.checkpoints_dir / path.relative_to(old))
        if not any(old.rglob("*.json")):  # all moved: never read again
            (old / MOVED).write_text(
                "Backfill checkpoints moved to state/checkpoints/; the lock files here are unused.\n"
            )

    def _move_old_checkpoint(self, path: Path, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        with LocalCheckpoints(self.old_checkpoints_dir).locked(path):
            try:
                os.link(path, target)
            except FileNotFoundError:  # another run moved it while this one waited for its lock
                return
            except FileExistsError:
                # Already there: the new place is where this version saves, so its checkpoint wins,
                # unless it is this very file (a run that stopped between link and unlink).
                with contextlib.suppress(FileNotFoundError):
                    if not os.path.samefile(path, target):
                        superseded = path.with_name(path.name + ".superseded")
                        os.replace(path, superseded)
                        log.warning("%s: %s wins; the old checkpoint is kept as %s", path, target, superseded)
                        return
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def leases(self) -> LocalLeases:
        """The Events poller's checkpoints and leases."""
        return LocalLeases(self.poller_dir)

    def locks(self) -> LocalLocks:
        return LocalLocks(self.locks_dir)

    def compacted_hours(self) -> LocalCompactedHours:
        from auditlake.archive.hourly import LocalCompactedHours  # beside the compactor: pyarrow

        return LocalCompactedHours(self.compacted_dir)

    def ledger(self) -> LocalLedger:
        return LocalLedger(self.ledger_dir)

    def chain_head(self) -> LocalChainHead:
        from auditlake.trust.digest import LocalChainHead  # the digest module only for its commands

        return LocalChainHead(self.digest_head_file)

    def signer(self, *, create: bool = True) -> LocalSigner:
        """The digest signing key; ``create=False`` raises DigestError when there is none (verifying
        never makes one)."""
        from auditlake.trust.digest import LocalSigner

        return LocalSigner(self.digest_key_file, create=create)

    def detector(self, dirs: Sequence[Path] = (), *, builtin: bool = True) -> tuple[Detector, RuleSet]:
        """The rules local ingest evaluates (``auditlake ingest/serve/poll --rules``): the built-in set
        (unless ``builtin`` is False) and the Sigma files under ``dirs``, parsed with pySigma and
        compiled once; the rule set is returned too, for its counts, correlations and load ``problems``."""
        from auditlake.detect.engine import RuleEngine
        from auditlake.detect.sigma import load_rules  # pySigma: only for commands that evaluate rules

        rules = load_rules(list(dirs), builtin=builtin)
        return RuleEngine(rules), rules

    def notifier(self, also: Notify | None = None) -> Notify:
        """Alerts as JSON lines under ``alerts/``, one file a day (of the burst's window, or the
        finding's event time); ``also`` is told too (serve prints them)."""
        folder = self.alerts_dir

        def notify(alert: dict[str, Any]) -> None:
            folder.mkdir(parents=True, exist_ok=True)
            day = str(alert.get("window_start") or alert.get("at") or "unknown")[:10]
            with (folder / f"{day}.jsonl").open("ab") as handle:
                handle.write(dumps(alert) + b"\n")
            if also is not None:
                also(alert)

        return notify

    def bursts(self, threshold: int = 10, secrets_threshold: int = 0,
               also: Callable[[dict[str, Any]], None] | None = None, *,
               correlations: Sequence[Correlation] | None = None) -> Correlations:  # fmt: skip
        """Correlation alerting (the 403 bursts with the stack's two thresholds) with the counters in
        ``state/alerts.json`` and alerts under ``alerts/``; ``correlations``: the rules the command
        loaded, else the built-in ones."""
        if correlations is None:
            from auditlake.detect.rulesets import builtin_rules

            correlations = builtin_rules().correlations
        return Correlations(
            LocalCounter(self.alert_counter_file), self.notifier(also), correlations,
            thresholds=forbidden_thresholds(threshold, secrets_threshold),
        )  # fmt: skip

    def finding_pages(self, level: str = "high", dedup_minutes: int = 60, also: Notify | None = None) -> FindingPages:
        """Findings at or above ``level`` paged (to ``alerts/``) once per object per ``dedup_minutes``."""
        claims = LocalPageClaims(self.page_claims_file)
        return FindingPages(claims, self.notifier(also), level=level, dedup_minutes=dedup_minutes)
