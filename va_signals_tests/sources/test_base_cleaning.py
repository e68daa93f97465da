"""The adapter boundary: strings PostgreSQL cannot store are cleaned, dates are parsed strictly."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from va_signals.sources.base import (
    SourceRecord,
    SourceShapeError,
    load_json,
    parse_date,
    parse_datetime,
)


def test_load_json_turns_nan_and_infinity_into_null() -> None:
    body = b'{"a": NaN, "b": Infinity, "c": -Infinity, "d": 1e999, "e": 1.5, "f": [NaN, 2]}'
    assert load_json("src", body) == {
        "a": None,
        "b": None,
        "c": None,
        "d": None,
        "e": 1.5,
        "f": [None, 2],
    }


def test_record_removes_nul_and_replaces_lone_surrogates_everywhere() -> None:
    record = SourceRecord(
        external_id="id\x00-1",
        title="A\x00 rule \ud800here",
        summary="sum\x00mary",
        url="https://example.test/\x00a",
        payload={
            "k\x00ey": "v\x00al",
            "nested": {"list": ["x\x00", "\udc00", {"deep\ud83d": "\x00"}], "n": float("nan")},
            "tuple": ("a\x00",),
        },
    )
    assert record.external_id == "id-1"
    assert record.title == "A rule \ufffdhere"
    assert record.summary == "summary"
    assert record.url == "https://example.test/a"
    assert record.payload == {
        "key": "val",
        "nested": {"list": ["x", "\ufffd", {"deep\ufffd": ""}], "n": None},
        "tuple": ["a"],
    }


def test_record_keeps_valid_surrogate_pairs_decoded_by_json() -> None:
    # A JSON escape pair decodes to one astral character, which must be left alone.
    decoded = load_json("src", b'{"t": "\\ud83d\\ude00"}')
    record = SourceRecord(external_id="1", title=decoded["t"], payload=decoded)
    assert record.title == "\U0001f600"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-01-02", date(2024, 1, 2)),
        ("2024-01-02T23:30:00Z", date(2024, 1, 2)),
        ("2024-01-02T23:30:00-05:00", date(2024, 1, 2)),
        ("2024-01-02 23:30:00.123456+00:00", date(2024, 1, 2)),
        ("2024-01-02T23:30:00", date(2024, 1, 2)),
        (None, None),
        ("", None),
    ],
)
def test_parse_date_accepts_iso_dates_and_timestamps(
    value: str | None, expected: date | None
) -> None:
    assert parse_date("src", "when", value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "2024-01-02garbage",
        "20240102",
        "2024-W01-1",
        "2024-01-02T10",
        "2024-01-02T25:00:00Z",
        "2024-02-30",
        "2024-1-2",
        "0000-01-01",
        "２０２４-01-02",
        " 2024-01-02",
    ],
)
def test_parse_date_rejects_anything_else_naming_field_and_value(value: str) -> None:
    with pytest.raises(SourceShapeError) as caught:
        parse_date("src", "items[0].date", value)
    assert caught.value.source_id == "src"
    assert caught.value.field == "items[0].date"
    assert caught.value.value == value
    assert repr(value) in str(caught.value)


def test_parse_datetime_keeps_the_zone() -> None:
    parsed = parse_datetime("src", "at", "2024-01-02T10:00:00-05:00")
    assert parsed == datetime(2024, 1, 2, 15, tzinfo=UTC)
    assert parsed.utcoffset() == timedelta(hours=-5)
    assert parse_datetime("src", "at", "2024-01-02T10:00:00Z").tzinfo is not None
    assert parse_datetime("src", "at", "2022-05-20 16:27:57+00:00") == datetime(
        2022, 5, 20, 16, 27, 57, tzinfo=UTC
    )


@pytest.mark.parametrize(
    "value",
    [
        "2024-01-02T10:00:00",  # no zone
        "2024-01-02",  # no time
        "20240102T100000Z",
        "2024-01-02T10:00:00Zjunk",
        "0001-01-01T00:00:00+14:00",  # UTC instant in year 0 (1 BC)
        "0001-01-01T00:00:00Z",  # renders as a BC date in any zone west of UTC
        "9999-12-31T23:00:00-05:00",  # UTC instant in year 10000
        "9999-12-31T12:00:00Z",
    ],
)
def test_parse_datetime_rejects_lax_forms_and_unstorable_years(value: str) -> None:
    with pytest.raises(SourceShapeError) as caught:
        parse_datetime("src", "items[0].at", value)
    assert caught.value.field == "items[0].at"
    assert caught.value.value == value
