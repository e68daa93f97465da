"""The LDA filings adapter against the real recorded page of one registrant's filings."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from va_signals.catalog import default_catalog
from va_signals.resilience.errors import RequestRejected
from va_signals.sources import lda
from va_signals.sources.base import PagingLoopError, SourceShapeError
from va_signals.sources.lda import LdaFilingsAdapter, has_issue_code
from va_signals_tests.recordings import recording
from va_signals_tests.support import ReplayingClient

BODY = "lda/filings-list.json"
NEXT_URL = (
    "https://lda.senate.gov/api/v1/filings/?page=2&registrant_country=US&registrant_id=401104726"
)


def _adapter(**params: Any) -> LdaFilingsAdapter:
    catalog = default_catalog()
    source = catalog.source("lda_filings")
    if params:
        source = source.model_copy(update={"params": params})
    return LdaFilingsAdapter(source, catalog.service(source.service).base_url)


def _raw() -> dict[str, Any]:
    return json.loads(recording(BODY))


def _query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


# --- parsing the real page ------------------------------------------------------------------


def test_parse_yields_one_record_per_filing() -> None:
    page = _adapter().parse(recording(BODY))

    assert len(page.records) == 25
    assert len({record.external_id for record in page.records}) == 25
    assert page.records[0].external_id == "1fcf58ed-e319-4315-a970-a93e45e9ef4f"
    assert page.records[-1].external_id == "4e24ccb2-eb20-4cd2-b51c-3d56102e5bc8"
    assert page.next_cursor == NEXT_URL


def test_record_fields_of_a_quarterly_report() -> None:
    records = {r.external_id: r for r in _adapter().parse(recording(BODY)).records}

    record = records["4c78d7ef-3f98-459c-8ec9-ea2bd6e76d69"]
    assert record.title == "10-SQUARE SOLUTIONS for MEDTRONIC, INC: 2017 4th Quarter - Report"
    assert record.url == (
        "https://lda.senate.gov/filings/public/filing/4c78d7ef-3f98-459c-8ec9-ea2bd6e76d69/print/"
    )
    assert record.published_at == datetime(
        2018, 1, 19, 16, 8, 35, 480000, tzinfo=timezone(timedelta(hours=-5))
    )
    assert record.published_at.utcoffset() == timedelta(hours=-5)
    assert record.summary is not None and record.summary.startswith("Education pertaining to")
    assert record.payload["filing_type"] == "Q4"


def test_record_of_a_registration_and_of_a_filing_without_activities() -> None:
    records = {r.external_id: r for r in _adapter().parse(recording(BODY)).records}

    registration = records["1fcf58ed-e319-4315-a970-a93e45e9ef4f"]
    assert registration.title == "10-SQUARE SOLUTIONS for MEDTRONIC, INC: 2017 Registration"
    no_activity = records["eea9dc40-eb2c-45f3-a3f9-1d6fb145c82a"]
    assert no_activity.summary is None
    assert no_activity.published_at == datetime(2019, 1, 25, 17, 16, 32, 473000, tzinfo=UTC)


def test_vet_filter_counts_of_the_recorded_page() -> None:
    filings = _raw()["results"]

    with_vet = [f["filing_uuid"] for f in filings if lda.has_issue_code(f, "VET")]
    naming_va = [f["filing_uuid"] for f in filings if lda.names_va_under_issue(f, "VET")]

    assert len(filings) == 25
    # The manifest's "23 ... naming VA" is the count of filings with any VET activity; only 16
    # of them list the department among the entities contacted (registrations list none).
    assert len(with_vet) == 23
    assert len(naming_va) == 16
    assert "4c78d7ef-3f98-459c-8ec9-ea2bd6e76d69" in naming_va
    assert "ee0d32a5-97bc-4921-85ee-1e68d7cf9c67" in naming_va  # VA under DEF, VET and IND
    assert "1fcf58ed-e319-4315-a970-a93e45e9ef4f" in with_vet  # VET registration, no entities
    assert "1fcf58ed-e319-4315-a970-a93e45e9ef4f" not in naming_va
    assert "ebff976e-8d70-4453-b73f-b7d2431b36ae" not in with_vet  # HCR only
    assert "eea9dc40-eb2c-45f3-a3f9-1d6fb145c82a" not in with_vet  # no activities


def test_va_must_be_named_under_the_issue_code_itself() -> None:
    filing = {
        "lobbying_activities": [
            {"general_issue_code": "DEF", "government_entities": [{"id": 42, "name": "x"}]},
            {"general_issue_code": "VET", "government_entities": [{"id": 170, "name": "VETS"}]},
        ]
    }

    assert lda.has_issue_code(filing, "VET")
    assert not lda.names_va_under_issue(filing, "VET")
    assert lda.names_va_under_issue(filing, "DEF")
    assert not lda.names_va_under_issue({"lobbying_activities": None})


def test_throttled_body_carries_the_wait_in_its_detail() -> None:
    body = recording("lda/throttled-429.json")

    assert json.loads(body) == {
        "detail": "Request was throttled. Expected available in 28 seconds."
    }
    assert lda.retry_after_seconds_from_body(body) == 28.0
    assert lda.retry_after_seconds_from_body({"detail": "Expected available in 1 second."}) == 1
    assert lda.retry_after_seconds_from_body({"detail": "Request was throttled."}) is None
    assert lda.retry_after_seconds_from_body(b"<html>Too Many Requests</html>") is None
    assert lda.retry_after_seconds_from_body("[1, 2]") is None


# --- the request ----------------------------------------------------------------------------


def test_first_url_filters_by_issue_code_and_orders_by_posting() -> None:
    url = _adapter().first_url(None)

    assert url.startswith("https://lda.senate.gov/api/v1/filings/?")
    query = _query(url)
    assert query["lobbying_activity_general_issue_code"] == ["VET"]
    assert query["page_size"] == ["25"] and query["ordering"] == ["dt_posted"]
    assert "filing_dt_posted_after" not in query and "page" not in query


def test_since_becomes_a_posted_after_date_with_a_day_of_overlap() -> None:
    url = _adapter().first_url(datetime(2024, 10, 2, 3, 0, tzinfo=UTC))

    assert _query(url)["filing_dt_posted_after"] == ["2024-10-01"]


def test_page_size_is_capped_and_bad_params_fail_early() -> None:
    assert _query(_adapter(issue_code="VET", page_size=500).first_url(None))["page_size"] == ["25"]
    with pytest.raises(ValueError, match="lda_filings"):
        _adapter(page_size=25)
    with pytest.raises(ValueError, match="lda_filings"):
        _adapter(issue_code="VET", page_size=0)


# --- paging ---------------------------------------------------------------------------------


def test_next_answering_page_one_again_is_a_paging_loop() -> None:
    client = ReplayingClient("lda_filings")
    adapter = _adapter()
    pages = adapter.pages(client, since=None, cursor=None)

    first = next(pages)
    # Two of the 25 recorded filings report no VET activity; the source drops them.
    assert len(first.records) == 23
    assert all(has_issue_code(record.payload) for record in first.records)
    assert first.request_url == adapter.first_url(None)
    assert first.next_cursor == NEXT_URL

    # The replay ignores the query, so page 2 is answered with page 1's filings.
    with pytest.raises(PagingLoopError) as failure:
        next(pages)
    assert failure.value.source_id == "lda_filings"
    assert client.requested == [adapter.first_url(None), NEXT_URL]


def test_resuming_requests_the_cursor_first() -> None:
    client = ReplayingClient("lda_filings")
    pages = _adapter().pages(client, since=datetime(2024, 1, 1, tzinfo=UTC), cursor=NEXT_URL)

    page = next(pages)

    assert client.requested == [NEXT_URL]
    assert page.request_url == NEXT_URL
    # The recorded `next` is the cursor itself, so continuing would re-read it: refused.
    with pytest.raises(PagingLoopError):
        next(pages)
    assert client.requested == [NEXT_URL]


def test_an_unrecorded_path_fails_like_an_upstream_error() -> None:
    client = ReplayingClient("lda_filings")
    pages = _adapter().pages(
        client, since=None, cursor="https://lda.senate.gov/api/v1/filings/a/b/"
    )

    with pytest.raises(RequestRejected):
        next(pages)


# --- shape errors ---------------------------------------------------------------------------


def _shape_error(body: bytes) -> SourceShapeError:
    with pytest.raises(SourceShapeError) as failure:
        _adapter().parse(body)
    return failure.value


def test_missing_results_names_the_field() -> None:
    raw = _raw()
    del raw["results"]

    error = _shape_error(json.dumps(raw).encode())

    assert error.source_id == "lda_filings" and error.field == "results"
    assert "'lda_filings'" in str(error) and "'results'" in str(error)


def test_filing_without_its_uuid_names_the_item() -> None:
    raw = _raw()
    del raw["results"][4]["filing_uuid"]

    error = _shape_error(json.dumps(raw).encode())

    assert error.field == "results[4].filing_uuid" and "lda_filings" in str(error)


@pytest.mark.parametrize("bad", ["yesterday", "2018-01-17T13:19:38", None])
def test_bad_posting_time_names_field_and_value(bad: Any) -> None:
    raw = _raw()
    raw["results"][2]["dt_posted"] = bad

    error = _shape_error(json.dumps(raw).encode())

    assert error.field == "results[2].dt_posted" and error.value == bad
    assert "lda_filings" in str(error) and repr(bad) in str(error)


def test_filing_without_a_client_name_names_the_nested_field() -> None:
    raw = _raw()
    raw["results"][0]["client"]["name"] = None

    error = _shape_error(json.dumps(raw).encode())

    assert error.field == "results[0].client.name" and "lda_filings" in str(error)


def test_html_instead_of_json_names_the_body() -> None:
    error = _shape_error(b"<html><body><h1>Server Error (500)</h1></body></html>")

    assert error.field == "body"
    assert "lda_filings" in str(error) and "Server Error (500)" in str(error)


def test_next_on_another_host_is_refused() -> None:
    raw = _raw()
    raw["next"] = "https://collector.example/api/v1/filings/?page=2"

    error = _shape_error(json.dumps(raw).encode())

    assert error.field == "next" and "collector.example" in str(error)
