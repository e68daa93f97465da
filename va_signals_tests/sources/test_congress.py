"""The Congress.gov adapters against the real recorded responses, plus bodies built in memory for
the committee-bills route (never recorded) and for every broken shape."""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest

from va_signals.catalog import load_catalog
from va_signals.sources import ADAPTERS
from va_signals.sources.base import Page, PagingLoopError, SourceAdapter, SourceShapeError
from va_signals.sources.congress import (
    VA_COMMITTEES,
    CongressBillActions,
    CongressBills,
    CongressCommitteeMeetings,
    CongressCommitteeReports,
    CongressCrsReports,
    bill_id,
    committee_chamber,
    congress_start,
    from_date_time,
    is_referred_to,
    web_bill_url,
)
from va_signals_tests.recordings import recording
from va_signals_tests.support import ReplayingClient

CATALOG = load_catalog()
BASE_URL = CATALOG.service("api.congress.gov").base_url
API = "https://api.congress.gov"
HOUSE_VA_BILLS = "/v3/committee/house/hsvr00/bills"
SENATE_VA_BILLS = "/v3/committee/senate/ssva00/bills"
SINCE = datetime(2026, 9, 1, 8, 30, tzinfo=ZoneInfo("America/New_York"))


# --- helpers -------------------------------------------------------------------------------------


def adapter(adapter_class: type[SourceAdapter], **params: Any) -> Any:
    """The adapter of the catalog source of the same name, with some params replaced."""
    source = CATALOG.source(adapter_class.name)
    if params:
        source = source.model_copy(update={"params": {**source.params, **params}})
    return adapter_class(source, BASE_URL)


def document(relative: str) -> dict[str, Any]:
    return json.loads(recording(relative))


def query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def collect(pages: Iterator[Page], into: list[Page]) -> None:
    for page in pages:
        into.append(page)


def committee_bills(*bills: dict[str, Any], next_url: str | None = None) -> dict[str, Any]:
    """A body in the documented committee-bills shape: the array nests under `committee-bills`."""
    pagination: dict[str, Any] = {"count": len(bills)}
    if next_url:
        pagination["next"] = next_url
    return {
        "committee-bills": {"bills": list(bills), "count": len(bills), "url": "unused"},
        "pagination": pagination,
        "request": {"contentType": "application/json", "format": "json"},
    }


def committee_bill(
    congress: int, bill_type: str, number: str, action: str, relation: str = "Referred to"
) -> dict[str, Any]:
    return {
        "actionDate": action,
        "congress": congress,
        "number": number,
        "relationshipType": relation,
        "type": bill_type,
        "updateDate": "2026-09-12T10:00:00Z",
        "url": f"{API}/v3/bill/{congress}/{bill_type.lower()}/{number}?format=json",
    }


# --- registry and pure helpers -------------------------------------------------------------------


def test_all_five_adapters_are_registered_under_their_catalog_names() -> None:
    expected = {
        "congress_bills": CongressBills,
        "congress_bill_actions": CongressBillActions,
        "congress_committee_meetings": CongressCommitteeMeetings,
        "congress_committee_reports": CongressCommitteeReports,
        "congress_crs_reports": CongressCrsReports,
    }
    for name, adapter_class in expected.items():
        assert ADAPTERS[name] is adapter_class
        assert CATALOG.source(name).adapter == name


def test_small_helpers_build_ids_routes_and_timestamps() -> None:
    assert bill_id(117, "HR", "21") == "117-hr-21"
    assert committee_chamber("hsvr00") == "house"
    assert committee_chamber("ssva00") == "senate"
    with pytest.raises(ValueError, match="xxvr00"):
        committee_chamber("xxvr00")
    assert from_date_time(SINCE) == "2026-09-01T12:30:00Z"
    with pytest.raises(ValueError, match="naive"):
        from_date_time(datetime(2026, 9, 1))
    assert congress_start(119) == datetime(2025, 1, 1, tzinfo=UTC)
    assert congress_start(117) == datetime(2021, 1, 1, tzinfo=UTC)
    assert web_bill_url(117, "HR", "21") == (
        "https://www.congress.gov/bill/117th-congress/house-bill/21"
    )
    assert web_bill_url(121, "sjres", 4) == (
        "https://www.congress.gov/bill/121st-congress/senate-joint-resolution/4"
    )
    assert web_bill_url(112, "hres", 9).startswith("https://www.congress.gov/bill/112th-congress/")


