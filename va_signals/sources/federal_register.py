"""Federal Register API v1 documents listing, filtered by agency or by CFR title.

Pages are continued by the API's own `next_page_url`, which is treated as an opaque cursor.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any, NamedTuple
from urllib.parse import urlencode

from va_signals.catalog.models import Source
from va_signals.sources import register
from va_signals.sources.base import (
    Page,
    SourceAdapter,
    SourceClient,
    SourceRecord,
    SourceShapeError,
    build_record,
    continuation_url,
    load_json,
    parse_date,
    require,
    since_date,
    walk_pages,
)

VA_AGENCY_SLUG = "veterans-affairs-department"
VA_CFR_TITLE = 38
# The API refuses larger pages.
MAX_PER_PAGE = 1000
# Only what the record and the relevance checks use, plus what a reader of the payload needs to
# judge a document (type, dates, dockets); asking for every field makes pages several MB.
DOCUMENT_FIELDS: tuple[str, ...] = (
    "document_number",
    "title",
    "type",
    "action",
    "abstract",
    "publication_date",
    "effective_on",
    "comments_close_on",
    "agencies",
    "cfr_references",
    "citation",
    "docket_ids",
    "regulation_id_numbers",
    "significant",
    "html_url",
    "pdf_url",
)


class VaRelevance(NamedTuple):
    """Why a Federal Register document matters to veterans' policy, if it does."""

    from_va: bool
    cites_title_38: bool


def is_from_agency(document: Mapping[str, Any], slug: str = VA_AGENCY_SLUG) -> bool:
    """True when `slug` is among the document's `agencies[].slug` (any level of the hierarchy)."""
    agencies = document.get("agencies")
    if not isinstance(agencies, list):
        return False
    return any(isinstance(agency, Mapping) and agency.get("slug") == slug for agency in agencies)


def cites_cfr_title(document: Mapping[str, Any], title: int = VA_CFR_TITLE) -> bool:
    """True when one of the document's `cfr_references` is to CFR title `title`."""
    references = document.get("cfr_references")
    if not isinstance(references, list):
        return False
    return any(
        isinstance(reference, Mapping) and _as_title_number(reference.get("title")) == title
        for reference in references
    )


def va_relevance(document: Mapping[str, Any]) -> VaRelevance:
    """Classify one raw document: published by VA, citing 38 CFR, both, or neither."""
    return VaRelevance(
        from_va=is_from_agency(document, VA_AGENCY_SLUG),
        cites_title_38=cites_cfr_title(document, VA_CFR_TITLE),
    )


def _as_title_number(value: Any) -> int | None:
    # The API sends integers; a numeric string is accepted so a serialization change does not
    # silently drop every match. bool is excluded because it is an int subclass.
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


@register
class FederalRegisterAdapter(SourceAdapter):
    """Lists the documents of one agency (`params.agency`) or one CFR title (`params.cfr_title`)."""

    name = "federal_register"

    def __init__(self, source: Source, base_url: str) -> None:
        super().__init__(source, base_url)
        # Checked here so a catalog mistake fails when the asset is built, not mid-run.
        self._filter = _listing_filter(source)
        self._per_page = _per_page(source)

    def first_url(self, since: datetime | None) -> str:
        """The URL of the first page, with the filter, paging and field list in its query."""
        query: list[tuple[str, str]] = [self._filter]
        if since is not None:
            query.append(("conditions[publication_date][gte]", since_date(since)))
        query += [("per_page", str(self._per_page)), ("order", "oldest")]
        query += [("fields[]", field) for field in DOCUMENT_FIELDS]
        return f"{self.base_url}/api/v1/documents.json?{urlencode(query)}"

    def pages(
        self, client: SourceClient, *, since: datetime | None, cursor: str | None
    ) -> Iterator[Page]:
        return walk_pages(self, client, cursor or self.first_url(since), keep=self._keeps)

    def _keeps(self, record: SourceRecord) -> bool:
        """Whether a document belongs to this source, checked locally as well as upstream."""
        key, value = self._filter
        if key.startswith("conditions[agencies]"):
            return is_from_agency(record.payload, value)
        return cites_cfr_title(record.payload, int(value))

    def parse(self, body: bytes) -> Page:
        sid = self.source_id
        data = load_json(sid, body)
        if not isinstance(data, Mapping):
            raise SourceShapeError(sid, "body", data, "is not a JSON object")
        if "results" not in data and data.get("count") == 0:
            # The API leaves `results` out entirely when nothing matches (a weekend, say).
            return Page(records=[], next_cursor=None)
        results = require(sid, data, "results", list)
        records = [self._record(index, item) for index, item in enumerate(results)]
        return Page(records=records, next_cursor=self._next_cursor(data))

    def _record(self, index: int, item: Any) -> SourceRecord:
        sid = self.source_id
        path = f"results[{index}]"
        document_number = require(sid, item, "document_number", str, path=path)
        title = require(sid, item, "title", str, path=path)
        published = require(sid, item, "publication_date", str, path=path)
        summary = item.get("abstract")
        url = item.get("html_url")
        return build_record(
            sid,
            path,
            external_id=document_number,
            title=title,
            summary=summary if isinstance(summary, str) and summary else None,
            url=url if isinstance(url, str) and url else None,
            # A calendar date of the printed issue: kept as a date, never shifted by a zone.
            published_on=parse_date(sid, f"{path}.publication_date", published),
            payload=dict(item),
        )

    def _next_cursor(self, data: Mapping[str, Any]) -> str | None:
        return continuation_url(
            self.source_id, "next_page_url", data.get("next_page_url"), self.base_url
        )


def _listing_filter(source: Source) -> tuple[str, str]:
    agency = source.params.get("agency")
    cfr_title = source.params.get("cfr_title")
    if (agency is None) == (cfr_title is None):
        raise ValueError(
            f"source {source.id!r}: key 'params' needs exactly one of 'agency' or 'cfr_title' "
            f"(value: {source.params!r})"
        )
    if agency is not None:
        if not isinstance(agency, str) or not agency:
            raise ValueError(
                f"source {source.id!r}: key 'params.agency' should be an agency slug "
                f"(value: {agency!r})"
            )
        return ("conditions[agencies][]", agency)
    if _as_title_number(cfr_title) is None:
        raise ValueError(
            f"source {source.id!r}: key 'params.cfr_title' should be a CFR title number "
            f"(value: {cfr_title!r})"
        )
    return ("conditions[cfr][title]", str(_as_title_number(cfr_title)))


def _per_page(source: Source) -> int:
    value = source.params.get("per_page", MAX_PER_PAGE)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"source {source.id!r}: key 'params.per_page' should be a positive integer "
            f"(value: {value!r})"
        )
    return min(value, MAX_PER_PAGE)
