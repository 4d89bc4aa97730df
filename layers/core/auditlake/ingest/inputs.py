"""Input files as users hand them to ``ingest`` and ``replay``: compression, document shape and kind.

Contract:

- ``open_input``/``read_input``: a file's bytes, gunzipped when it starts with gzip's magic bytes
  (``1f 8b``: kube-apiserver's ``--audit-log-compress`` and ``logrotate`` write such files under
  any name), never by its name. ``InputFile.tell()`` is the position in the file on disk (the
  compressed bytes read), which is what a progress bar over the file's size wants. A gzip stream
  that is cut short or corrupt raises ``InputError`` naming the file, after what came before it.
- ``yaml_document``: one YAML document (``kubectl get events -o yaml``) as JSON values would read:
  timestamps stay strings (YAML would make them datetimes, which no Event field is).
- ``sniff_kind``: whether a file holds Kubernetes audit events or Kubernetes Events, decided on its
  first valid records (``kind``/``apiVersion``: ``audit.k8s.io`` Event or EventList vs ``v1`` or
  ``events.k8s.io`` Event, EventList or List); None when they do not say (ingest then proceeds
  as asked, and what does not fit is quarantined with its reason).
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from auditlake.jsonio import JSONError, loads

GZIP_MAGIC = b"\x1f\x8b"
AUDIT, EVENTS = "audit", "events"
SNIFF_RECORDS = 20  # the first valid records decide; a mixed file is told by its first ones
SNIFF_LINES = 200  # lines looked at in a JSON Lines file before giving up (a file of junk says nothing)
_GZIP_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)


class InputError(ValueError):
    """A file that cannot be read as it claims to be (a cut or corrupt gzip stream)."""


class InputFile:
    """A file opened for reading lines, gunzipped when it is gzip; ``tell`` is the on-disk position."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._raw = path.open("rb")
        self.compressed = self._raw.read(2) == GZIP_MAGIC
        self._raw.seek(0)
        self._stream: Any = gzip.GzipFile(fileobj=self._raw, mode="rb") if self.compressed else self._raw

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._stream
        except _GZIP_ERRORS as exc:
            raise InputError(f"{self.path}: gzip data is cut short or corrupt ({exc})") from None

    def read(self, size: int = -1) -> bytes:
        try:
            return bytes(self._stream.read(size))
        except _GZIP_ERRORS as exc:
            raise InputError(f"{self.path}: gzip data is cut short or corrupt ({exc})") from None

    def tell(self) -> int:
        return self._raw.tell()

    def close(self) -> None:
        if self.compressed:
            self._stream.close()
        self._raw.close()

    def __enter__(self) -> InputFile:
        return self

    def __exit__(
        self, _type: type[BaseException] | None, _value: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.close()


def open_input(path: Path) -> InputFile:
    """``path`` for reading, gunzipped when its first bytes are gzip's magic (see the module)."""
    return InputFile(path)


def read_input(path: Path) -> bytes:
    """The whole of ``path``, gunzipped when it is gzip."""
    with open_input(path) as handle:
        return handle.read()


class _JsonLikeLoader(yaml.SafeLoader):
    """SafeLoader without the timestamp resolver: Events' times stay the strings JSON would give."""


_JsonLikeLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def looks_like_yaml(data: bytes) -> bool:
    """A document that is not JSON: its first meaningful line neither opens a JSON value nor is empty."""
    for raw in data[:4096].splitlines():
        line = raw.strip()
        if not line or line.startswith(b"#"):
            continue
        return not line.startswith((b"{", b"["))
    return False


def yaml_document(data: bytes) -> Any:
    """A YAML file as JSON values: its one document, or, for several (``kubectl get events -w -o yaml``
    separates them by ``---``), a ``List`` of them (a List among them adds its items). InputError when
    it is not YAML (the reason and where, without the text)."""
    try:
        documents = [d for d in yaml.load_all(data, Loader=_JsonLikeLoader) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "unreadable"
        raise InputError(f"not JSON, JSON Lines or YAML{where}: {problem}") from None
    if len(documents) == 1:
        return documents[0]
    items: list[Any] = []
    for document in documents:
        listed = document.get("items") if isinstance(document, dict) else None
        items += listed if isinstance(listed, list) else [document]
    return {"apiVersion": "v1", "kind": "List", "items": items}


def kind_of_record(value: Any) -> str | None:
    """AUDIT, EVENTS or None for one JSON value (a record or a list of them)."""
    if not isinstance(value, dict):
        return None
    kind, api = value.get("kind"), value.get("apiVersion")
    group = api.split("/")[0] if isinstance(api, str) and "/" in api else api
    if group == "audit.k8s.io" and kind in ("Event", "EventList"):
        return AUDIT
    if kind == "Event" and (api == "v1" or group == "events.k8s.io"):
        return EVENTS
    if kind in ("EventList", "List") and isinstance(value.get("items"), list):
        found = [kind_of_record(item) for item in value["items"][:SNIFF_RECORDS]]
        told = [k for k in found if k is not None]
        if told:
            return max(set(told), key=told.count)
        return EVENTS if kind == "EventList" and (api == "v1" or group == "events.k8s.io") else None
    if kind is None and api is None:
        if "auditID" in value and "stage" in value:
            return AUDIT  # an audit event saved without its type (some log shippers drop it)
        if "involvedObject" in value or "regarding" in value:
            return EVENTS
    return None


@dataclass(frozen=True)
class Sniffed:
    """What a file's head says: the kind of its records (None: it does not say), and whether it is one
    JSON document over many lines (``kubectl -o json``, a pretty-printed EventList) rather than JSON Lines."""

    kind: str | None
    json_document: bool = False


def sniff_kind(path: Path) -> str | None:
    """AUDIT or EVENTS by the file's first valid records (see the module); None when they do not say."""
    return sniff(path).kind


def sniff(path: Path) -> Sniffed:
    """The kind of the file's first valid records, and its shape (see ``Sniffed``)."""
    with open_input(path) as handle:
        head: list[bytes] = []
        try:
            for number, line in enumerate(handle):
                head.append(line)
                if number >= SNIFF_LINES:
                    break
        except InputError:
            pass  # the head that was read decides; ingest reports the cut itself
    told: list[str] = []
    first = next((line.strip() for line in head if line.strip()), b"")
    if first.startswith(b"{") and _is_json(first):  # JSON Lines: never read whole (it may be gigabytes)
        for line in head:
            try:
                kind = kind_of_record(loads(line.strip()))
            except JSONError:
                continue
            if kind is not None:
                told.append(kind)
            if len(told) >= SNIFF_RECORDS:
                break
        return Sniffed(max(set(told), key=told.count) if told else None)
    if not first.startswith((b"{", b"[")) and not any(b"kind:" in line or b"apiVersion:" in line for line in head):
        return Sniffed(None)  # neither JSON nor a Kubernetes YAML document (a legacy text log): never read whole
    # One document over many lines (kubectl -o json/-o yaml, a saved EventList): read it whole.
    try:
        data = read_input(path)
    except InputError:
        return Sniffed(None)
    try:
        document = loads(data)
    except JSONError:
        if not looks_like_yaml(data):
            return Sniffed(None)
        try:
            document = yaml_document(data)
        except InputError:
            return Sniffed(None)
        return Sniffed(kind_of_record(document))
    return Sniffed(kind_of_record(document), json_document=True)


def _is_json(line: bytes) -> bool:
    try:
        loads(line)
    except JSONError:
        return False
    return True