def test_the_recorded_committees_of_hr_21_do_not_name_a_veterans_affairs_committee() -> None:
    committees = document("congress/bill-117-hr-21-committees.json")

    assert committees["request"]["billNumber"] == "21"
    assert not is_referred_to(committees, VA_COMMITTEES)
    assert is_referred_to(committees, ["hsgo00"])
    assert is_referred_to(committees, ["ssga00", "hsvr00"])


def test_is_referred_to_finds_a_va_committee_and_counts_its_subcommittees() -> None:
    committees = document("congress/bill-117-hr-21-committees.json")
    house_va = copy.deepcopy(committees)
    house_va["committees"][1]["systemCode"] = "hsvr00"
    via_subcommittee = copy.deepcopy(committees)
    via_subcommittee["committees"][0]["subcommittees"] = [{"systemCode": "ssva01", "name": "x"}]

    assert is_referred_to(house_va, VA_COMMITTEES)
    assert is_referred_to(via_subcommittee, VA_COMMITTEES)
    assert not is_referred_to({"committees": "none"}, VA_COMMITTEES)


def test_the_117th_house_list_names_hr_7369_as_referred_to_house_veterans_affairs() -> None:
    page = adapter(CongressBills).parse(recording("congress/bill-117-hr.json"))

    referred = [
        record.external_id
        for record in page.records
        if "Committee on Veterans' Affairs" in (record.summary or "")
    ]
    assert referred == ["117-hr-7369"]
    assert "117-hr-21" not in {record.external_id for record in page.records}


# --- congress_bills ------------------------------------------------------------------------------


def test_bills_parse_the_generic_117th_house_list() -> None:
    body = document("congress/bill-117-hr.json")
    page = adapter(CongressBills).parse(recording("congress/bill-117-hr.json"))

    assert len(page.records) == 20
    assert page.next_cursor == f"{API}/v3/bill/117/hr?offset=20&limit=20&format=json"
    first, second = page.records[0], page.records[1]
    assert first.external_id == "117-hr-3617"
    assert first.title == "MORE Act"
    assert first.published_on == date(2022, 4, 1)
    assert first.url == "https://www.congress.gov/bill/117th-congress/house-bill/3617"
    assert first.payload == body["bills"][0]
    assert first.payload["updateDate"] == "2022-04-03"
    # An empty upstream title falls back to the citation.
    assert second.external_id == "117-hr-7343"
    assert second.title == "H.R. 7343"


def test_bills_parse_the_bill_list_and_keep_its_next_url_verbatim() -> None:
    page = adapter(CongressBills).parse(recording("congress/bill-list.json"))

    assert [record.external_id for record in page.records] == ["119-hr-10348", "119-hjres-213"]
    assert [record.published_on for record in page.records] == [
        date(2026, 9, 10),
        date(2026, 8, 10),
    ]
    assert page.records[1].url == (
        "https://www.congress.gov/bill/119th-congress/house-joint-resolution/213"
    )
    assert page.next_cursor == (f"{API}/v3/bill?sort=updateDate desc&offset=2&limit=2&format=json")


def test_bills_parse_the_nested_committee_bills_shape() -> None:
    body = committee_bills(
        committee_bill(119, "HR", "1234", "2025-03-05T02:10:00Z"),
        committee_bill(119, "HR", "1234", "2025-06-01T15:00:00Z", relation="Reported by"),
        committee_bill(118, "S", "77", "2023-05-02T16:00:00Z"),
    )
    page = adapter(CongressBills).parse(json.dumps(body).encode())

    # One record per bill; the relationship rows of one bill collapse to the first.
    assert [record.external_id for record in page.records] == ["119-hr-1234", "118-s-77"]
    first = page.records[0]
    assert first.title == "H.R. 1234"
    # The date of the timestamp as written, with no shift into another zone.
    assert first.published_on == date(2025, 3, 5)
    assert first.payload["relationshipType"] == "Referred to"
    assert page.next_cursor is None


