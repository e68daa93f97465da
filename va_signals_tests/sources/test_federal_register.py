"""The Federal Register adapter against the real recorded page of January 2024 documents."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from va_signals.catalog import Source, default_catalog
from va_signals.resilience.errors import RequestRejected
from va_signals.sources import federal_register
from va_signals.sources.base import SourceShapeError
from va_signals.sources.federal_register import FederalRegisterAdapter, is_from_agency
from va_signals_tests.recordings import recording
from va_signals_tests.support import ReplayingClient

BODY = "federal_register/documents-2024-page1.json"
TITLE_38_IDS = ["2024-00192", "2024-00353", "2024-00629"]


def _adapter(source_id: str = "federal_register_va", **params: Any) -> FederalRegisterAdapter:
    catalog = default_catalog()
    source = catalog.source(source_id)
    if params:
        source = source.model_copy(update={"params": params})
    return FederalRegisterAdapter(source, catalog.service(source.service).base_url)


def _raw() -> dict[str, Any]:
    return json.loads(recording(BODY))


def _query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


# --- parsing the real page ------------------------------------------------------------------


def test_parse_reads_all_1000_documents_of_the_general_listing() -> None:
    page = _adapter().parse(recording(BODY))

    assert len(page.records) == 1000
    assert len({record.external_id for record in page.records}) == 1000
    first, last = page.records[0], page.records[-1]
    assert first.external_id == "2023-26792"
    assert first.published_on == date(2024, 1, 2)
    assert last.published_on == date(2024, 1, 17)
    assert first.url is not None and first.url.startswith("https://www.federalregister.gov/")
    assert first.payload["document_number"] == "2023-26792"


def test_parse_keeps_the_next_page_url_as_the_cursor() -> None:
    page = _adapter().parse(recording(BODY))

    assert page.next_cursor == _raw()["next_page_url"]
    assert urlsplit(page.next_cursor).path == "/api/v1/documents"


def test_publication_dates_are_plain_dates_without_a_zone_shift() -> None:
    page = _adapter().parse(recording(BODY))

    raw_dates = [item["publication_date"] for item in _raw()["results"]]
    assert [record.published_on.isoformat() for record in page.records] == raw_dates
    assert all(type(record.published_on) is date for record in page.records)
    assert all(record.published_at is None for record in page.records)


def test_abstract_becomes_the_summary_and_a_missing_abstract_stays_none() -> None:
    page = _adapter().parse(recording(BODY))

    without = [record for record in page.records if record.payload["abstract"] is None]
    assert len(without) == 286
    assert all(record.summary is None for record in without)
    with_abstract = next(record for record in page.records if record.payload["abstract"])
    assert with_abstract.summary == with_abstract.payload["abstract"]


def test_va_filter_finds_14_documents_and_3_citing_title_38() -> None:
    documents = _raw()["results"]

    from_va = [doc for doc in documents if federal_register.is_from_agency(doc)]
    title_38 = [doc for doc in documents if federal_register.cites_cfr_title(doc, 38)]

    assert len(documents) == 1000
    assert len(from_va) == 14
    assert [doc["document_number"] for doc in title_38] == TITLE_38_IDS
    assert all(federal_register.va_relevance(doc) == (True, True) for doc in title_38)


def test_the_14_va_documents_have_dates_in_the_recorded_range() -> None:
    page = _adapter().parse(recording(BODY))

    va = [record for record in page.records if federal_register.is_from_agency(record.payload)]
    assert len(va) == 14
    assert all(date(2024, 1, 2) <= record.published_on <= date(2024, 1, 17) for record in va)
    assert va[0].published_on == date(2024, 1, 2)
    assert va[-1].published_on == date(2024, 1, 17)


def test_relevance_checks_tolerate_odd_shapes() -> None:
    assert federal_register.va_relevance({}) == (False, False)
    odd = {"agencies": [None, {"name": "no slug"}], "cfr_references": [{"title": "38"}, 7]}
    assert federal_register.va_relevance(odd) == (False, True)
    assert not federal_register.cites_cfr_title({"cfr_references": [{"title": True}]}, 1)


def test_an_empty_listing_without_results_is_an_empty_last_page() -> None:
    body = json.dumps({"count": 0, "description": "Documents matching nothing"}).encode()

    page = _adapter().parse(body)

    assert page.records == [] and page.next_cursor is None


# --- the request ----------------------------------------------------------------------------


def test_first_url_filters_by_agency_and_orders_oldest_first() -> None:
    url = _adapter().first_url(None)

    assert urlsplit(url).path == "/api/v1/documents.json"
    query = _query(url)
    assert query["conditions[agencies][]"] == ["veterans-affairs-department"]
    assert query["per_page"] == ["1000"] and query["order"] == ["oldest"]
    assert {"document_number", "publication_date", "agencies", "cfr_references"} <= set(
        query["fields[]"]
    )
    assert "conditions[publication_date][gte]" not in query


def test_first_url_of_the_title_38_source_filters_by_cfr_title() -> None:
    query = _query(_adapter("federal_register_title38").first_url(None))

    assert query["conditions[cfr][title]"] == ["38"]
    assert "conditions[agencies][]" not in query


def test_since_becomes_a_publication_date_bound_with_a_day_of_overlap() -> None:
    eastern_evening = datetime(2024, 1, 10, 2, 30, tzinfo=UTC)  # still Jan 9 in Washington

    url = _adapter().first_url(eastern_evening)
    assert _query(url)["conditions[publication_date][gte]"] == ["2024-01-09"]
    other_zone = datetime(2024, 1, 10, 20, 0, tzinfo=timezone(timedelta(hours=-5)))
    assert _query(_adapter().first_url(other_zone))["conditions[publication_date][gte]"] == [
        "2024-01-10"
    ]


def test_per_page_is_capped_at_the_api_maximum() -> None:
    adapter = _adapter(agency="veterans-affairs-department", per_page=5000)

    assert _query(adapter.first_url(None))["per_page"] == ["1000"]


@pytest.mark.parametrize(
    "params",
    [{}, {"agency": "x", "cfr_title": 38}, {"cfr_title": "thirty"}, {"agency": ""}],
)
def test_bad_params_fail_when_the_adapter_is_built(params: dict[str, Any]) -> None:
    source: Source = default_catalog().source("federal_register_va")
    with pytest.raises(ValueError, match="federal_register_va"):
        FederalRegisterAdapter(source.model_copy(update={"params": params}), "https://x.test")


# --- paging ---------------------------------------------------------------------------------


def test_pages_yields_page_one_then_the_unrecorded_next_page_fails() -> None:
    client = ReplayingClient("federal_register_va")
    adapter = _adapter()
    pages = adapter.pages(client, since=None, cursor=None)

    first = next(pages)
    # The recorded listing covers every agency; the source keeps only VA's 14 documents.
    assert len(first.records) == 14
    assert all(is_from_agency(record.payload) for record in first.records)
    assert first.request_url == adapter.first_url(None)
    assert first.next_cursor == _raw()["next_page_url"]

    with pytest.raises(RequestRejected) as failure:
        next(pages)
    assert failure.value.status == 404
    assert client.requested == [adapter.first_url(None), _raw()["next_page_url"]]


def test_pages_with_since_sends_the_date_bound() -> None:
    client = ReplayingClient("federal_register_va")
    pages = _adapter().pages(client, since=datetime(2024, 1, 3, 12, tzinfo=UTC), cursor=None)

    next(pages)
    assert _query(client.requested[0])["conditions[publication_date][gte]"] == ["2024-01-02"]


def test_resuming_requests_the_cursor_first() -> None:
    client = ReplayingClient("federal_register_va")
    cursor = "https://www.federalregister.gov/api/v1/documents.json?page=3&per_page=1000"
    pages = _adapter().pages(client, since=datetime(2024, 1, 1, tzinfo=UTC), cursor=cursor)

    page = next(pages)
    assert client.requested == [cursor]
    assert page.request_url == cursor


# --- shape errors ---------------------------------------------------------------------------


def _shape_error(body: bytes) -> SourceShapeError:
    with pytest.raises(SourceShapeError) as failure:
        _adapter().parse(body)
    return failure.value


def test_missing_results_names_the_field() -> None:
    raw = _raw()
    del raw["results"]

    error = _shape_error(json.dumps(raw).encode())

    assert error.source_id == "federal_register_va" and error.field == "results"
    assert "'federal_register_va'" in str(error) and "'results'" in str(error)
    assert "is missing" in str(error)


def test_document_without_its_number_names_the_item() -> None:
    raw = _raw()
    del raw["results"][5]["document_number"]

    error = _shape_error(json.dumps(raw).encode())

    assert error.field == "results[5].document_number"
    assert "federal_register_va" in str(error) and "results[5].document_number" in str(error)


def test_bad_publication_date_names_field_and_value() -> None:
    raw = _raw()
    raw["results"][7]["publication_date"] = "2024-13-45"

    error = _shape_error(json.dumps(raw).encode())

    assert error.field == "results[7].publication_date" and error.value == "2024-13-45"
    assert "federal_register_va" in str(error) and "'2024-13-45'" in str(error)


def test_html_instead_of_json_names_the_body() -> None:
    error = _shape_error(b"<!DOCTYPE html><html><body>Service Unavailable</body></html>")

    assert error.field == "body"
    assert "federal_register_va" in str(error) and "<!DOCTYPE html>" in str(error)


def test_results_of_the_wrong_type_and_a_foreign_next_page_are_refused() -> None:
    raw = _raw()
    raw["results"] = {"oops": 1}
    error = _shape_error(json.dumps(raw).encode())
    assert error.field == "results" and "should be list" in str(error)

    raw = _raw()
    raw["next_page_url"] = "https://elsewhere.example/api/v1/documents?page=2"
    error = _shape_error(json.dumps(raw).encode())
    assert error.field == "next_page_url" and "elsewhere.example" in str(error)
