"""The report's aggregate queries: ``report/sql/<name>.sql``, Athena SQL in the named queries' format.

Each file starts with comment lines (what it answers), ``-- params:`` (its own parameters, ``name`` or
``name=default``) and ``-- placeholders:`` (the parameter each ``?`` takes, in order), and takes
``since``/``until``/``cluster`` like every named query. They load as ``query.named.NamedQuery``, so
binding (``NamedQuery.bind``: defaults, whole numbers, the time window) and running (``LocalEngine``,
``AthenaEngine``) are the named queries' own.
"""

from __future__ import annotations

from importlib import resources

from auditlake.query.named import NamedQuery, QueryError
from auditlake.query.named import parse as named_parse

# The named queries (assets/athena) the report runs as they are.
NAMED = ("identity_timeline", "object_history", "forbidden_bursts", "coverage_gaps")


def names() -> list[str]:
    folder = resources.files("auditlake.report").joinpath("sql")
    return sorted(item.name.removesuffix(".sql") for item in folder.iterdir() if item.name.endswith(".sql"))


def load(name: str) -> NamedQuery:
    """The report query ``name``; QueryError for an unknown one or a file whose header and ``?`` disagree."""
    if name not in names():
        raise QueryError(f"no report query {name!r}; known: {', '.join(names())}")
    text = resources.files("auditlake.report").joinpath("sql", f"{name}.sql").read_text(encoding="utf-8")
    return parse(name, text)


def parse(name: str, text: str) -> NamedQuery:
    """A query file as query.named reads one (its grammar has one reader: named.parse)."""
    return named_parse(name, text)