def test_bills_pages_walk_both_committees_and_keep_the_congress() -> None:
    shared = committee_bill(119, "HR", "500", "2025-02-01T15:00:00Z")
    client = ReplayingClient(
        "congress_bills",
        {
            HOUSE_VA_BILLS: committee_bills(
                shared, committee_bill(118, "HR", "9", "2024-01-01T15:00:00Z")
            ),
            SENATE_VA_BILLS: committee_bills(
                {**shared, "relationshipType": "Referred to"},
                committee_bill(119, "S", "42", "2025-04-01T15:00:00Z"),
            ),
        },
    )
    pages = list(adapter(CongressBills, limit=1000).pages(client, since=SINCE, cursor=None))

    assert [[record.external_id for record in page.records] for page in pages] == [
        ["119-hr-500"],
        ["119-s-42"],
    ]
    house_url, senate_url = client.requested
    assert urlsplit(house_url).path == HOUSE_VA_BILLS
    assert query(house_url) == {
        "format": ["json"],
        "offset": ["0"],
        "limit": ["250"],
        "fromDateTime": ["2026-09-01T12:30:00Z"],
    }
    assert pages[0].next_cursor == senate_url
    assert pages[1].next_cursor is None
    assert pages[0].request_url == house_url


def test_bills_first_run_starts_at_the_beginning_of_the_congress() -> None:
    client = ReplayingClient("congress_bills", {HOUSE_VA_BILLS: committee_bills()})
    pages = adapter(CongressBills, committees=["hsvr00"]).pages(client, since=None, cursor=None)

    assert [page.records for page in pages] == [[]]
    assert query(client.requested[0])["fromDateTime"] == ["2025-01-01T00:00:00Z"]


def test_bills_resume_at_the_cursor_and_then_finish_the_later_committees() -> None:
    cursor = f"{API}{HOUSE_VA_BILLS}?offset=250&limit=250&format=json"
    client = ReplayingClient(
        "congress_bills",
        {
            HOUSE_VA_BILLS: committee_bills(committee_bill(119, "HR", "8", "2025-02-01")),
            SENATE_VA_BILLS: committee_bills(),
        },
    )
    pages = list(adapter(CongressBills).pages(client, since=SINCE, cursor=cursor))

    assert client.requested[0] == cursor
    assert urlsplit(client.requested[1]).path == SENATE_VA_BILLS
    assert [record.external_id for record in pages[0].records] == ["119-hr-8"]


def test_bills_stop_when_a_committee_list_repeats_its_page() -> None:
    repeating = committee_bills(
        committee_bill(119, "HR", "1", "2025-02-01T15:00:00Z"),
        next_url=f"{API}{HOUSE_VA_BILLS}?offset=1&limit=1&format=json",
    )
    client = ReplayingClient("congress_bills", {HOUSE_VA_BILLS: repeating})
    seen: list[Page] = []

    with pytest.raises(PagingLoopError, match="repeats"):
        collect(adapter(CongressBills).pages(client, since=SINCE, cursor=None), seen)
    assert [[record.external_id for record in page.records] for page in seen] == [["119-hr-1"]]


# --- congress_bill_actions -----------------------------------------------------------------------


def test_actions_parse_the_ten_recorded_actions_of_hr_21() -> None:
    actions = adapter(CongressBillActions)
    page = actions.parse(recording("congress/bill-117-hr-21-actions.json"))

    ids = [record.external_id for record in page.records]
    assert len(page.records) == 10
    assert len(set(ids)) == 10
    assert page.next_cursor is None
    assert all(external_id.startswith("117-hr-21:") for external_id in ids)
    assert ids[0].startswith("117-hr-21:2021-01-06:-:")
    assert ids[1].startswith("117-hr-21:2021-01-05:H38310:")
    dates = [record.published_on for record in page.records]
    assert dates.count(date(2021, 1, 6)) == 1
    assert dates.count(date(2021, 1, 5)) == 6
    assert dates.count(date(2021, 1, 4)) == 3
    assert page.records[-1].title == "H.R. 21: Introduced in House"
    assert page.records[-1].url == "https://www.congress.gov/bill/117th-congress/house-bill/21"
    # Same date, same text, different action codes: two actions, two ids.
    introduced = [r.external_id for r in page.records if r.payload["text"] == "Introduced in House"]
    assert len(set(introduced)) == 2


