"""The named security queries, one Athena SQL file each, run on Athena or, locally, on DuckDB.

A file starts with comment lines: what it answers, ``-- params:`` (its own parameters, ``name``
(required), ``name=default``, or ``name=``: optional, the empty default the SQL reads as "any") and
``-- placeholders:`` (which parameter each ``?`` takes, in order); comments after them are the SQL's. Every
query also takes ``since`` and ``until`` (ISO 8601, default: the last 24 hours) and ``cluster``
(default: all). Values are bound, never spliced into the SQL: DuckDB binds them natively; Athena
receives them as execution parameters (SQL literals, quoted here).

A window whose ``since`` is after its ``until``, a parameter a query does not take (with the closest it
does, difflib) and SQL an engine refuses are QueryError, one line naming the fix. ``held()`` of an
engine is what the archive holds (first and last partition day per data class), for the line a query
without rows prints.
"""

from __future__ import annotations

import difflib
import itertools
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from auditlake import timestamps
from auditlake.model import ARCHIVE_KINDS, ArchiveKind
from auditlake.query import live

COMMON = ("since", "until", "cluster")
_DUCKDB_TYPES = {"string": "VARCHAR", "json": "VARCHAR", "int32": "INTEGER", "timestamp": "TIMESTAMP",
                 "list<string>": "VARCHAR[]"}  # fmt: skip


class QueryError(ValueError):
    pass


