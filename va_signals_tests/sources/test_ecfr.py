"""The eCFR adapter against the real recorded titles listing (title 38 amended 2026-08-10)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import pytest

from va_signals.catalog import default_catalog
from va_signals.resilience.errors import RequestRejected
from va_signals.sources import ecfr
from va_signals.sources.base import SourceShapeError
from va_signals.sources.ecfr import EcfrTitleAdapter
from va_signals_tests.recordings import recording
from va_signals_tests.support import ReplayingClient

BODY = "ecfr/titles.json"
TITLES_URL = "https://www.ecfr.gov/api/versioner/v1/titles.json"


def _adapter(**params: Any) -> EcfrTitleAdapter:
    catalog = default_catalog()
    source = catalog.source("ecfr_title38")
    if params:
        source = source.model_copy(update={"params": params})
    return EcfrTitleAdapter(source, catalog.service(source.service).base_url)


def _raw() -> dict[str, Any]:
    return json.loads(recording(BODY))


def _title_38(raw: dict[str, Any]) -> dict[str, Any]:
    return next(item for item in raw["titles"] if item["number"] == 38)


# --- parsing the real listing ---------------------------------------------------------------


def test_listing_has_50_titles_and_yields_one_record_for_title_38() -> None:
    assert len(_raw()["titles"]) == 50

    page = _adapter().parse(recording(BODY))

    assert page.next_cursor is None
    [record] = page.records
    assert record.external_id == "title-38@2026-08-10"
    assert record.published_on == date(2026, 8, 10)
    assert record.published_at is None
    assert record.title == "Title 38 amended"
    assert record.url == "https://www.ecfr.gov/current/title-38"
    assert "Pensions, Bonuses, and Veterans' Relief" in (record.summary or "")
    assert record.payload == {
        "number": 38,
        "name": "Pensions, Bonuses, and Veterans' Relief",
        "latest_amended_on": "2026-08-10",
        "reserved": False,
    }


def test_same_amendment_on_a_later_day_is_the_same_record() -> None:
    before = _adapter().parse(recording(BODY)).records[0]
    raw = _raw()
    _title_38(raw).update(up_to_date_as_of="2026-09-30", latest_issue_date="2026-09-29")
    raw["meta"]["date"] = "2026-09-30"

    after = _adapter().parse(json.dumps(raw).encode()).records[0]

    assert after == before


def test_new_amendment_date_is_a_new_record() -> None:
    raw = _raw()
    _title_38(raw)["latest_amended_on"] = "2026-09-14"

    record = _adapter().parse(json.dumps(raw).encode()).records[0]

    assert record.external_id == "title-38@2026-09-14"
    assert record.published_on == date(2026, 9, 14)
    assert ecfr.amendment_id(38, date(2026, 9, 14)) == record.external_id


def test_another_title_can_be_watched_with_the_same_adapter() -> None:
    record = _adapter(title=37).parse(recording(BODY)).records[0]

    assert record.external_id == "title-37@2026-08-13"


@pytest.mark.parametrize("title", [None, "38", 0, 51, True])
def test_bad_title_param_fails_when_the_adapter_is_built(title: Any) -> None:
    with pytest.raises(ValueError, match="ecfr_title38"):
        _adapter(title=title)


# --- fetching -------------------------------------------------------------------------------


def test_pages_makes_one_request_and_yields_one_page() -> None:
    client = ReplayingClient("ecfr_title38")

    pages = list(_adapter().pages(client, since=datetime(2026, 8, 1, tzinfo=UTC), cursor=None))

    assert client.requested == [TITLES_URL]
    assert [len(page.records) for page in pages] == [1]
    assert pages[0].request_url == TITLES_URL and pages[0].next_cursor is None


def test_resuming_requests_the_cursor_first() -> None:
    client = ReplayingClient("ecfr_title38")
    cursor = TITLES_URL + "?resumed=1"

    pages = list(_adapter().pages(client, since=None, cursor=cursor))

    assert client.requested == [cursor]
    assert pages[0].records[0].external_id == "title-38@2026-08-10"


def test_an_unrecorded_request_fails_like_an_upstream_error() -> None:
    client = ReplayingClient("ecfr_title38")
    pages = _adapter().pages(client, since=None, cursor="https://www.ecfr.gov/api/other.json")

    with pytest.raises(RequestRejected):
        next(pages)


# --- shape errors ---------------------------------------------------------------------------


def _shape_error(body: bytes) -> SourceShapeError:
    with pytest.raises(SourceShapeError) as failure:
        _adapter().parse(body)
    return failure.value


def test_missing_titles_array_names_the_field() -> None:
    raw = _raw()
    del raw["titles"]

    error = _shape_error(json.dumps(raw).encode())

    assert error.source_id == "ecfr_title38" and error.field == "titles"
    assert "'ecfr_title38'" in str(error) and "'titles'" in str(error)


def test_absent_title_names_the_title_number() -> None:
    raw = _raw()
    raw["titles"] = [item for item in raw["titles"] if item["number"] != 38]

    error = _shape_error(json.dumps(raw).encode())

    assert error.field == "titles[].number" and error.value == 38
    assert "ecfr_title38" in str(error) and "49 titles" in str(error)


def test_title_without_a_number_names_the_item() -> None:
    raw = _raw()
    del raw["titles"][3]["number"]

    error = _shape_error(json.dumps(raw).encode())

    assert error.field == "titles[3].number" and "ecfr_title38" in str(error)


@pytest.mark.parametrize("bad", ["2026-02-30", "10/08/2026", None, 20260810])
def test_bad_amendment_date_names_field_and_value(bad: Any) -> None:
    raw = _raw()
    _title_38(raw)["latest_amended_on"] = bad

    error = _shape_error(json.dumps(raw).encode())

    assert error.field == "titles[37].latest_amended_on" and error.value == bad
    assert "ecfr_title38" in str(error) and repr(bad) in str(error)


def test_html_instead_of_json_names_the_body() -> None:
    error = _shape_error(b"<html><head><title>502 Bad Gateway</title></head></html>")

    assert error.field == "body"
    assert "ecfr_title38" in str(error) and "502 Bad Gateway" in str(error)