def test_action_ids_are_the_same_across_runs_and_list_orders() -> None:
    body = document("congress/bill-117-hr-21-actions.json")
    reordered = copy.deepcopy(body)
    reordered["actions"].reverse()
    actions = adapter(CongressBillActions)

    first = {r.external_id for r in actions.parse(json.dumps(body).encode()).records}
    again = {
        r.external_id
        for r in actions.parse(recording("congress/bill-117-hr-21-actions.json")).records
    }
    reversed_ids = {r.external_id for r in actions.parse(json.dumps(reordered).encode()).records}
    assert first == again == reversed_ids


def test_two_actions_with_one_code_on_one_day_get_two_ids() -> None:
    body = document("congress/bill-117-hr-21-actions.json")
    twin = copy.deepcopy(body["actions"][1])
    twin["text"] = "Motion to reconsider laid on the table Agreed to by recorded vote."
    body["actions"].append(twin)
    page = adapter(CongressBillActions).parse(json.dumps(body).encode())

    same_code = [r.external_id for r in page.records if r.payload.get("actionCode") == "H38310"]
    assert len(same_code) == 2
    assert len(set(same_code)) == 2


def test_actions_pages_stop_after_max_bills_and_resume_from_the_cursor() -> None:
    hr_7369 = document("congress/bill-117-hr-21-actions.json")
    hr_7369["request"].update(billNumber="7369", billUrl="unused")
    hr_7369["actions"] = hr_7369["actions"][-2:]
    served = {
        HOUSE_VA_BILLS: committee_bills(
            committee_bill(117, "HR", "21", "2021-01-04T15:11:25Z"),
            committee_bill(117, "HR", "7369", "2022-04-01T16:00:00Z"),
        ),
        SENATE_VA_BILLS: committee_bills(),
        "/v3/bill/117/hr/7369/actions": hr_7369,
    }
    client = ReplayingClient("congress_bills", served)
    first_run = list(
        adapter(CongressBillActions, congress=117, max_bills=1).pages(
            client, since=SINCE, cursor=None
        )
    )

    assert len(first_run) == 1
    assert len(first_run[0].records) == 10
    assert urlsplit(client.requested[1]).path == "/v3/bill/117/hr/21/actions"
    position = json.loads(first_run[0].next_cursor)
    assert position == {"list": client.requested[0], "skip": 1}

    client = ReplayingClient("congress_bills", served)
    second_run = list(
        adapter(CongressBillActions, congress=117).pages(
            client, since=SINCE, cursor=first_run[0].next_cursor
        )
    )
    assert client.requested[0] == position["list"]
    assert urlsplit(client.requested[1]).path == "/v3/bill/117/hr/7369/actions"
    assert [len(page.records) for page in second_run] == [2, 0]
    assert all(r.external_id.startswith("117-hr-7369:2021-01-04:") for r in second_run[0].records)
    # The empty Senate list still reports its progress, and ends the walk.
    assert urlsplit(second_run[1].request_url).path == SENATE_VA_BILLS
    assert second_run[1].next_cursor is None


def test_actions_follow_pagination_next_within_one_bill() -> None:
    body = document("congress/bill-117-hr-21-actions.json")
    second_url = f"{API}/v3/bill/117/hr/21/actions?offset=5&limit=5&format=json"
    page_one = copy.deepcopy(body)
    page_one["actions"] = body["actions"][:5]
    page_one["pagination"]["next"] = second_url
    page_two = copy.deepcopy(body)
    page_two["actions"] = body["actions"][5:]
    client = ReplayingClient(
        "congress_bills",
        {
            HOUSE_VA_BILLS: committee_bills(committee_bill(117, "HR", "21", "2021-01-04")),
            SENATE_VA_BILLS: committee_bills(),
            second_url: page_two,
            "/v3/bill/117/hr/21/actions": page_one,
        },
    )
    pages = list(
        adapter(CongressBillActions, congress=117, committees=["hsvr00"]).pages(
            client, since=SINCE, cursor=None
        )
    )

    assert [len(page.records) for page in pages] == [5, 5]
    assert client.requested[2] == second_url
    assert json.loads(pages[0].next_cursor)["detail"] == second_url
    assert pages[1].next_cursor is None


