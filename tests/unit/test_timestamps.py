"""The one timestamp grammar of ingest and compaction (issue 11.6, 11.7): strict RFC 3339, UTC in
0001-01-01T00:00:00Z..9999-12-31T23:59:59.999999Z, always refused with ValueError, never another error."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.json as pj
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from auditlake import timestamps
from auditlake.timestamps import canonical, format_utc


@pytest.mark.parametrize(
    "raw",
    [
        "2026-W47-6T12:00:00.000000Z",  # ISO week date: fromisoformat takes it, Arrow does not
        "2026-W47-6T12:00:00Z",
        "2026-325T12:00:00.000000Z",  # ordinal date
        "2026-11-21T24:00:00.000000Z",  # hour 24
        "2026-12-31T23:59:60.000000Z",  # leap second
        "\uff12\uff10\uff12\uff16-11-21T12:00:00.000000Z",  # digits, but not ASCII ones
        "2026-11-21T12:00:00.000000+24:00",
        "0000-01-01T00:00:00.000000Z",
        "9999-12-31T23:59:59.999999-01:00",  # past year 9999 in UTC
        "0001-01-01T00:30:00+01:00",  # before year 1 in UTC
        "2026-11-21T12:00:00.000000Zjunk",
    ],
)
def test_what_the_archive_cannot_hold_is_a_value_error(raw: str) -> None:
    with pytest.raises(ValueError):
        canonical(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00.000000Z"),
        ("0001-01-01T01:30:00+01:00", "0001-01-01T00:30:00.000000Z"),
        ("9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59.999999Z"),
        ("9999-12-31T22:59:59.999999-01:00", "9999-12-31T23:59:59.999999Z"),
        ("1969-12-31T23:59:59.999999+00:00", "1969-12-31T23:59:59.999999Z"),
        ("2026-11-21t12:00:00,5z", "2026-11-21T12:00:00.500000Z"),
        ("2026-11-21T12:00:00-00:00", "2026-11-21T12:00:00.000000Z"),
    ],
)
def test_the_ends_of_the_range_are_kept(raw: str, expected: str) -> None:
    assert canonical(raw) == expected


def test_years_are_zero_padded() -> None:
    assert format_utc(datetime(1, 1, 1, tzinfo=UTC)) == "0001-01-01T00:00:00.000000Z"
    assert format_utc(datetime(999, 3, 4, 5, 6, 7, 8, tzinfo=timezone(timedelta(hours=2)))) == (
        "0999-03-04T03:06:07.000008Z"
    )


def _arrow_reads(value: str) -> datetime:
    table = pj.read_json(
        io.BytesIO(f'{{"t": "{value}"}}\n'.encode()),
        parse_options=pj.ParseOptions(explicit_schema=pa.schema([("t", pa.timestamp("us"))])),
    )
    moment: datetime = table["t"][0].as_py()
    return moment.replace(tzinfo=UTC)


offsets = st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1).map(lambda m: timedelta(minutes=m))
moments = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59, 999999))


@given(moments, offsets, st.sampled_from(["T", "t", " "]), st.booleans())
@example(datetime(9999, 12, 31, 23, 59, 59, 999999), timedelta(hours=-1), "T", True)
@example(datetime(1, 1, 1, 0, 30), timedelta(hours=1), "T", True)
def test_canonical_returns_the_canonical_form_arrow_reads_or_raises_value_error(
    moment: datetime, offset: timedelta, separator: str, colon: bool
) -> None:
    """Either a 27-character canonical string that round-trips (through itself and through Arrow, the
    compactor's reader) and names the same instant, or ValueError: never OverflowError or another."""
    sign, minutes = ("-" if offset < timedelta(0) else "+"), abs(int(offset.total_seconds())) // 60
    zone = f"{sign}{minutes // 60:02d}{':' if colon else ''}{minutes % 60:02d}"
    text = f"{moment:%m-%dT%H:%M:%S.%f}".replace("T", separator)
    raw = f"{moment.year:04d}-{text}{zone}"
    try:
        result = canonical(raw)
    except ValueError:
        assert not _in_range(moment, offset)  # refused only when the instant is outside years 1-9999 in UTC
        return
    assert len(result) == 27 and result.endswith("Z") and canonical(result) == result
    assert timestamps.parse(result) == moment.replace(tzinfo=timezone(offset))
    assert _arrow_reads(result) == timestamps.parse(result)


def _in_range(moment: datetime, offset: timedelta) -> bool:
    try:
        moment - offset
    except OverflowError:
        return False
    return True


@given(st.text(max_size=40))
@example("2026-W47-6T12:00:00.000000Z")
def test_any_text_is_canonical_or_a_value_error(raw: str) -> None:
    try:
        result = canonical(raw)
    except ValueError:
        return
    assert len(result) == 27 and canonical(result) == result
    _arrow_reads(result)