@dataclass(frozen=True)
class NamedQuery:
    name: str
    description: str
    params: dict[str, str | None]  # own parameters -> default (None: required)
    placeholders: tuple[str, ...]
    sql: str  # the whole file, as Athena stores it

    def bind(self, given: Mapping[str, str], now: datetime | None = None) -> list[Any]:
        """Values for the placeholders, in order; QueryError names what is missing or malformed."""
        unknown = sorted(set(given) - set(self.params) - set(COMMON))
        if unknown:
            raise QueryError(self.unknown_parameter(unknown[0]))
        since, until = time_bounds(given.get("since"), given.get("until"), now or datetime.now(UTC))
        values: dict[str, Any] = {"since": since, "until": until, "cluster": given.get("cluster", "")}
        for name, default in self.params.items():
            value = given.get(name, default)
            if value is None:
                raise QueryError(f"{self.name} needs --param {name}=...")
            if default is not None and default.isdigit():
                if not value.isdigit():
                    raise QueryError(f"{name} must be a whole number")
                values[name] = int(value)
            else:
                values[name] = value
        return [values[name] for name in self.placeholders]

    def parameters(self) -> list[str]:
        """Every parameter it takes: its own, then ``since``, ``until`` and ``cluster``."""
        return [*self.params, *COMMON]

    def unknown_parameter(self, given: str) -> str:
        """What to say about a parameter it does not take: the closest one it does, and all of them."""
        valid = self.parameters()
        close = difflib.get_close_matches(given, valid, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        return f"{self.name} has no parameter {given!r} ({hint}it takes: {', '.join(valid)})"

    def usage(self) -> str:
        """Its parameters as ``--help`` lists them: ``name`` (required), ``threshold=10``, ``name=''``
        (optional, empty: all)."""
        own = [key if value is None else f"{key}={value or chr(39) * 2}" for key, value in self.params.items()]
        return ", ".join(own) or "-"


def time_bounds(since: str | None, until: str | None, now: datetime) -> tuple[str, str]:
    """``since`` and ``until`` as every query takes them (``auditlake query``, ``findings``, ``hunt``):
    ISO 8601 or a duration before ``now`` (``90d``); default the last 24 hours. QueryError otherwise."""
    start = _instant(since, now - timedelta(hours=24), "since", now)
    end = _instant(until, now, "until", now)
    # Both are written in one fixed-width UTC form: as strings they compare as the instants do.
    if start > end:
        raise QueryError(f"since {start} is after until {end} (swap them, or give since=7d for the last 7 days)")
    return start, end


def _instant(value: str | None, default: datetime, name: str, now: datetime) -> str:
    """ISO 8601 UTC in the form both engines parse: 2026-11-21T05:00:00.000Z."""
    moment = default
    if value:
        try:
            moment = timestamps.instant(value, now)
        except ValueError:
            raise QueryError(f"{name}: not an ISO 8601 time or a duration like 7d: {value!r}") from None
    return timestamps.format_millis(moment)


_HEADER = re.compile(r"^-- (params|placeholders):")


def _header(text: str, key: str) -> str | None:
    match = re.search(rf"^-- {key}:(.*)$", text, re.MULTILINE)
    return match.group(1).strip() if match else None


def load(name: str) -> NamedQuery:
    """The named query ``name``; QueryError naming the closest one and all of them when there is none."""
    path = resources.files("auditlake").joinpath("assets", "athena", f"{name}.sql")
    if not re.fullmatch(r"[a-z_]+", name) or not path.is_file():
        known = names()
        close = difflib.get_close_matches(name.lower().replace("-", "_"), known, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise QueryError(f"no named query {name!r} ({hint}known: {', '.join(known)})")
    return parse(name, path.read_text(encoding="utf-8"))


def parse(name: str, text: str) -> NamedQuery:
    """A query file (the module's header grammar) as a NamedQuery; QueryError when its ``?`` and its
    ``-- placeholders:`` disagree. Also the report's queries' reader (report/queries.py)."""
    # The description is the leading comment block (comments inside the SQL are the SQL's own).
    leading = itertools.takewhile(lambda line: line.startswith("--"), text.splitlines())
    description = " ".join(line[3:].strip() for line in leading if not _HEADER.match(line))
    params: dict[str, str | None] = {}
    for item in filter(None, (p.strip() for p in (_header(text, "params") or "").split(","))):
        key, has_default, default = item.partition("=")
        # ``name=`` is optional with the empty default, which the SQL reads as "any"
        params[key.strip()] = default.strip() if has_default else None
    placeholders = tuple((_header(text, "placeholders") or "").split())
    found = placeholder_count(text)
    if len(placeholders) != found:
        raise QueryError(f"{name}: {found} placeholders but {len(placeholders)} declared")
    return NamedQuery(name, description, params, placeholders, text)


def placeholder_count(sql: str) -> int:
    """``?`` parameters as Athena and DuckDB see them (a ``?`` inside a string literal is not one)."""
    import sqlglot
    from sqlglot import exp

    return sum(1 for _ in sqlglot.parse_one(sql, read="trino").find_all(exp.Placeholder))


def names() -> list[str]:
    folder = resources.files("auditlake").joinpath("assets", "athena")
    return sorted(item.name.removesuffix(".sql") for item in folder.iterdir() if item.name.endswith(".sql"))


# ---------------------------------------------------------------- engines


@dataclass
class Result:
    columns: list[str]
    rows: list[tuple[Any, ...]]


# The data classes a "this lake holds" line names, in that order (findings are not queried by name).
HELD_KINDS = ("audit", "events")
_DAY = re.compile(r"dt=(\d{4}-\d{2}-\d{2})/")


def held_days(keys: Iterable[str]) -> tuple[str, str] | None:
    """The first and last ``dt`` partition day among archive keys (``audit/dt=2026-11-20/hour=9/...``),
    or None when there is none: what a lake holds, read from partition names, never from the data."""
    days = sorted({match.group(1) for key in keys if (match := _DAY.search(key))})
    return (days[0], days[-1]) if days else None


class LocalEngine:
    """DuckDB over the local lake: per kind (audit, events, findings) the view ``<kind>`` over the
    archive's Parquet files, ``<kind>_raw`` over the raw landing's objects of the last landing hours,
    and ``<kind>_live`` (query/live.py: the archive and the raw rows it does not hold yet, each once),
    which the named queries read.

    It reads exactly the partition files the archive lists (``LocalStore.list``: regular files,
    no temp files, never through a symlink), the files ``verify`` accounts for, never a glob; and
    the raw objects ``landing.parse_raw_key`` knows that landed in the live view's hours. Without a
    ``landing`` (the lake's root, where raw/ is) the raw views are empty: ``<kind>_live`` is the
    archive alone. ``now`` only chooses which raw objects are read (the view filters by the query's
    own clock, as Athena does)."""

    def __init__(self, archive: Path, landing: Path | None = None, *, now: datetime | None = None) -> None:
        import duckdb  # CLI-only dependency

        self.archive = archive
        self.connection = duckdb.connect()
        self.connection.execute("SET TimeZone = 'UTC'")
        for kind in ARCHIVE_KINDS.values():
            self.connection.execute(self._view(kind, archive))
            self.connection.execute(self._raw_view(kind, landing, now or datetime.now(UTC)))
            self.connection.execute(self._live_view(kind))

    @staticmethod
    def files(kind: ArchiveKind, archive: Path) -> list[str]:
        """The archive's Parquet files of ``kind``: its partitions' objects, as absolute paths."""
        from auditlake.stores.local import LocalStore

        store = LocalStore(archive)
        partition = re.compile(rf"{re.escape(kind.name)}/dt=[^/]+/hour=[^/]+/[^/]+\.parquet")
        return [str(store.root / key) for key in store.list(f"{kind.name}/") if partition.fullmatch(key)]

    @staticmethod
    def raw_files(kind: ArchiveKind, landing: Path, now: datetime) -> dict[str, list[str]]:
        """The raw objects of ``kind`` that landed in the live view's hours (the current one, live.RAW_HOURS
        before and, for a clock ahead, the next, as the raw tables project them), as absolute paths by
        landing hour (``yyyy/mm/dd/hh``). Only those hours' prefixes are listed: a local lake keeps its raw
        landing for good."""
        from auditlake.landing import hour_path, parse_raw_key, raw_hour_prefix
        from auditlake.stores.local import LocalStore

        store = LocalStore(landing)
        current = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        hours: dict[str, list[str]] = {}
        for back in range(-1, live.RAW_HOURS + 1):
            hour = current - timedelta(hours=back)
            # What the compactor reads of the hour: raw keys (parse_raw_key), nothing else under the prefix.
            keys = store.list(raw_hour_prefix(kind.name, hour))
            files = [str(store.root / key) for key in keys if parse_raw_key(key) is not None]
            if files:
                hours[hour_path(hour)] = files
        return hours

    @staticmethod
    def _view(kind: ArchiveKind, archive: Path) -> str:
        files = LocalEngine.files(kind, archive)
        if files:
            source = (
                f"read_parquet([{_paths(files)}], hive_partitioning = true, union_by_name = true, "
                "hive_types = {'dt': VARCHAR, 'hour': INTEGER})"
            )
        else:  # nothing archived yet: the same columns, no rows
            columns = ", ".join(f"NULL::{_DUCKDB_TYPES[t]} AS {n}" for n, t in kind.columns)
            source = f"(SELECT {columns}, NULL::VARCHAR AS dt, NULL::INTEGER AS hour WHERE false)"
        return f"CREATE VIEW {kind.name} AS SELECT * FROM {source}"  # noqa: S608 - our own columns and escaped paths

    @staticmethod
    def _raw_view(kind: ArchiveKind, landing: Path | None, now: datetime) -> str:
        """``<kind>_raw`` as the Glue table declares it (live.raw_columns, then ``landed``). DuckDB reads
        zstd NDJSON with the explicit column types; a line it cannot read is skipped (ignore_errors),
        as the compactor quarantines it: the view never fails on one bad line."""
        columns = live.raw_columns(kind)
        hours = LocalEngine.raw_files(kind, landing, now) if landing is not None else {}
        types = "{" + ", ".join(f"'{n}': '{_DUCKDB_TYPES[t]}'" for n, t in columns) + "}"
        names = ", ".join(f'"{n}"' for n, _ in columns)
        read = "format = 'newline_delimited', compression = 'zstd', ignore_errors = true"
        # landed is digits and slashes (parse_raw_key), the paths are escaped, the rest is the model's
        parts = [
            f"SELECT {names}, '{landed}' AS {live.LANDED} "  # noqa: S608
            f"FROM read_json([{_paths(files)}], {read}, columns = {types})"
            for landed, files in sorted(hours.items())
        ]
        if not parts:  # nothing landed in the live hours: the same columns, no rows
            empty = ", ".join(f'NULL::{_DUCKDB_TYPES[t]} AS "{n}"' for n, t in columns)
            parts = [f"SELECT {empty}, NULL::VARCHAR AS {live.LANDED} WHERE false"]
        return f"CREATE VIEW {live.raw_table(kind)} AS " + " UNION ALL ".join(parts)

    @staticmethod
    def _live_view(kind: ArchiveKind) -> str:
        import sqlglot

        select = sqlglot.transpile(live.view_sql(kind), read="trino", write="duckdb")[0]
        return f"CREATE VIEW {live.live_view(kind)} AS {select}"

    def run(self, sql: str, values: Sequence[Any] = ()) -> Result:
        """Rows of ``sql``; QueryError (one line) when it does not parse or DuckDB refuses it."""
        import duckdb
        import sqlglot
        from sqlglot.errors import SqlglotError

        try:
            statement = sqlglot.transpile(sql, read="trino", write="duckdb")[0]
            cursor = self.connection.execute(statement, list(values))
        except (SqlglotError, duckdb.Error) as exc:
            raise QueryError(sql_error(str(exc))) from None
        columns = [column[0] for column in cursor.description or []]
        return Result(columns, cursor.fetchall())

    def held(self) -> dict[str, tuple[str, str] | None]:
        """Per data class (HELD_KINDS) the first and last day the archive holds, from its partitions'
        names (the files the views read): no data is read."""
        from auditlake.stores.local import LocalStore

        store = LocalStore(self.archive)
        return {kind: held_days(store.list(f"{kind}/")) for kind in HELD_KINDS}


class AthenaEngine:
    """A deployed stack's workgroup; results are fetched when the query succeeds."""

    def __init__(
        self,
        client: Any,
        workgroup: str,
        database: str,
        *,
        poll_seconds: float = 1.0,
        glue: Any | None = None,
        s3: Any | None = None,
    ) -> None:
        self.client = client
        self.workgroup = workgroup
        self.database = database
        self.poll_seconds = poll_seconds
        self.glue = glue  # with s3: what the archive holds (held), for the "0 rows" line
        self.s3 = s3

    def held(self) -> dict[str, tuple[str, str] | None] | None:
        """Per data class the first and last day the archive holds: the tables' ``dt=`` prefixes,
        listed in S3 (one LIST a thousand days; Athena is not asked: a query costs 10 MB at least and
        the tables project their partitions, so Glue has none to list). None when unknown (no clients,
        or the caller may not read the table or list its bucket: a hint is not worth an error)."""
        if self.glue is None or self.s3 is None:
            return None
        from botocore.exceptions import BotoCoreError, ClientError

        held: dict[str, tuple[str, str] | None] = {}
        try:
            for kind in HELD_KINDS:
                table = self.glue.get_table(DatabaseName=self.database, Name=kind)["Table"]
                bucket, _, prefix = table["StorageDescriptor"]["Location"].removeprefix("s3://").partition("/")
                prefix = prefix.rstrip("/") + "/" if prefix else ""
                days: list[str] = []
                for page in self.s3.get_paginator("list_objects_v2").paginate(
                    Bucket=bucket, Prefix=prefix + "dt=", Delimiter="/"
                ):
                    days += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
                held[kind] = held_days(days)
        except (BotoCoreError, ClientError):
            return None
        return held

    def run(self, sql: str, values: Sequence[Any] = ()) -> Result:
        request: dict[str, Any] = {
            "QueryString": sql,
            "WorkGroup": self.workgroup,
            "QueryExecutionContext": {"Database": self.database},
        }
        if values:
            request["ExecutionParameters"] = [_literal(v) for v in values]
        query_id = self.client.start_query_execution(**request)["QueryExecutionId"]
        while True:
            status = self.client.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]["Status"]
            if status["State"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
                break
            time.sleep(self.poll_seconds)
        if status["State"] != "SUCCEEDED":
            reason = status.get("StateChangeReason", "")
            raise QueryError(f"Athena query {query_id} {status['State']}: " + sql_error(reason))
        columns: list[str] = []
        rows: list[tuple[Any, ...]] = []
        for page in self.client.get_paginator("get_query_results").paginate(QueryExecutionId=query_id):
            if not columns:
                columns = [c["Name"] for c in page["ResultSet"]["ResultSetMetadata"]["ColumnInfo"]]
            for row in page["ResultSet"]["Rows"]:
                rows.append(tuple(cell.get("VarCharValue") for cell in row["Data"]))
        if rows and list(rows[0]) == columns:  # the first row of the first page is the header
            rows = rows[1:]
        return Result(columns, rows)


def sql_error(message: str) -> str:
    """An engine's refusal as one line; an unknown column or table names the command that lists
    the columns (both engines understand ``DESCRIBE audit``)."""
    # one line: no ANSI styling (sqlglot underlines the culprit), no echo of the statement
    line = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", message).split())
    line = re.split(r" LINE \d+:", line, maxsplit=1)[0]
    lowered = line.lower()
    if "column" in lowered and any(word in lowered for word in ("not found", "cannot be resolved", "does not")):
        return f"{line} (see the columns: auditlake query --sql 'DESCRIBE audit', or events, findings)"
    if "table" in lowered and any(word in lowered for word in ("does not exist", "not found")):
        return f"{line} (the tables: audit, events, findings; their _live views add the newest raw rows)"
    if any(word in lowered for word in ("invalid expression", "parser error", "syntax error", "mismatched input")):
        return f"{line} (write it in Athena's dialect, Trino SQL)"
    return line


def _paths(paths: Sequence[str]) -> str:
    """A DuckDB list literal of file paths (quotes doubled)."""
    return ", ".join("'" + path.replace("'", "''") + "'" for path in paths)


def _literal(value: Any) -> str:
    """An execution parameter is inserted as SQL: numbers as they are, text quoted (quotes doubled)."""
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"