def test_a_misrouted_actions_answer_keeps_the_bill_it_describes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = ReplayingClient(
        "congress_bills",
        {
            HOUSE_VA_BILLS: committee_bills(
                committee_bill(117, "HR", "21", "2021-01-04"),
                committee_bill(117, "HR", "7369", "2022-04-01"),
            ),
        },
    )
    with caplog.at_level(logging.WARNING):
        pages = list(
            adapter(CongressBillActions, congress=117, committees=["hsvr00"]).pages(
                client, since=SINCE, cursor=None
            )
        )

    # The replay answers H.R. 7369's actions with H.R. 21's body: nothing is filed under 7369.
    assert [len(page.records) for page in pages] == [10, 0]
    assert "answered for bill 117-hr-21" in caplog.text


# --- congress_committee_meetings -----------------------------------------------------------------


def meeting_detail(event_id: str, title: str, when: str) -> dict[str, Any]:
    detail = document("congress/committee-meeting-detail.json")
    detail["committeeMeeting"].update(eventId=event_id, title=title, date=when)
    detail["request"]["eventId"] = event_id
    return detail


def test_meetings_parse_the_recorded_house_list() -> None:
    page = adapter(CongressCommitteeMeetings).parse(
        recording("congress/committee-meeting-list-119-house.json")
    )

    assert [record.external_id for record in page.records] == [
        "119-house-119569",
        "119-house-119565",
        "119-house-119517",
    ]
    assert page.next_cursor == f"{API}/v3/committee-meeting/119/house?offset=3&limit=3&format=json"
    assert page.records[0].payload["updateDate"] == "2026-09-18T21:34:11Z"


def test_meetings_parse_the_recorded_detail() -> None:
    body = document("congress/committee-meeting-detail.json")
    page = adapter(CongressCommitteeMeetings).parse(
        recording("congress/committee-meeting-detail.json")
    )

    (record,) = page.records
    assert record.external_id == "119-house-119565"
    assert record.title == "Various Measures"
    assert record.published_at == datetime(2026, 9, 16, 14, 0, tzinfo=UTC)
    assert record.published_at.utcoffset() is not None
    assert record.summary == "Markup, Scheduled: House Financial Services"
    assert record.url == "https://www.congress.gov/event/119th-congress/house-event/119565"
    assert record.payload == body["committeeMeeting"]
    assert len(record.payload["meetingDocuments"]) == 46


def test_meetings_pages_read_details_then_stop_when_the_list_repeats() -> None:
    client = ReplayingClient(
        "congress_bills",
        {
            "/v3/committee-meeting/119/house/119569": meeting_detail(
                "119569", "Oversight of the VA", "2026-09-17T14:00:00Z"
            ),
            "/v3/committee-meeting/119/house/119517": meeting_detail(
                "119517", "Budget Hearing", "2026-09-10T13:30:00Z"
            ),
        },
    )
    seen: list[Page] = []

    with pytest.raises(PagingLoopError, match="repeats"):
        collect(
            adapter(CongressCommitteeMeetings, chambers=["house"]).pages(
                client, since=SINCE, cursor=None
            ),
            seen,
        )
    (first,) = seen
    assert [record.external_id for record in first.records] == [
        "119-house-119569",
        "119-house-119565",
        "119-house-119517",
    ]
    assert [record.title for record in first.records] == [
        "Oversight of the VA",
        "Various Measures",
        "Budget Hearing",
    ]
    assert query(client.requested[0])["fromDateTime"] == ["2026-09-01T12:30:00Z"]
    assert urlsplit(client.requested[1]).path == "/v3/committee-meeting/119/house/119569"
    assert query(client.requested[1]) == {"format": ["json"]}
    assert json.loads(first.next_cursor) == {
        "list": f"{API}/v3/committee-meeting/119/house?offset=3&limit=3&format=json",
        "skip": 0,
    }


