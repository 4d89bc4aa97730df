"""The ``<kind>_live`` views: the archive and the raw rows it does not hold yet, counted once.

The archive is written once per closed landing hour (archive/hourly.py: GRACE after the hour ends),
so the newest hour or so of events is only in the raw landing. ``<kind>_live`` answers a question
asked now with events minutes old:

    <kind>_live = <kind> (the archive, every partition)
                  UNION ALL
                  the raw rows of the last RAW_HOURS landing hours (and the current one) whose time
                  falls in the live window, one per key (the first ingested: ArchiveKind.first_of,
                  as the compactor keeps it), whose key the archive's partitions of the live window
                  do not hold.

Contract:
- ``view_sql(kind)`` is one Athena (Trino) SELECT over ``<kind>`` (the archive table) and
  ``<kind>_raw`` (``raw_columns(kind)``: the archive's columns with timestamps as RFC 3339 strings,
  plus ``landed``, the landing hour ``yyyy/MM/dd/HH``), giving the archive's columns, ``dt`` and
  ``hour``. Deployed it is the Glue view's text (tools/sync_template.py); locally LocalEngine runs
  it transpiled to DuckDB. One text, so both engines count the same.
- A row is never counted twice. A key's partition (dt, hour of its time column) does not depend on
  which copy is read, so a raw row is dropped when the archive holds its key in that partition; the
  anti-join reads only the live window's partitions (a few hours, pruned by dt/hour). A raw row whose
  time is older than the window (a backfill of old logs, landed in the last hours) is left out here
  and shows in the archive once its landing hour is compacted (within ~1.3 hours): the window is
  what keeps the anti-join small and the union exact.
- Raw timestamps are floored to milliseconds, as the compactor writes them (the archive's precision),
  so a row reads the same before and after compaction.
- The windows are relative to the query's own clock (``current_timestamp``).
"""

from __future__ import annotations

from auditlake.model import ArchiveKind

# Landing hours read from raw besides the current one. The hourly run compacts a landing hour GRACE
# (20 min) after it ends, so at most the current and the previous hour are uncompacted when it runs on
# time; 3 leaves two more hours for a late or retried run before rows would be missed.
RAW_HOURS = 3
# The live window for event times starts one hour before the oldest landing hour read: an event lands
# after it happened (webhook batches, the EKS subscription: seconds to minutes), so the events of those
# landing hours are in these partitions.
WINDOW_HOURS = RAW_HOURS + 1
LANDED = "landed"  # the raw tables' partition: the landing hour, yyyy/MM/dd/HH (landing.raw_hour_prefix)
LANDED_FORMAT = "yyyy/MM/dd/HH"  # Athena's date projection format of LANDED (Java DateTimeFormatter)

# Presto/Trino types of a view's columns (the view definition's JSON) and the Glue (Hive) ones.
PRESTO_TYPES = {"string": "varchar", "json": "varchar", "int32": "integer", "timestamp": "timestamp(3)",
                "list<string>": "array(varchar)"}  # fmt: skip
_NOW_HOUR = "date_trunc('hour', CAST(current_timestamp AT TIME ZONE 'UTC' AS timestamp))"


def raw_table(kind: ArchiveKind) -> str:
    return f"{kind.name}_raw"


def live_view(kind: ArchiveKind) -> str:
    return f"{kind.name}_live"


def raw_columns(kind: ArchiveKind) -> tuple[tuple[str, str], ...]:
    """The raw table's columns (model types): timestamps are the RFC 3339 strings the raw lines hold
    (the JSON SerDe does not read them as timestamps: the view converts them)."""
    return tuple((name, "string" if type_ == "timestamp" else type_) for name, type_ in kind.columns)


def view_columns(kind: ArchiveKind) -> tuple[tuple[str, str], ...]:
    """The view's columns (model types, plus ``dt`` string and ``hour`` int32): the archive table's."""
    return (*kind.columns, ("dt", "string"), ("hour", "int32"))


def _q(name: str) -> str:
    return f'"{name}"'  # every identifier quoted: ``at`` and ``count`` are keywords to one engine or the other


def view_sql(kind: ArchiveKind) -> str:
    """The live view's SELECT (Athena SQL, no placeholders); see the module's contract."""
    names = [name for name, _ in kind.columns]
    converted = ",\n         ".join(
        f"CAST(date_trunc('millisecond', from_iso8601_timestamp({_q(n)})) AT TIME ZONE 'UTC' AS timestamp) AS {_q(n)}"
        if t == "timestamp" else _q(n)
        for n, t in kind.columns
    )  # fmt: skip
    time = _q(kind.time_column)
    key = ", ".join(_q(k) for k in kind.key)
    present = " AND ".join(f"{_q(k)} IS NOT NULL" for k in kind.key)
    same_key = " AND ".join(f"a.{_q(k)} = f.{_q(k)}" for k in kind.key)
    window = f"{_NOW_HOUR} - INTERVAL '{WINDOW_HOURS}' HOUR"
    plain = ", ".join(_q(n) for n in names)
    return f"""WITH raw AS (
  SELECT {converted}
  FROM {raw_table(kind)}
  WHERE {LANDED} >= date_format({_NOW_HOUR} - INTERVAL '{RAW_HOURS}' HOUR, '%Y/%m/%d/%H')
),
fresh AS (
  SELECT *, date_format({time}, '%Y-%m-%d') AS dt, CAST(hour({time}) AS integer) AS "hour",
         row_number() OVER (PARTITION BY {key} ORDER BY {_q(kind.first_of)}) AS copy
  FROM raw
  WHERE {present} AND {time} >= {window}
)
SELECT {plain}, dt, "hour" FROM {kind.name}
UNION ALL
SELECT {plain}, dt, "hour" FROM fresh f
WHERE f.copy = 1
  AND NOT EXISTS (
    SELECT 1 FROM {kind.name} a
    WHERE a.dt >= date_format({window}, '%Y-%m-%d')
      AND (a.dt > date_format({window}, '%Y-%m-%d') OR a."hour" >= CAST(hour({window}) AS integer))
      AND a.dt = f.dt AND a."hour" = f."hour" AND {same_key}
  )"""  # noqa: S608 - model names and constants only, no input
