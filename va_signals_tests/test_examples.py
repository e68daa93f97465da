"""The sample recordings of `make demo` (examples/recordings): every body parses with its source's
adapter, and every enabled source pages through them to the end with the counts written there."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import yaml

from va_signals.catalog import default_catalog
from va_signals.recordings import RecordedResponse, ReplayTransport, load_manifests
from va_signals.resilience.http import ResilientClient
from va_signals.sources import build_adapter
from va_signals.sources.base import Page, SourceAdapter
from va_signals_tests.recordings import EXAMPLE_RECORDINGS

PROVENANCE = "hand-written sample for va-signals make demo, not real data"
SERVICES = {"www.federalregister.gov", "www.ecfr.gov", "api.congress.gov", "lda.senate.gov"}

FR_VA_ONLY = ["2026-21437", "2026-23544", "2026-25033"]
FR_VA_AND_38 = ["2026-22015", "2026-22608", "2026-24102", "2026-24587"]
FR_SBA_38 = "2026-23190"
LDA_FILINGS = [f"00000000-5a4d-4e10-8000-00000000000{n}" for n in range(1, 5)]

# Bill action ids end in a digest of the action; these are the ids without it.
ACTIONS = {
    "119-hr-2941": ["2025-05-02:H12100", "2025-04-17:H11100", "2025-04-17:1000"],
    "119-hr-3318": [
        "2026-11-19:H12200",
        "2026-09-17:H19000",
        "2026-06-11:H13100",
        "2025-05-08:H11100",
        "2025-05-08:1000",
    ],
    "119-hr-4127": ["2025-06-24:H11100", "2025-06-24:1000"],
    "119-s-1187": [
        "2026-09-22:H11100",
        "2026-09-22:H14000",
        "2026-09-18:-",
        "2026-09-18:17000",
        "2026-07-15:-",
        "2025-03-27:-",
    ],
    "119-s-2264": ["2025-07-10:-", "2025-07-10:10000"],
}


def _actions(bill: str) -> list[str]:
    return [f"{bill}:{suffix}" for suffix in ACTIONS[bill]]


# What parse() of each body returns: the owning sources, record ids, and whether it continues.
PARSED: dict[str, tuple[tuple[str, ...], list[str], bool]] = {
    "federal_register/documents-page1.json": (
        ("federal_register_va", "federal_register_title38"),
        ["2026-21437", "2026-22015", "2026-22608", FR_SBA_38, "2026-23544"],
        True,
    ),
    "federal_register/documents-page2.json": (
        ("federal_register_va", "federal_register_title38"),
        ["2026-24102", "2026-24587", "2026-25033"],
        False,
    ),
    "ecfr/titles.json": (("ecfr_title38",), ["title-38@2026-11-16"], False),
    "congress/committee-bills-house-hsvr00.json": (
        ("congress_bills",),
        ["118-hr-8371", "119-hr-2941", "119-hr-3318", "119-hr-4127", "119-s-1187"],
        False,
    ),
    "congress/committee-bills-senate-ssva00.json": (
        ("congress_bills",),
        ["119-s-1187", "119-s-2264"],
        False,
    ),
    **{
        f"congress/bill-{bill}-actions.json": (("congress_bill_actions",), _actions(bill), False)
        for bill in ACTIONS
    },
    "congress/committee-meeting-list-119-house.json": (
        ("congress_committee_meetings",),
        ["119-house-119744", "119-house-119701"],
        False,
    ),
    "congress/committee-meeting-list-119-senate.json": (
        ("congress_committee_meetings",),
        ["119-senate-336958", "119-senate-336912"],
        False,
    ),
    **{
        f"congress/committee-meeting-119-{chamber}-{event}.json": (
            ("congress_committee_meetings",),
            [f"119-{chamber}-{event}"],
            False,
        )
        for chamber, event in [
            ("house", "119701"),
            ("house", "119744"),
            ("senate", "336912"),
            ("senate", "336958"),
        ]
    },
    "congress/committee-report-list-119.json": (
        ("congress_committee_reports",),
        ["119-hrpt-498", "119-hrpt-498-part2", "119-hrpt-512", "119-srpt-230"],
        False,
    ),
    "congress/crsreport-list.json": (
        ("congress_crs_reports",),
        ["R90001", "IF90002", "R90003", "IN90004", "R90005"],
        False,
    ),
    "lda/filings-list.json": (("lda_filings",), LDA_FILINGS, False),
}

FR = "https://www.federalregister.gov/api/v1"
CONGRESS = "https://api.congress.gov/v3"
HOUSE_BILLS = f"{CONGRESS}/committee/house/hsvr00/bills"
SENATE_BILLS = f"{CONGRESS}/committee/senate/ssva00/bills"

# Per enabled source: pages, the records of each page, every record id in order, and the URLs
# (without query) it requests, all answered from the samples.
PAGING: dict[str, tuple[list[int], list[str], list[str]]] = {
    "federal_register_va": (
        [4, 3],
        ["2026-21437", "2026-22015", "2026-22608", "2026-23544"]
        + ["2026-24102", "2026-24587", "2026-25033"],
        [f"{FR}/documents.json", f"{FR}/documents"],
    ),
    "federal_register_title38": (
        [3, 2],
        ["2026-22015", "2026-22608", FR_SBA_38, "2026-24102", "2026-24587"],
        [f"{FR}/documents.json", f"{FR}/documents"],
    ),
    "ecfr_title38": (
        [1],
        ["title-38@2026-11-16"],
        ["https://www.ecfr.gov/api/versioner/v1/titles.json"],
    ),
    "congress_bills": (
        [4, 1],
        ["119-hr-2941", "119-hr-3318", "119-hr-4127", "119-s-1187", "119-s-2264"],
        [HOUSE_BILLS, SENATE_BILLS],
    ),
    "congress_bill_actions": (
        [3, 5, 2, 6, 2],
        [action for bill in ACTIONS for action in _actions(bill)],
        [
            HOUSE_BILLS,
            f"{CONGRESS}/bill/119/hr/2941/actions",
            f"{CONGRESS}/bill/119/hr/3318/actions",
            f"{CONGRESS}/bill/119/hr/4127/actions",
            f"{CONGRESS}/bill/119/s/1187/actions",
            SENATE_BILLS,
            f"{CONGRESS}/bill/119/s/2264/actions",
        ],
    ),
    "congress_committee_meetings": (
        [2, 2],
        ["119-house-119744", "119-house-119701", "119-senate-336958", "119-senate-336912"],
        [
            f"{CONGRESS}/committee-meeting/119/house",
            f"{CONGRESS}/committee-meeting/119/house/119744",
            f"{CONGRESS}/committee-meeting/119/house/119701",
            f"{CONGRESS}/committee-meeting/119/senate",
            f"{CONGRESS}/committee-meeting/119/senate/336958",
            f"{CONGRESS}/committee-meeting/119/senate/336912",
        ],
    ),
    "congress_committee_reports": (
        [4],
        ["119-hrpt-498", "119-hrpt-498-part2", "119-hrpt-512", "119-srpt-230"],
        [f"{CONGRESS}/committee-report/119"],
    ),
    "congress_crs_reports": (
        [5],
        ["R90001", "IF90002", "R90003", "IN90004", "R90005"],
        [f"{CONGRESS}/crsreport"],
    ),
    "lda_filings": ([4], LDA_FILINGS, ["https://lda.senate.gov/api/v1/filings/"]),
}

_DIGEST = re.compile(r":[0-9a-f]{12}$")


def _short(external_id: str) -> str:
    """A bill action id without its trailing digest; other ids unchanged."""
    return _DIGEST.sub("", external_id) if external_id.count(":") == 3 else external_id


def _entries() -> list[tuple[Path, RecordedResponse]]:
    return [
        (manifest.folder, entry)
        for manifest in load_manifests(EXAMPLE_RECORDINGS)
        for entry in manifest.responses
        if manifest.folder is not None
    ]


def _adapter(source_id: str) -> SourceAdapter:
    catalog = default_catalog()
    source = catalog.source(source_id)
    return build_adapter(source, catalog.service(source.service))


def _walk(source_id: str, since: datetime | None = None) -> tuple[list[Page], list[str]]:
    """Every page the source yields through the replay transport, and the URLs it requested."""
    catalog = default_catalog()
    source = catalog.source(source_id)
    service = catalog.service(source.service)
    transport = ReplayTransport(EXAMPLE_RECORDINGS)
    with httpx.Client(transport=transport) as http:
        client = ResilientClient(http, service, source_id)
        pages = list(_adapter(source_id).pages(client, since=since, cursor=None))
    requested = [str(request.url.copy_with(query=None)) for request in transport.requests]
    return pages, requested


# --- the folder ---------------------------------------------------------------------------------


def test_the_samples_say_they_are_samples() -> None:
    readme = (EXAMPLE_RECORDINGS / "README.md").read_text(encoding="utf-8")
    assert "hand-written samples, not real data" in readme
    manifests = sorted(EXAMPLE_RECORDINGS.glob("*/manifest.yaml"))
    assert [path.parent.name for path in manifests] == [
        "congress",
        "ecfr",
        "federal_register",
        "lda",
    ]
    for path in manifests:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert raw["provenance"] == PROVENANCE, path
    assert {manifest.service for manifest in load_manifests(EXAMPLE_RECORDINGS)} == SERVICES


def test_every_body_file_is_named_by_a_manifest_and_has_an_expectation() -> None:
    served = {f"{folder.name}/{entry.body}" for folder, entry in _entries()}
    on_disk = {
        str(path.relative_to(EXAMPLE_RECORDINGS))
        for path in EXAMPLE_RECORDINGS.glob("*/*")
        if path.name != "manifest.yaml"
    }
    assert served == on_disk
    assert served == set(PARSED)


def test_every_enabled_source_has_sample_paging() -> None:
    enabled = {source.id for source in default_catalog().enabled_sources}
    assert enabled == set(PAGING)


# --- every body parses with its owning adapter --------------------------------------------------


@pytest.mark.parametrize(
    ("folder", "entry"),
    [pytest.param(folder, entry, id=f"{folder.name}/{entry.body}") for folder, entry in _entries()],
)
def test_every_body_exists_and_parses_with_its_adapter(
    folder: Path, entry: RecordedResponse
) -> None:
    path = folder / entry.body
    assert path.is_file(), f"{entry.url}: body {path} is missing"
    assert entry.status == 200
    assert entry.content_type == "application/json"
    owners, ids, continues = PARSED[f"{folder.name}/{entry.body}"]
    body = path.read_bytes()
    for source_id in owners:
        page = _adapter(source_id).parse(body)
        assert [_short(record.external_id) for record in page.records] == ids, source_id
        assert (page.next_cursor is not None) == continues, source_id


def test_the_federal_register_first_page_continues_to_the_recorded_second_page() -> None:
    page = _adapter("federal_register_va").parse(
        (EXAMPLE_RECORDINGS / "federal_register" / "documents-page1.json").read_bytes()
    )
    assert page.next_cursor is not None
    assert httpx.URL(page.next_cursor).path == "/api/v1/documents"


# --- every source pages to the end --------------------------------------------------------------


@pytest.mark.parametrize("source_id", sorted(PAGING))
def test_each_source_pages_through_the_samples_to_the_end(source_id: str) -> None:
    sizes, ids, urls = PAGING[source_id]
    pages, requested = _walk(source_id)
    assert [len(page.records) for page in pages] == sizes
    assert pages[-1].next_cursor is None
    assert all(page.next_cursor for page in pages[:-1])
    external_ids = [record.external_id for page in pages for record in page.records]
    assert [_short(external_id) for external_id in external_ids] == ids
    assert len(set(external_ids)) == len(external_ids)
    assert requested == urls


@pytest.mark.parametrize("source_id", sorted(PAGING))
def test_a_later_run_with_a_watermark_reads_the_same_records(source_id: str) -> None:
    # The second `make demo` run passes a watermark, which only changes query strings: replay
    # ignores them, so it must read the same records (and store them as unchanged).
    first, _ = _walk(source_id)
    later, _ = _walk(source_id, since=datetime(2026, 12, 1, tzinfo=UTC))
    assert [r.external_id for p in later for r in p.records] == [
        r.external_id for p in first for r in p.records
    ]
    assert later[-1].next_cursor is None