def test_meetings_stop_at_max_details_and_resume_inside_the_list_page() -> None:
    served = {
        "/v3/committee-meeting/119/house/119569": meeting_detail(
            "119569", "A", "2026-09-17T14:00:00Z"
        ),
        "/v3/committee-meeting/119/house/119517": meeting_detail(
            "119517", "C", "2026-09-10T14:00:00Z"
        ),
    }
    client = ReplayingClient("congress_bills", served)
    (first,) = adapter(CongressCommitteeMeetings, max_details=2).pages(
        client, since=SINCE, cursor=None
    )

    assert [record.title for record in first.records] == ["A", "Various Measures"]
    assert json.loads(first.next_cursor) == {"list": client.requested[0], "skip": 2}

    client = ReplayingClient("congress_bills", served)
    (resumed,) = adapter(CongressCommitteeMeetings, max_details=1).pages(
        client, since=SINCE, cursor=first.next_cursor
    )
    assert [record.title for record in resumed.records] == ["C"]
    assert len(client.requested) == 2
    assert json.loads(resumed.next_cursor)["list"].endswith("/house?offset=3&limit=3&format=json")


# --- congress_committee_reports ------------------------------------------------------------------


def test_reports_parse_the_recorded_119th_list() -> None:
    page = adapter(CongressCommitteeReports).parse(
        recording("congress/committee-report-list-119.json")
    )

    assert [record.external_id for record in page.records] == [
        "119-hrpt-1",
        "119-hrpt-2",
        "119-hrpt-3",
    ]
    assert [record.title for record in page.records] == [
        "H. Rept. 119-1",
        "H. Rept. 119-2",
        "H. Rept. 119-3",
    ]
    assert page.records[0].published_at == datetime(2025, 5, 27, 14, 12, 39, tzinfo=UTC)
    assert page.records[2].published_at == datetime(2025, 5, 27, 14, 12, 42, tzinfo=UTC)
    assert page.records[0].payload["cmte_rpt_id"] == 289187
    assert page.next_cursor == f"{API}/v3/committee-report/119?offset=3&limit=3&format=json"


def test_reports_name_later_parts_and_read_the_spaced_timestamp_form() -> None:
    body = document("congress/committee-report-list-119.json")
    body["reports"][1].update(part=2, number=1, updateDate="2022-05-20 16:27:57+00:00")
    page = adapter(CongressCommitteeReports).parse(json.dumps(body).encode())

    assert [record.external_id for record in page.records][:2] == ["119-hrpt-1", "119-hrpt-1-part2"]
    assert page.records[1].published_at == datetime(2022, 5, 20, 16, 27, 57, tzinfo=UTC)


def test_reports_pages_yield_the_first_page_then_stop_on_the_replayed_next() -> None:
    client = ReplayingClient("congress_bills")
    seen: list[Page] = []

    with pytest.raises(PagingLoopError):
        collect(adapter(CongressCommitteeReports).pages(client, since=SINCE, cursor=None), seen)
    assert [len(page.records) for page in seen] == [3]
    assert client.requested[0] == (
        f"{API}/v3/committee-report/119?format=json&offset=0&limit=250"
        "&fromDateTime=2026-09-01T12%3A30%3A00Z"
    )
    assert client.requested[1] == f"{API}/v3/committee-report/119?offset=3&limit=3&format=json"


# --- congress_crs_reports ------------------------------------------------------------------------


def test_crs_parse_the_recorded_list() -> None:
    page = adapter(CongressCrsReports).parse(recording("congress/crsreport-list.json"))

    first, second = page.records
    assert first.external_id == "LSB11481"
    assert first.title == "Standing to Sue for Informational Injuries"
    assert first.published_at == datetime(2026, 9, 14, 4, 0, tzinfo=UTC)
    assert first.url == f"{API}/v3/crsreport/LSB11481"
    assert first.summary == "Posts, Active"
    assert first.payload["updateDate"] == "2026-09-14T12:08:45Z"
    assert second.external_id == "R49346"
    assert second.published_at == datetime(2026, 9, 10, 4, 0, tzinfo=UTC)


def test_crs_pages_pass_the_unencoded_next_as_is_and_stop_on_the_loop() -> None:
    client = ReplayingClient("congress_bills")
    seen: list[Page] = []

    with pytest.raises(PagingLoopError, match="repeats 2 records"):
        collect(adapter(CongressCrsReports).pages(client, since=None, cursor=None), seen)
    assert [[record.external_id for record in page.records] for page in seen] == [
        ["LSB11481", "R49346"]
    ]
    assert client.requested == [
        f"{API}/v3/crsreport?format=json&offset=0&limit=250",
        f"{API}/v3/crsreport?sort=updateDate desc&offset=2&limit=2&format=json",
    ]


