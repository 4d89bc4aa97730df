"""Local-directory adapter: the embedded lake. Writes are atomic (temp file, fsync, rename).

Only regular files are objects: a symlink, a FIFO, a device or a directory where a file is expected
is never listed, read or dated (``irregular`` names them, for ``verify``), so no one can make the
archive read data from outside it or hang a reader. Temp files (``.tmp-*``) are never listed.
"""

from __future__ import annotations

import functools
import os
import stat
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from auditlake.stores import AlreadyExists, StoreError

TEMP_PREFIX = ".tmp-"
TEMP_GRACE = timedelta(minutes=5)  # a temp file older than this is not a write in progress: a leftover


class LocalStore:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()

    def _path(self, key: str) -> Path:
        # Lexical check (no syscalls: this runs for every object): no absolute keys, no "..".
        if key.startswith("/") or ".." in key.split("/") or "\0" in key:
            raise StoreError(f"key escapes the lake: {key!r}")
        return self.root / key

    def put(
        self, key: str, data: bytes, content_type: str = "application/octet-stream", *, create_only: bool = False
    ) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                if create_only:
                    os.link(tmp, path)  # atomic, and fails if the name is taken
                    os.unlink(tmp)
                else:
                    os.replace(tmp, path)
            except FileExistsError:
                Path(tmp).unlink(missing_ok=True)
                raise AlreadyExists(f"{key} exists") from None
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise StoreError(f"cannot write {key}: {exc}") from exc

    def _regular(self, key: str) -> int:
        """An fd of ``key`` opened for reading, only if it is a regular file (never through a final
        symlink; a FIFO is opened without blocking and refused)."""
        fd = os.open(self._path(key), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise StoreError(f"cannot read {key}: not a regular file")
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def open(self, key: str) -> BinaryIO:
        try:
            return os.fdopen(self._regular(key), "rb")
        except OSError as exc:
            raise StoreError(f"cannot read {key}: {exc}") from exc

    def get(self, key: str) -> bytes:
        try:
            with os.fdopen(self._regular(key), "rb") as handle:
                return handle.read()
        except OSError as exc:
            raise StoreError(f"cannot read {key}: {exc}") from exc

    def _stat(self, key: str) -> os.stat_result | None:
        """The file's own status (a symlink's, not its target's); None when it is not a regular file."""
        try:
            status = os.lstat(self._path(key))
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"cannot read {key}: {exc}") from exc
        return status if stat.S_ISREG(status.st_mode) else None

    def size(self, key: str) -> int | None:
        status = self._stat(key)
        return None if status is None else status.st_size

    def modified(self, key: str) -> datetime | None:
        # ctime, not mtime: `touch -d` sets mtime to anything; ctime follows the clock.
        status = self._stat(key)
        return None if status is None else datetime.fromtimestamp(status.st_ctime + _file_clock_offset(), UTC)

    def list(self, prefix: str) -> Iterator[str]:
        """Regular files only, never through a symlinked directory; no temp files."""
        for key, kind, _ in self._walk(prefix):
            if kind == "file":
                yield key

    def irregular(self, prefix: str, now: datetime) -> Iterator[tuple[str, str]]:
        """What under ``prefix`` is not an object and should not be there, as (key, why): anything
        not a regular file or a directory (symlinks, FIFOs, devices, sockets), a directory named
        like a file (``*.parquet``, ``*.json``), and a temp file older than ``TEMP_GRACE`` (by its
        ctime: a write in progress is younger)."""
        for key, kind, status in self._walk(prefix):
            if kind == "temp" and status is not None:
                written = datetime.fromtimestamp(status.st_ctime + _file_clock_offset(), UTC)
                if now - written > TEMP_GRACE:
                    yield key, f"leftover temp file, written at {written:%Y-%m-%dT%H:%M:%SZ}"
            elif kind != "file":
                yield key, kind

    def _walk(self, prefix: str) -> Iterator[tuple[str, str, os.stat_result | None]]:
        """Every entry under ``prefix`` (by lstat, never following a symlink), sorted: (key, kind,
        status), kind "file", "temp", or what else it is."""
        base = self._path(prefix.rsplit("/", 1)[0]) if "/" in prefix else self.root
        try:
            if not stat.S_ISDIR(os.lstat(base).st_mode):  # the folder itself a symlink or a file
                yield base.relative_to(self.root).as_posix(), "not a directory (a symlink?)", None
                return
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StoreError(f"cannot list {prefix}: {exc}") from exc
        found: list[tuple[str, str, os.stat_result | None]] = []
        stack = [base]
        while stack:
            directory = stack.pop()
            try:
                entries = list(os.scandir(directory))
            except OSError as exc:
                raise StoreError(f"cannot list {directory}: {exc}") from exc
            for entry in entries:
                key = Path(entry.path).relative_to(self.root).as_posix()
                if not (key.startswith(prefix) or prefix.startswith(key + "/")):
                    continue
                # d_type from the directory listing: no stat per file (this lists whole partitions).
                if entry.is_dir(follow_symlinks=False):
                    if entry.name.endswith((".parquet", ".json")) and key.startswith(prefix):
                        found.append((key, "a directory named like a file", None))
                    stack.append(Path(entry.path))
                elif not key.startswith(prefix):
                    continue
                elif entry.is_file(follow_symlinks=False):
                    if entry.name.startswith(TEMP_PREFIX):
                        try:
                            found.append((key, "temp", entry.stat(follow_symlinks=False)))
                        except FileNotFoundError:  # a write that just finished
                            continue
                    else:
                        found.append((key, "file", None))
                elif entry.is_symlink():
                    found.append((key, "a symlink, not a file", None))
                else:
                    found.append((key, "not a regular file (a FIFO, device or socket)", None))
        yield from sorted(found, key=lambda item: item[0])


@functools.cache
def _file_clock_offset() -> float:
    """This process's clock minus the clock that dates files, when they differ by over a second
    (libfaketime moves the first and not the second): file times are given on the caller's clock."""
    with tempfile.TemporaryFile() as probe:
        offset = time.time() - os.fstat(probe.fileno()).st_ctime
    return offset if abs(offset) > 1 else 0.0
