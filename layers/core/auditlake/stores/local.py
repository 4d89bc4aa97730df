"""Local-directory adapter: the embedded lake. Writes are atomic (temp file, fsync, rename)."""

from __future__ import annotations

import functools
import os
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from . import AlreadyExists, StoreError


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
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
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

    def open(self, key: str) -> BinaryIO:
        try:
            return self._path(key).open("rb")
        except OSError as exc:
            raise StoreError(f"cannot read {key}: {exc}") from exc

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except OSError as exc:
            raise StoreError(f"cannot read {key}: {exc}") from exc

    def size(self, key: str) -> int | None:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"cannot read {key}: {exc}") from exc

    def modified(self, key: str) -> datetime | None:
        # ctime, not mtime: `touch -d` sets mtime to anything; ctime follows the clock.
        try:
            return datetime.fromtimestamp(self._path(key).stat().st_ctime + _file_clock_offset(), UTC)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"cannot read {key}: {exc}") from exc

    def list(self, prefix: str) -> Iterator[str]:
        base = self._path(prefix.rsplit("/", 1)[0]) if "/" in prefix else self.root
        if not base.exists():
            return
        keys = []
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                if name.startswith(".tmp-"):
                    continue
                key = Path(dirpath, name).relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        yield from sorted(keys)


@functools.cache
def _file_clock_offset() -> float:
    """This process's clock minus the clock that dates files, when they differ by over a second
    (libfaketime moves the first and not the second): file times are given on the caller's clock."""
    with tempfile.TemporaryFile() as probe:
        offset = time.time() - os.fstat(probe.fileno()).st_ctime
    return offset if abs(offset) > 1 else 0.0