def test_crs_pages_end_cleanly_without_next() -> None:
    body = document("congress/crsreport-list.json")
    del body["pagination"]["next"]
    client = ReplayingClient("congress_bills", {"/v3/crsreport": body})

    pages = list(adapter(CongressCrsReports).pages(client, since=SINCE, cursor=None))

    assert len(pages) == 1
    assert len(pages[0].records) == 2
    assert pages[0].next_cursor is None
    assert len(client.requested) == 1


def test_crs_pages_resume_by_requesting_the_cursor_url() -> None:
    body = document("congress/crsreport-list.json")
    del body["pagination"]["next"]
    cursor = f"{API}/v3/crsreport?sort=updateDate desc&offset=2&limit=2&format=json"
    client = ReplayingClient("congress_bills", {"/v3/crsreport": body})

    list(adapter(CongressCrsReports).pages(client, since=SINCE, cursor=cursor))

    assert client.requested == [cursor]


def test_next_urls_lose_any_api_key_and_may_not_leave_the_service() -> None:
    body = document("congress/crsreport-list.json")
    body["pagination"]["next"] = f"{API}/v3/crsreport?offset=2&api_key=SECRET&limit=2"
    page = adapter(CongressCrsReports).parse(json.dumps(body).encode())
    assert page.next_cursor == f"{API}/v3/crsreport?offset=2&limit=2"

    body["pagination"]["next"] = "https://elsewhere.example/v3/crsreport?offset=2"
    with pytest.raises(SourceShapeError) as caught:
        adapter(CongressCrsReports).parse(json.dumps(body).encode())
    assert caught.value.field == "pagination.next"

    client = ReplayingClient("congress_bills")
    with pytest.raises(SourceShapeError, match="cursor"):
        next(adapter(CongressCrsReports).pages(client, since=None, cursor="http://10.0.0.1/x"))
    assert client.requested == []


# --- shapes that must fail, one broken copy of a real body at a time -----------------------------


def _broken(relative: str, breaks: Any) -> bytes:
    body = document(relative)
    breaks(body)
    return json.dumps(body).encode()


def _set(path: list[Any], value: Any) -> Any:
    def apply(body: Any) -> None:
        target = body
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return apply


def _delete(path: list[Any]) -> Any:
    def apply(body: Any) -> None:
        target = body
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return apply


BILLS = "congress/bill-117-hr.json"
ACTIONS = "congress/bill-117-hr-21-actions.json"
MEETINGS = "congress/committee-meeting-list-119-house.json"
DETAIL = "congress/committee-meeting-detail.json"
REPORTS = "congress/committee-report-list-119.json"
CRS = "congress/crsreport-list.json"

