"""The contract every source adapter implements: normalized records, pages and shape errors.

Adapters are plain Python: they receive an HTTP client that already applies auth, limits and
retries, walk the upstream API's own paging, and turn each response into validated records.
"""

from __future__ import annotations

import json
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar, Protocol
from urllib.parse import urljoin, urlsplit

import httpx
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from va_signals.catalog.models import Source

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(value: str) -> str:
    """`value` as PostgreSQL can store it in TEXT and JSONB.

    NUL characters are removed (neither type can hold them) and lone surrogates, which JSON
    `\\ud800` escapes can produce but no encoding can write, become U+FFFD.
    """
    if "\x00" in value:
        value = value.replace("\x00", "")
    return _LONE_SURROGATE.sub("\ufffd", value)


def clean_value(value: Any) -> Any:
    """`value` with every string cleaned (dict keys too) and NaN/Infinity turned into None.

    Two keys that differ only by NUL characters collapse into one; the later one wins, as
    it would for a JSON object that repeats a key.
    """
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {
            clean_text(k) if isinstance(k, str) else k: clean_value(v) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [clean_value(item) for item in value]
    return value


class SourceRecord(BaseModel):
    """One upstream document, normalized to the columns of the `documents` table.

    Every string, top-level or anywhere in `payload` (keys too), is cleaned on the way in, so
    one upstream record with a NUL character or a broken escape is stored instead of failing
    the COPY of its whole page.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    external_id: str = Field(min_length=1)
    title: str
    summary: str | None = None
    url: str | None = None
    published_at: AwareDatetime | None = None
    published_on: date | None = None
    payload: dict[str, Any]

    @model_validator(mode="before")
    @classmethod
    def _clean_strings(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            return {key: clean_value(value) for key, value in data.items()}
        return data


class Page(BaseModel):
    """The records of one upstream response and the cursor that continues after it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    records: list[SourceRecord]
    # Opaque to the runner: the next request to make, stored to resume a truncated run.
    next_cursor: str | None = None
    request_url: str = ""


class SourceError(Exception):
    """Base class for failures attributed to a source; `source_id` names it."""

    def __init__(self, source_id: str, message: str) -> None:
        super().__init__(f"source {source_id!r}: {message}")
        self.source_id = source_id


class SourceShapeError(SourceError):
    """A response did not have the shape the API documents; names the field and the value."""

    def __init__(self, source_id: str, field: str, value: Any, reason: str) -> None:
        shown = repr(value)
        if len(shown) > 200:
            shown = shown[:200] + "..."
        super().__init__(source_id, f"field {field!r} {reason} (value: {shown})")
        self.field = field
        self.value = value


class PagingLoopError(SourceError):
    """The upstream sent us back to a page we already read; continuing would never end."""


class SourceClient(Protocol):
    """What an adapter may do over HTTP. Failures raise; a returned response is a 2xx answer."""

    def get(
        self,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response: ...


class SourceAdapter(ABC):
    """Fetches and parses one catalog source. Subclasses set `name` and implement two methods."""

    name: ClassVar[str]

    def __init__(self, source: Source, base_url: str) -> None:
        self.source = source
        self.base_url = base_url.rstrip("/")

    @property
    def source_id(self) -> str:
        return self.source.id

    @abstractmethod
    def pages(
        self, client: SourceClient, *, since: datetime | None, cursor: str | None
    ) -> Iterator[Page]:
        """Yield pages in order, starting at `cursor` when resuming, else at the first page.

        `since` is the source's watermark: the start of the last complete run, or None on the
        first run. Each page's `next_cursor` must let a later run resume right after it.
        """

    @abstractmethod
    def parse(self, body: bytes) -> Page:
        """Parse one saved response body of this source's main listing into a page."""


def _finite_or_none(text: str) -> float | None:
    number = float(text)
    return number if math.isfinite(number) else None


def load_json(source_id: str, body: bytes) -> Any:
    """Decode a JSON body, or raise a shape error that says what arrived instead.

    `NaN`, `Infinity` and numbers too large for a float (`1e999`) decode as null: JSONB cannot
    hold them, and null keeps the rest of the record, while a shape error would drop the whole
    page over one odd number. A field the adapter requires still fails `require` by name.
    """
    try:
        return json.loads(body, parse_constant=lambda _name: None, parse_float=_finite_or_none)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        preview = body[:80].decode("utf-8", errors="replace")
        raise SourceShapeError(source_id, "body", preview, f"is not valid JSON ({exc})") from None


def require(
    source_id: str, container: Any, key: str, kind: type | tuple[type, ...], *, path: str = ""
):
    """Return `container[key]` when it exists and has the expected type, else a shape error."""
    field = f"{path}.{key}" if path else key
    if not isinstance(container, Mapping):
        raise SourceShapeError(source_id, path or "body", container, "is not a JSON object")
    if key not in container:
        raise SourceShapeError(source_id, field, None, "is missing")
    value = container[key]
    if not isinstance(value, kind):
        expected = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise SourceShapeError(source_id, field, value, f"should be {expected}")
    return value


def build_record(source_id: str, field: str, **values: Any) -> SourceRecord:
    """Validate a record, turning pydantic's report into a shape error naming the field."""
    try:
        return SourceRecord(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        raise SourceShapeError(
            source_id, f"{field}.{key}" if key else field, first.get("input"), first["msg"]
        ) from None


# Exactly YYYY-MM-DD, optionally followed by a full time of day and a zone. Python's
# `fromisoformat` alone also takes '20240102', '2024-W01-1' and '2024-01-02T10', which no
# upstream documents; ASCII digits only, since `\\d` would match other scripts' digits.
_ISO_DATE = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
_ISO_TIME = r"[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?"
_ISO_ZONE = r"(?:Z|[+-][0-9]{2}:[0-9]{2})"
# RFC 3339's space separator is accepted: Congress.gov sends '2022-05-20 16:27:57+00:00'.
_DATE_RE = re.compile(rf"({_ISO_DATE})(?:[T ]{_ISO_TIME}{_ISO_ZONE}?)?")
_TIMESTAMP_RE = re.compile(rf"{_ISO_DATE}[T ]{_ISO_TIME}{_ISO_ZONE}?")

# A stored timestamp is read back in the session's time zone; an instant within a day of
# year 1 or year 9999 would render as a BC date or year 10000 in some zone, which neither
# psycopg nor Python can load.
_EARLIEST_INSTANT = datetime(1, 1, 2, tzinfo=UTC)
_LATEST_INSTANT = datetime(9999, 12, 31, tzinfo=UTC)


def parse_date(source_id: str, field: str, value: Any) -> date | None:
    """Parse an ISO date (YYYY-MM-DD) exactly as given: no time zone, no shift.

    A full ISO timestamp is accepted too and gives its own date part; anything else
    ('2024-01-02garbage', '20240102', '2024-W01-1') is a shape error.
    """
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise SourceShapeError(source_id, field, value, "should be an ISO date string")
    match = _DATE_RE.fullmatch(value)
    if match is None:
        raise SourceShapeError(source_id, field, value, "is not an ISO date (YYYY-MM-DD)")
    try:
        if match.end(1) != len(value):
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        return date.fromisoformat(match.group(1))
    except ValueError:
        raise SourceShapeError(source_id, field, value, "is not an ISO date") from None


def parse_datetime(source_id: str, field: str, value: Any) -> datetime | None:
    """Parse an ISO timestamp that carries its zone (a trailing Z means UTC)."""
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise SourceShapeError(source_id, field, value, "should be an ISO timestamp string")
    if _TIMESTAMP_RE.fullmatch(value) is None:
        raise SourceShapeError(source_id, field, value, "is not an ISO timestamp")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise SourceShapeError(source_id, field, value, "is not an ISO timestamp") from None
    if parsed.tzinfo is None:
        raise SourceShapeError(source_id, field, value, "has no time zone")
    try:
        instant = parsed.astimezone(UTC)
    except OverflowError:
        instant = None
    if instant is None or not _EARLIEST_INSTANT <= instant < _LATEST_INSTANT:
        raise SourceShapeError(
            source_id, field, value, "is outside the years 0001-9999 that can be stored"
        )
    return parsed


class PagingGuard:
    """Stops paging that loops: a continuation already followed, or a page of only seen ids."""

    def __init__(self, source_id: str) -> None:
        self._source_id = source_id
        self._followed: set[str] = set()
        self._seen_ids: set[str] = set()

    def follow(self, url: str) -> None:
        """Record that `url` is about to be requested; raise if it already was."""
        if url in self._followed:
            raise PagingLoopError(
                self._source_id, f"paging returned to a page already read: {url!r}"
            )
        self._followed.add(url)

    def admit(self, page: Page) -> Page:
        """Drop records already seen in this run; raise when nothing new is left on the page."""
        fresh = [record for record in page.records if record.external_id not in self._seen_ids]
        if page.records and not fresh:
            raise PagingLoopError(
                self._source_id,
                f"page {page.request_url!r} repeats {len(page.records)} records already read",
            )
        self._seen_ids.update(record.external_id for record in fresh)
        if len(fresh) == len(page.records):
            return page
        return page.model_copy(update={"records": fresh})


def continuation_url(source_id: str, field: str, value: Any, base_url: str) -> str | None:
    """The next page's URL from a response field, or None at the end of the listing.

    The client attaches the service's credentials to every request, so a continuation that
    leads to another host is refused rather than followed.
    """
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise SourceShapeError(source_id, field, value, "should be a URL string")
    url = urljoin(base_url + "/", value)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or parts.netloc.lower() != (
        urlsplit(base_url).netloc.lower()
    ):
        raise SourceShapeError(source_id, field, value, f"does not point at {base_url}")
    return url


def since_date(since: datetime) -> str:
    """The watermark as the ISO date to filter from, one day early.

    APIs filter by calendar days in their own zone while the watermark is an instant; starting
    a day early covers any offset, and the overlap only re-reads records already stored (they
    are keyed by their ids and counted unchanged).
    """
    instant = since if since.tzinfo is not None else since.replace(tzinfo=UTC)
    return (instant.astimezone(UTC).date() - timedelta(days=1)).isoformat()


def walk_pages(
    adapter: SourceAdapter,
    client: SourceClient,
    first_url: str,
    *,
    keep: Callable[[SourceRecord], bool] | None = None,
) -> Iterator[Page]:
    """Follow a listing's continuation URLs from `first_url`, guarding against loops.

    `keep` drops records the upstream should not have sent: a filter the server ignored must
    not put another agency's documents under this source.
    """
    guard = PagingGuard(adapter.source_id)
    url: str | None = first_url
    while url is not None:
        guard.follow(url)
        response = client.get(url)
        page = adapter.parse(response.content).model_copy(update={"request_url": url})
        page = guard.admit(page)
        if keep is not None:
            page = page.model_copy(update={"records": [r for r in page.records if keep(r)]})
        yield page
        url = page.next_cursor
