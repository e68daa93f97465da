"""Senate Lobbying Disclosure Act API v1: filings that report lobbying under one general issue code.

Pages are continued by the API's `next` URL, treated as an opaque cursor; auth is the client's job.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from va_signals.catalog.models import Source
from va_signals.sources import register
from va_signals.sources.base import (
    Page,
    SourceAdapter,
    SourceClient,
    SourceRecord,
    build_record,
    continuation_url,
    load_json,
    parse_datetime,
    require,
    since_date,
    walk_pages,
)

VETERANS_ISSUE_CODE = "VET"
# The LDA's constant for the department (constants/filing/governmententities/); the name is a
# fallback in case the id ever differs between the Senate and the unified lda.gov systems.
VA_ENTITY_ID = 42
VA_ENTITY_NAME = "Veterans Affairs, Dept of (VA)"
# The API serves at most 25 filings a page.
MAX_PAGE_SIZE = 25

# The throttle message of the API's framework: "... Expected available in 28 seconds."
_THROTTLE_WAIT = re.compile(r"available in (\d+(?:\.\d+)?) seconds?", re.IGNORECASE)


def has_issue_code(filing: Mapping[str, Any], issue_code: str = VETERANS_ISSUE_CODE) -> bool:
    """True when one of the filing's lobbying activities has general issue code `issue_code`."""
    return any(activity.get("general_issue_code") == issue_code for activity in _activities(filing))


def names_va_under_issue(filing: Mapping[str, Any], issue_code: str = VETERANS_ISSUE_CODE) -> bool:
    """True when an activity with `issue_code` lists the Department of Veterans Affairs among the
    government entities contacted. Registrations list no entities, so they never qualify."""
    for activity in _activities(filing):
        if activity.get("general_issue_code") != issue_code:
            continue
        entities = activity.get("government_entities")
        if isinstance(entities, list) and any(_is_va(entity) for entity in entities):
            return True
    return False


def retry_after_seconds_from_body(body: bytes | str | Mapping[str, Any]) -> float | None:
    """The wait a 429 body announces in its `detail` text, or None when it names none.

    The API's 429 answer also carries a Retry-After header, which the client should prefer.
    """
    data: Any = body
    if isinstance(body, bytes | str):
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return None
    detail = data.get("detail") if isinstance(data, Mapping) else None
    if not isinstance(detail, str):
        return None
    match = _THROTTLE_WAIT.search(detail)
    return float(match.group(1)) if match else None


def _activities(filing: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    activities = filing.get("lobbying_activities")
    if not isinstance(activities, list):
        return []
    return [activity for activity in activities if isinstance(activity, Mapping)]


def _is_va(entity: Any) -> bool:
    if not isinstance(entity, Mapping):
        return False
    return entity.get("id") == VA_ENTITY_ID or entity.get("name") == VA_ENTITY_NAME


@register
class LdaFilingsAdapter(SourceAdapter):
    """Lists filings with a lobbying activity under `params.issue_code`, oldest posted first."""

    name = "lda_filings"

    def __init__(self, source: Source, base_url: str) -> None:
        super().__init__(source, base_url)
        issue_code = source.params.get("issue_code")
        if not isinstance(issue_code, str) or not issue_code:
            raise ValueError(
                f"source {source.id!r}: key 'params.issue_code' should be a general issue code "
                f"such as 'VET' (value: {issue_code!r})"
            )
        page_size = source.params.get("page_size", MAX_PAGE_SIZE)
        if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
            raise ValueError(
                f"source {source.id!r}: key 'params.page_size' should be a positive integer "
                f"(value: {page_size!r})"
            )
        self.issue_code: str = issue_code
        self.page_size: int = min(page_size, MAX_PAGE_SIZE)

    def first_url(self, since: datetime | None) -> str:
        """The URL of the first page, with the issue filter, ordering and page size."""
        query: list[tuple[str, str]] = [
            ("lobbying_activity_general_issue_code", self.issue_code),
            # Oldest first: filings posted during a run land on the last page instead of
            # shifting every page under a reader that is part-way through.
            ("ordering", "dt_posted"),
            ("page_size", str(self.page_size)),
        ]
        if since is not None:
            query.append(("filing_dt_posted_after", since_date(since)))
        return f"{self.base_url}/api/v1/filings/?{urlencode(query)}"

    def pages(
        self, client: SourceClient, *, since: datetime | None, cursor: str | None
    ) -> Iterator[Page]:
        first = cursor or self.first_url(since)
        return walk_pages(
            self, client, first, keep=lambda r: has_issue_code(r.payload, self.issue_code)
        )

    def parse(self, body: bytes) -> Page:
        sid = self.source_id
        data = load_json(sid, body)
        results = require(sid, data, "results", list)
        records = [self._record(index, item) for index, item in enumerate(results)]
        return Page(records=records, next_cursor=self._next_cursor(data))

    def _record(self, index: int, item: Any) -> SourceRecord:
        sid = self.source_id
        path = f"results[{index}]"
        filing_uuid = require(sid, item, "filing_uuid", str, path=path)
        posted = require(sid, item, "dt_posted", str, path=path)
        registrant = require(sid, item, "registrant", Mapping, path=path)
        client = require(sid, item, "client", Mapping, path=path)
        registrant_name = require(sid, registrant, "name", str, path=f"{path}.registrant")
        client_name = require(sid, client, "name", str, path=f"{path}.client")
        descriptions = [
            activity["description"].strip()
            for activity in _activities(item)
            if activity.get("general_issue_code") == self.issue_code
            and isinstance(activity.get("description"), str)
            and activity["description"].strip()
        ]
        return build_record(
            sid,
            path,
            external_id=filing_uuid,
            title=f"{registrant_name} for {client_name}: {_filing_label(item)}",
            summary="; ".join(descriptions) or None,
            url=_first_text(item, "filing_document_url", "url"),
            published_at=parse_datetime(sid, f"{path}.dt_posted", posted),
            payload=dict(item),
        )

    def _next_cursor(self, data: Mapping[str, Any]) -> str | None:
        return continuation_url(self.source_id, "next", data.get("next"), self.base_url)


def _filing_label(filing: Mapping[str, Any]) -> str:
    # e.g. "2018 1st Quarter - Report" or "2017 Registration"; the display text already says
    # which quarter and whether it is a report, an amendment or a termination.
    year = filing.get("filing_year")
    kind = _first_text(filing, "filing_type_display", "filing_period_display", "filing_type")
    parts = [str(year) if isinstance(year, int) and not isinstance(year, bool) else None, kind]
    return " ".join(part for part in parts if part) or "filing"


def _first_text(item: Mapping[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = item.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None