BROKEN_SHAPES = [
    (CongressBills, BILLS, _delete(["bills"]), "bills", None),
    (CongressBills, BILLS, _set(["bills", 1], "7343"), "bills[1]", "7343"),
    (CongressBills, BILLS, _delete(["bills", 0, "number"]), "bills[0].number", None),
    (
        CongressBills,
        BILLS,
        _set(["bills", 2, "latestAction", "actionDate"], "2022-13-45"),
        "bills[2].latestAction.actionDate",
        "2022-13-45",
    ),
    (CongressBills, BILLS, _set(["bills", 0, "type"], "H R"), "bills[0].type", "H R"),
    (CongressBills, BILLS, _set(["pagination", "next"], 20), "pagination.next", 20),
    (
        CongressBills,
        BILLS,
        _set(["committee-bills"], {"bills": {"not": "a list"}}),
        "committee-bills.bills",
        {"not": "a list"},
    ),
    (CongressBillActions, ACTIONS, _delete(["actions"]), "actions", None),
    (CongressBillActions, ACTIONS, _set(["actions", 3], None), "actions[3]", None),
    (
        CongressBillActions,
        ACTIONS,
        _delete(["actions", 0, "actionDate"]),
        "actions[0].actionDate",
        None,
    ),
    (
        CongressBillActions,
        ACTIONS,
        _set(["actions", 4, "actionDate"], "Jan 5"),
        "actions[4].actionDate",
        "Jan 5",
    ),
    (CongressBillActions, ACTIONS, _delete(["request"]), "request", None),
    (
        CongressCommitteeMeetings,
        MEETINGS,
        _delete(["committeeMeetings"]),
        "committeeMeetings",
        None,
    ),
    (
        CongressCommitteeMeetings,
        MEETINGS,
        _set(["committeeMeetings", 2], [1]),
        "committeeMeetings[2]",
        [1],
    ),
    (
        CongressCommitteeMeetings,
        MEETINGS,
        _delete(["committeeMeetings", 1, "eventId"]),
        "committeeMeetings[1].eventId",
        None,
    ),
    (
        CongressCommitteeMeetings,
        MEETINGS,
        _set(["committeeMeetings", 0, "updateDate"], "yesterday"),
        "committeeMeetings[0].updateDate",
        "yesterday",
    ),
    (
        CongressCommitteeMeetings,
        DETAIL,
        _set(["committeeMeeting", "date"], "2026-09-16T14:00:00"),
        "committeeMeeting.date",
        "2026-09-16T14:00:00",
    ),
    (
        CongressCommitteeMeetings,
        DETAIL,
        _set(["committeeMeeting", "eventId"], "../119565"),
        "committeeMeeting.eventId",
        "../119565",
    ),
    (CongressCommitteeReports, REPORTS, _set(["reports"], {}), "reports", {}),
    (
        CongressCommitteeReports,
        REPORTS,
        _delete(["reports", 2, "number"]),
        "reports[2].number",
        None,
    ),
    (
        CongressCommitteeReports,
        REPORTS,
        _set(["reports", 0, "updateDate"], "2025-05-27T99:12:39Z"),
        "reports[0].updateDate",
        "2025-05-27T99:12:39Z",
    ),
    (
        CongressCommitteeReports,
        REPORTS,
        _set(["reports", 1, "part"], "one"),
        "reports[1].part",
        "one",
    ),
    (CongressCrsReports, CRS, _delete(["CRSReports"]), "CRSReports", None),
    (CongressCrsReports, CRS, _set(["CRSReports", 0], "LSB11481"), "CRSReports[0]", "LSB11481"),
    (CongressCrsReports, CRS, _delete(["CRSReports", 1, "id"]), "CRSReports[1].id", None),
    (
        CongressCrsReports,
        CRS,
        _set(["CRSReports", 1, "publishDate"], "10 Sept 2026"),
        "CRSReports[1].publishDate",
        "10 Sept 2026",
    ),
    (
        CongressCrsReports,
        CRS,
        _set(["CRSReports", 0, "title"], ["x"]),
        "CRSReports[0].title",
        ["x"],
    ),
]


@pytest.mark.parametrize(
    ("adapter_class", "relative", "breaks", "field", "value"),
    BROKEN_SHAPES,
    ids=[f"{case[0].name}-{case[3]}" for case in BROKEN_SHAPES],
)
def test_a_wrong_shape_names_the_source_the_field_and_the_value(
    adapter_class: type[SourceAdapter], relative: str, breaks: Any, field: str, value: Any
) -> None:
    with pytest.raises(SourceShapeError) as caught:
        adapter(adapter_class).parse(_broken(relative, breaks))

    error = caught.value
    assert error.source_id == adapter_class.name
    assert error.field == field
    assert error.value == value
    assert f"source {adapter_class.name!r}" in str(error)
    assert repr(field) in str(error)


@pytest.mark.parametrize(
    "adapter_class",
    [
        CongressBills,
        CongressBillActions,
        CongressCommitteeMeetings,
        CongressCommitteeReports,
        CongressCrsReports,
    ],
)
def test_a_body_that_is_not_json_is_a_shape_error(adapter_class: type[SourceAdapter]) -> None:
    with pytest.raises(SourceShapeError) as caught:
        adapter(adapter_class).parse(b"<html>API rate limit exceeded</html>")
    assert caught.value.field == "body"
    assert caught.value.source_id == adapter_class.name
