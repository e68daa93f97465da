"""eCFR versioner API: when one CFR title was last amended, as one record per amendment date.

The record's id carries the date, so a new `latest_amended_on` is a new record and a rerun on
the same date reproduces the same record.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import date, datetime
from typing import Any

from va_signals.catalog.models import Source
from va_signals.sources import register
from va_signals.sources.base import (
    Page,
    PagingGuard,
    SourceAdapter,
    SourceClient,
    SourceRecord,
    SourceShapeError,
    build_record,
    load_json,
    parse_date,
    require,
)

# Fields of a title object that move every day without the title changing (the eCFR's own
# freshness stamps); kept out of the payload so an unchanged title yields an identical record.
VOLATILE_TITLE_FIELDS: frozenset[str] = frozenset({"up_to_date_as_of", "latest_issue_date"})


def amendment_id(title_number: int, amended_on: date) -> str:
    """The external id of one amendment of a title, e.g. `title-38@2026-08-10`."""
    return f"title-{title_number}@{amended_on.isoformat()}"


@register
class EcfrTitleAdapter(SourceAdapter):
    """Reads `titles.json` and reports the latest amendment date of title `params.title`."""

    name = "ecfr_title38"

    def __init__(self, source: Source, base_url: str) -> None:
        super().__init__(source, base_url)
        number = source.params.get("title")
        if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= 50:
            raise ValueError(
                f"source {source.id!r}: key 'params.title' should be a CFR title number 1-50 "
                f"(value: {number!r})"
            )
        self.title_number: int = number

    def first_url(self) -> str:
        """The one request this source makes."""
        return f"{self.base_url}/api/versioner/v1/titles.json"

    def pages(
        self, client: SourceClient, *, since: datetime | None, cursor: str | None
    ) -> Iterator[Page]:
        # One small document lists every title; `since` cannot narrow it and there is no paging.
        guard = PagingGuard(self.source_id)
        url = cursor or self.first_url()
        guard.follow(url)
        response = client.get(url)
        page = self.parse(response.content).model_copy(update={"request_url": url})
        yield guard.admit(page)

    def parse(self, body: bytes) -> Page:
        sid = self.source_id
        data = load_json(sid, body)
        titles = require(sid, data, "titles", list)
        for index, item in enumerate(titles):
            path = f"titles[{index}]"
            if require(sid, item, "number", int, path=path) == self.title_number:
                return Page(records=[self._record(path, item)], next_cursor=None)
        raise SourceShapeError(
            sid, "titles[].number", self.title_number, f"is not among {len(titles)} titles"
        )

    def _record(self, path: str, item: Mapping[str, Any]) -> SourceRecord:
        sid = self.source_id
        raw_date = item.get("latest_amended_on")
        amended_on = parse_date(sid, f"{path}.latest_amended_on", raw_date)
        if amended_on is None:
            # A reserved title has no amendment date; title 38 never should.
            raise SourceShapeError(sid, f"{path}.latest_amended_on", raw_date, "is missing")
        name = item.get("name")
        label = f"Title {self.title_number}"
        return build_record(
            sid,
            path,
            external_id=amendment_id(self.title_number, amended_on),
            title=f"{label} amended",
            summary=(
                f"{label} of the CFR ({name}) was last amended on {amended_on.isoformat()}."
                if isinstance(name, str) and name
                else f"{label} of the CFR was last amended on {amended_on.isoformat()}."
            ),
            url=f"{self.base_url}/current/title-{self.title_number}",
            published_on=amended_on,
            payload={key: value for key, value in item.items() if key not in VOLATILE_TITLE_FIELDS},
        )
