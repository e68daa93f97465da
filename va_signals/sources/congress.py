"""Congress.gov API v3 adapters: Veterans' Affairs committee bills and their actions, committee
meetings, committee reports and CRS reports, each walked through the API's own `pagination.next`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from abc import abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import urlencode, urlsplit

from va_signals.catalog.models import Source
from va_signals.sources import register
from va_signals.sources.base import (
    Page,
    PagingGuard,
    SourceAdapter,
    SourceClient,
    SourceError,
    SourceRecord,
    SourceShapeError,
    build_record,
    load_json,
    parse_date,
    parse_datetime,
    require,
)

logger = logging.getLogger(__name__)

# The documented maximum page size; a larger catalog `limit` is clamped to it.
API_MAX_LIMIT = 250
VA_COMMITTEES: tuple[str, ...] = ("hsvr00", "ssva00")

_CHAMBER_BY_PREFIX = {"h": "house", "s": "senate", "j": "joint"}
_WEB_BILL_PATH = {
    "hr": "house-bill",
    "s": "senate-bill",
    "hjres": "house-joint-resolution",
    "sjres": "senate-joint-resolution",
    "hconres": "house-concurrent-resolution",
    "sconres": "senate-concurrent-resolution",
    "hres": "house-resolution",
    "sres": "senate-resolution",
}
_BILL_CITATION = {
    "hr": "H.R.",
    "s": "S.",
    "hjres": "H.J.Res.",
    "sjres": "S.J.Res.",
    "hconres": "H.Con.Res.",
    "sconres": "S.Con.Res.",
    "hres": "H.Res.",
    "sres": "S.Res.",
}


# --- small pure helpers, public because callers and tests name them ------------------------------


def bill_id(congress: int | str, bill_type: str, number: int | str) -> str:
    """The stable external id of a bill, e.g. `117-hr-21`."""
    return f"{congress}-{bill_type.lower()}-{number}"


def committee_chamber(code: str) -> str:
    """The API's chamber path segment for a committee system code (`hsvr00` -> `house`)."""
    chamber = _CHAMBER_BY_PREFIX.get(code[:1].lower())
    if chamber is None or len(code) != 6 or not code.isalnum():
        raise ValueError(f"{code!r} is not a committee system code like 'hsvr00'")
    return chamber


def is_referred_to(committees_body: Mapping[str, Any], codes: Iterable[str]) -> bool:
    """Whether a `/bill/{congress}/{type}/{number}/committees` body names one of `codes`.

    A subcommittee counts for its full committee: `hsvr03` belongs to `hsvr00`.
    """
    wanted = {_full_committee(code) for code in codes}
    committees = committees_body.get("committees")
    if not isinstance(committees, list):
        return False
    for committee in committees:
        if not isinstance(committee, Mapping):
            continue
        named = [committee.get("systemCode")]
        subcommittees = committee.get("subcommittees")
        if isinstance(subcommittees, list):
            named += [sub.get("systemCode") for sub in subcommittees if isinstance(sub, Mapping)]
        if any(isinstance(code, str) and _full_committee(code) in wanted for code in named):
            return True
    return False


def from_date_time(moment: datetime) -> str:
    """Format an aware datetime as the API's `fromDateTime` value: UTC, `YYYY-MM-DDTHH:MM:SSZ`."""
    if moment.tzinfo is None:
        raise ValueError(f"fromDateTime needs an aware datetime, got naive {moment.isoformat()}")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def congress_start(congress: int) -> datetime:
    """A safe lower bound on every update of a Congress's bills: January 1 of its first year."""
    return datetime(1789 + 2 * (congress - 1), 1, 1, tzinfo=UTC)


def web_bill_url(congress: int | str, bill_type: str, number: int | str) -> str | None:
    """The bill's page on www.congress.gov, readable without an API key."""
    path = _WEB_BILL_PATH.get(bill_type.lower())
    if path is None:
        return None
    return f"https://www.congress.gov/bill/{_ordinal(int(congress))}-congress/{path}/{number}"


def _full_committee(code: str) -> str:
    return code[:4].lower() + "00"


def _ordinal(number: int) -> str:
    suffix = (
        "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    )
    return f"{number}{suffix}"


def _citation(bill_type: str, number: str) -> str:
    return f"{_BILL_CITATION.get(bill_type.lower(), bill_type.upper())} {number}"


def _strip_key(url: str) -> str:
    # The client sends the key as a header; this only guards against an upstream that echoes a
    # query-string key into `next`, so a stored cursor never carries a secret.
    base, separator, query = url.partition("?")
    if not separator:
        return url
    kept = [part for part in query.split("&") if part.split("=", 1)[0].lower() != "api_key"]
    return f"{base}?{'&'.join(kept)}" if kept else base


# --- shared parsing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _BillRef:
    """The identity of one bill as a listing names it."""

    congress: int
    bill_type: str
    number: str

    @property
    def external_id(self) -> str:
        return bill_id(self.congress, self.bill_type, self.number)


@dataclass(frozen=True)
class _Listing:
    """One parsed list response: the page, the loop-detection keys of its raw items, `next`."""

    page: Page
    keys: list[str]
    next_url: str | None


def _items(source_id: str, container: Any, key: str, path: str = "") -> list[Mapping[str, Any]]:
    """The array `container[key]`, every element checked to be a JSON object."""
    values = require(source_id, container, key, list, path=path)
    field = f"{path}.{key}" if path else key
    for index, value in enumerate(values):
        if not isinstance(value, Mapping):
            raise SourceShapeError(source_id, f"{field}[{index}]", value, "is not a JSON object")
    return values


def _text(source_id: str, item: Mapping[str, Any], key: str, field: str) -> str:
    value = require(source_id, item, key, (str, int), path=field)
    text = str(value).strip()
    if not text:
        raise SourceShapeError(source_id, f"{field}.{key}", value, "is empty")
    return text


def _optional_text(source_id: str, item: Mapping[str, Any], key: str, field: str) -> str | None:
    value = item.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise SourceShapeError(source_id, f"{field}.{key}", value, "should be str")
    return value.strip() or None


def _timestamp(source_id: str, field: str, value: Any) -> datetime | None:
    # Some list endpoints write "2022-05-20 16:27:57+00:00" and a stray trailing space was seen
    # in the published examples; both still carry their zone, so only whitespace is trimmed.
    return parse_datetime(source_id, field, value.strip() if isinstance(value, str) else value)


def _congress_number(source_id: str, item: Mapping[str, Any], field: str) -> int:
    value = require(source_id, item, "congress", (int, str), path=field)
    if isinstance(value, bool) or not str(value).isdigit() or int(value) <= 0:
        raise SourceShapeError(source_id, f"{field}.congress", value, "is not a Congress number")
    return int(value)


def _bill_ref(source_id: str, item: Mapping[str, Any], field: str) -> _BillRef:
    # The committee-bills route is documented with `billType`/`billNumber` in XML while its JSON
    # examples use `type`/`number`; either spelling identifies the bill.
    type_key = "type" if "type" in item or "billType" not in item else "billType"
    number_key = "number" if "number" in item or "billNumber" not in item else "billNumber"
    bill_type = _text(source_id, item, type_key, field)
    number = _text(source_id, item, number_key, field)
    if not bill_type.isalpha():
        raise SourceShapeError(source_id, f"{field}.{type_key}", bill_type, "is not a bill type")
    if not number.isdigit():
        raise SourceShapeError(source_id, f"{field}.{number_key}", number, "is not a bill number")
    return _BillRef(_congress_number(source_id, item, field), bill_type.lower(), number)


def _bill_record(source_id: str, item: Mapping[str, Any], field: str) -> SourceRecord:
    ref = _bill_ref(source_id, item, field)
    latest = item.get("latestAction")
    if latest is not None and not isinstance(latest, Mapping):
        raise SourceShapeError(source_id, f"{field}.latestAction", latest, "is not a JSON object")
    # The newest action says most about where the bill stands; a committee-bills item only
    # carries the date of its relationship to the committee (`actionDate`, a timestamp).
    if latest and latest.get("actionDate"):
        published_on = parse_date(
            source_id, f"{field}.latestAction.actionDate", latest["actionDate"]
        )
    elif item.get("introducedDate"):
        published_on = parse_date(source_id, f"{field}.introducedDate", item["introducedDate"])
    else:
        published_on = parse_date(source_id, f"{field}.actionDate", item.get("actionDate"))
    title = _optional_text(source_id, item, "title", field) or _citation(ref.bill_type, ref.number)
    summary = _optional_text(source_id, latest, "text", f"{field}.latestAction") if latest else None
    return build_record(
        source_id,
        field,
        external_id=ref.external_id,
        title=title,
        summary=summary,
        url=web_bill_url(ref.congress, ref.bill_type, ref.number) or item.get("url"),
        published_on=published_on,
        payload=dict(item),
    )


def _unique(records: Iterable[SourceRecord]) -> list[SourceRecord]:
    """Drop later records that repeat an id within one response (first occurrence wins)."""
    seen: set[str] = set()
    unique = []
    for record in records:
        if record.external_id not in seen:
            seen.add(record.external_id)
            unique.append(record)
    return unique


def _loop_page(url: str, keys: list[str]) -> Page:
    # PagingGuard judges repetition by record ids; a listing may legitimately name one bill twice
    # (referred, then reported), so the guard is given one key per raw item instead.
    records = [SourceRecord(external_id=key, title="", payload={}) for key in keys]
    return Page(records=records, request_url=url)


# --- cursors for adapters that walk more than one list -------------------------------------------


@dataclass(frozen=True)
class _Position:
    """Where to resume a two-level walk: a list page URL, how many of its records are done, and
    for bill actions the continuation of the bill in progress. Stored as JSON in `next_cursor`."""

    list_url: str
    skip: int = 0
    detail_url: str | None = None

    def cursor(self) -> str:
        state: dict[str, Any] = {"list": self.list_url, "skip": self.skip}
        if self.detail_url:
            state["detail"] = self.detail_url
        return json.dumps(state, separators=(",", ":"))


# --- the adapters --------------------------------------------------------------------------------


class _CongressAdapter(SourceAdapter):
    """What every Congress.gov adapter shares: parameters, URLs, fetching and list walking."""

    def __init__(self, source: Source, base_url: str) -> None:
        super().__init__(source, base_url)
        self._host = urlsplit(self.base_url).netloc.lower()

    # parameters

    def _int_param(self, name: str, default: int | None = None) -> int:
        value = self.source.params.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise SourceError(
                self.source_id, f"param {name!r} must be a positive integer: {value!r}"
            )
        return value

    def _list_param(self, name: str, default: tuple[str, ...]) -> list[str]:
        values = self.source.params.get(name, list(default))
        if not isinstance(values, list | tuple) or not values:
            raise SourceError(
                self.source_id, f"param {name!r} must be a non-empty list: {values!r}"
            )
        if not all(isinstance(value, str) and value.isalnum() for value in values):
            raise SourceError(self.source_id, f"param {name!r} holds a bad entry: {values!r}")
        return [value.lower() for value in values]

    @property
    def _limit(self) -> int:
        return min(self._int_param("limit", API_MAX_LIMIT), API_MAX_LIMIT)

    # URLs

    def _api_url(self, path: str, *, since: datetime | None = None, paged: bool = True) -> str:
        query: dict[str, str | int] = {"format": "json"}
        if paged:
            query.update(offset=0, limit=self._limit)
        if since is not None:
            query["fromDateTime"] = from_date_time(since)
        return f"{self.base_url}{path}?{urlencode(query)}"

    def _checked_url(self, field: str, url: Any) -> str:
        """An upstream or stored URL we may request: absolute, on this service's host, keyless."""
        if not isinstance(url, str):
            raise SourceShapeError(self.source_id, field, url, "should be a URL string")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or parts.netloc.lower() != self._host:
            # Following it would send this service's API key to another host.
            raise SourceShapeError(self.source_id, field, url, f"is not a URL on {self._host}")
        return _strip_key(url)

    def _next_url(self, document: Mapping[str, Any]) -> str | None:
        pagination = document.get("pagination")
        if pagination is None:
            return None
        if not isinstance(pagination, Mapping):
            raise SourceShapeError(self.source_id, "pagination", pagination, "is not a JSON object")
        following = pagination.get("next")
        if following in (None, ""):
            return None
        # Kept verbatim (it may hold an unencoded space): httpx encodes it when it is requested.
        return self._checked_url("pagination.next", following)

    def _position(self, cursor: str | None) -> _Position | None:
        """Decode a cursor this adapter wrote; a bare URL resumes at the start of that list."""
        if not cursor:
            return None
        if not cursor.startswith("{"):
            return _Position(self._checked_url("cursor", cursor))
        try:
            state = json.loads(cursor)
        except json.JSONDecodeError:
            state = None
        skip = state.get("skip") if isinstance(state, dict) else None
        if not isinstance(skip, int) or isinstance(skip, bool) or skip < 0:
            raise SourceError(self.source_id, f"cursor {cursor!r} is not one this adapter wrote")
        detail = state.get("detail")
        return _Position(
            self._checked_url("cursor.list", state.get("list")),
            skip,
            self._checked_url("cursor.detail", detail) if detail is not None else None,
        )

    # fetching

    def _fetch(self, client: SourceClient, guard: PagingGuard, url: str) -> tuple[bytes, Any]:
        guard.follow(url)
        body = client.get(url).content
        return body, load_json(self.source_id, body)

    @abstractmethod
    def _listing(self, document: Any, url: str) -> _Listing:
        """Parse one response of this source's main list."""

    def _listed(
        self, records: list[SourceRecord], document: Any, url: str, keys: list[str] | None = None
    ) -> _Listing:
        next_url = self._next_url(document)
        page = Page(records=_unique(records), next_cursor=next_url, request_url=url)
        keys = keys if keys is not None else [record.external_id for record in records]
        return _Listing(page=page, keys=keys, next_url=next_url)

    def parse(self, body: bytes) -> Page:
        return self._listing(load_json(self.source_id, body), "").page

    def _walk_lists(
        self, client: SourceClient, guard: PagingGuard, first_urls: list[str], start: str | None
    ) -> Iterator[_Listing]:
        """Walk each list to its end in turn, beginning at `start` when resuming.

        Each listing's page carries the cursor that follows it, which after a list's last page
        is the first URL of the next list; `guard` sees every request of the run.
        """
        url = start
        first = self._list_index(first_urls, start) if start is not None else 0
        for index in range(first, len(first_urls)):
            url = url or first_urls[index]
            # One loop detector per list: two lists may rightly share records (a bill referred to
            # both committees), which must not read as the second list repeating the first.
            loop_guard = PagingGuard(self.source_id)
            while url is not None:
                _, document = self._fetch(client, guard, url)
                listing = self._listing(document, url)
                loop_guard.admit(_loop_page(url, listing.keys))
                following = listing.next_url
                if following is None and index + 1 < len(first_urls):
                    following = first_urls[index + 1]
                page = listing.page.model_copy(update={"next_cursor": following})
                yield _Listing(page=page, keys=listing.keys, next_url=listing.next_url)
                url = listing.next_url

    def _list_index(self, first_urls: list[str], url: str) -> int:
        path = urlsplit(url).path.rstrip("/")
        for index, first in enumerate(first_urls):
            if urlsplit(first).path == path:
                return index
        raise SourceError(self.source_id, f"cursor {url!r} names none of this source's lists")


class _SingleListAdapter(_CongressAdapter):
    """An adapter whose records all come from one paged list; its cursor is `pagination.next`."""

    @abstractmethod
    def _path(self) -> str:
        """The API path of the source's list, e.g. `/v3/crsreport`."""

    def pages(
        self, client: SourceClient, *, since: datetime | None, cursor: str | None
    ) -> Iterator[Page]:
        guard = PagingGuard(self.source_id)
        url: str | None = self._checked_url("cursor", cursor) if cursor else None
        url = url or self._api_url(self._path(), since=since)
        while url is not None:
            _, document = self._fetch(client, guard, url)
            page = self._listing(document, url).page
            yield guard.admit(page)
            url = page.next_cursor


class _VaCommitteeBillsAdapter(_CongressAdapter):
    """The listing both bill adapters walk: the committee-bills route of each VA committee.

    That route lists every Congress, takes no congress filter and has no documented sort, so
    `fromDateTime` (never earlier than the Congress began) bounds the walk and the Congress is
    filtered here.
    """

    def _committee_urls(self, since: datetime | None) -> list[str]:
        floor = congress_start(self._int_param("congress"))
        since = floor if since is None or since < floor else since
        urls = []
        for code in self._list_param("committees", VA_COMMITTEES):
            try:
                chamber = committee_chamber(code)
            except ValueError as exc:
                raise SourceError(self.source_id, f"param 'committees': {exc}") from None
            urls.append(self._api_url(f"/v3/committee/{chamber}/{code}/bills", since=since))
        return urls

    def _in_congress(self, record: SourceRecord) -> bool:
        return str(record.payload.get("congress")) == str(self._int_param("congress"))

    def _listing(self, document: Any, url: str) -> _Listing:
        """Parse the committee-bills shape, or the generic `/bill` list shape for saved files."""
        if isinstance(document, Mapping) and "committee-bills" in document:
            nested = require(self.source_id, document, "committee-bills", Mapping)
            items = _items(self.source_id, nested, "bills", "committee-bills")
            path = "committee-bills.bills"
        else:
            items = _items(self.source_id, document, "bills")
            path = "bills"
        records = [
            _bill_record(self.source_id, item, f"{path}[{index}]")
            for index, item in enumerate(items)
        ]
        # One key per relationship, so "referred to" and "reported by" rows of one bill on two
        # pages do not look like a repeated page.
        keys = [
            f"{record.external_id}|{item.get('relationshipType')}|{item.get('actionDate')}"
            for record, item in zip(records, items, strict=True)
        ]
        return self._listed(records, document, url, keys)


@register
class CongressBills(_VaCommitteeBillsAdapter):
    """Bills of one Congress referred to the House or Senate Committee on Veterans' Affairs."""

    name: ClassVar[str] = "congress_bills"

    def pages(
        self, client: SourceClient, *, since: datetime | None, cursor: str | None
    ) -> Iterator[Page]:
        guard = PagingGuard(self.source_id)
        start = self._checked_url("cursor", cursor) if cursor else None
        emitted: set[str] = set()
        for listing in self._walk_lists(client, guard, self._committee_urls(since), start):
            fresh = [
                record
                for record in listing.page.records
                if self._in_congress(record) and record.external_id not in emitted
            ]
            emitted.update(record.external_id for record in fresh)
            yield listing.page.model_copy(update={"records": fresh})


@register
class CongressBillActions(_VaCommitteeBillsAdapter):
    """Every action on the bills the VA committees list, one record per action.

    Its cursor is a JSON position (listing page URL, bills of it already done, and the actions
    continuation of the bill in progress), since a run stops after `max_bills` bills.
    """

    name: ClassVar[str] = "congress_bill_actions"

    def parse(self, body: bytes) -> Page:
        """Parse one `/bill/{congress}/{type}/{number}/actions` body; the bill is read from its
        `request` echo."""
        document = load_json(self.source_id, body)
        return self._actions_page(document, "", None)

    def pages(
        self, client: SourceClient, *, since: datetime | None, cursor: str | None
    ) -> Iterator[Page]:
        position = self._position(cursor)
        budget = self._int_param("max_bills", 25)
        guard = PagingGuard(self.source_id)
        handled: set[str] = set()
        emitted: set[str] = set()
        start = position.list_url if position else None
        for listing in self._walk_lists(client, guard, self._committee_urls(since), start):
            listed = listing.page
            skip, resume_url = (position.skip, position.detail_url) if position else (0, None)
            position = None
            produced = False
            for index, bill in enumerate(listed.records):
                if index < skip or not self._in_congress(bill) or bill.external_id in handled:
                    continue
                if budget == 0:
                    return
                budget -= 1
                handled.add(bill.external_id)
                ref = _bill_ref(self.source_id, bill.payload, "bill")
                after = self._after(listed, index)
                url = resume_url if index == skip and resume_url else None
                for page in self._bill_actions(client, guard, ref, url):
                    fresh = [record for record in page.records if record.external_id not in emitted]
                    emitted.update(record.external_id for record in fresh)
                    following = _Position(listed.request_url, index, page.next_cursor)
                    yield page.model_copy(
                        update={
                            "records": fresh,
                            "next_cursor": following.cursor() if page.next_cursor else after,
                        }
                    )
                    produced = True
            if not produced:
                # Still report progress, so a resumed run does not list this page again.
                yield Page(
                    records=[],
                    next_cursor=self._after(listed, len(listed.records)),
                    request_url=listed.request_url,
                )

    @staticmethod
    def _after(listed: Page, index: int) -> str | None:
        """The cursor that resumes after the bill at `index` of a listing page."""
        if index + 1 < len(listed.records):
            return _Position(listed.request_url, index + 1).cursor()
        if listed.next_cursor is None:
            return None
        return _Position(listed.next_cursor).cursor()

    def _bill_actions(
        self, client: SourceClient, guard: PagingGuard, ref: _BillRef, url: str | None
    ) -> Iterator[Page]:
        path = f"/v3/bill/{ref.congress}/{ref.bill_type}/{ref.number}/actions"
        if url is not None and urlsplit(url).path != path:
            # The listing moved since the cursor was written; start this bill from its first page.
            url = None
        url = url or self._api_url(path)
        loop_guard = PagingGuard(self.source_id)
        while url is not None:
            _, document = self._fetch(client, guard, url)
            page = self._actions_page(document, url, ref)
            yield loop_guard.admit(page)
            url = page.next_cursor

    def _actions_page(self, document: Any, url: str, listed: _BillRef | None) -> Page:
        ref = self._echoed_bill(document) or listed
        if ref is None:
            raise SourceShapeError(
                self.source_id,
                "request",
                document.get("request"),
                "does not name the bill (congress, billType, billNumber)",
            )
        if listed is not None and ref != listed:
            # A misrouted answer: its records are kept under the bill they describe.
            logger.warning(
                "source %s: %s answered for bill %s", self.source_id, url, ref.external_id
            )
        actions = _items(self.source_id, document, "actions")
        records = [
            _action_record(self.source_id, ref, action, f"actions[{index}]")
            for index, action in enumerate(actions)
        ]
        return Page(records=_unique(records), next_cursor=self._next_url(document), request_url=url)

    def _echoed_bill(self, document: Any) -> _BillRef | None:
        request = document.get("request") if isinstance(document, Mapping) else None
        if not isinstance(request, Mapping) or not {"congress", "billType", "billNumber"} <= set(
            request
        ):
            return None
        return _bill_ref(self.source_id, request, "request")


def _action_record(
    source_id: str, ref: _BillRef, action: Mapping[str, Any], field: str
) -> SourceRecord:
    action_date = parse_date(source_id, f"{field}.actionDate", action.get("actionDate"))
    if action_date is None:
        raise SourceShapeError(
            source_id, f"{field}.actionDate", action.get("actionDate"), "is missing"
        )
    text = _text(source_id, action, "text", field)
    code = action.get("actionCode")
    if code is not None and not isinstance(code, str | int):
        raise SourceShapeError(source_id, f"{field}.actionCode", code, "should be str")
    source_system = action.get("sourceSystem")
    system_code = source_system.get("code") if isinstance(source_system, Mapping) else None
    # Action codes repeat within a day and some actions have none, so the id also hashes what
    # tells two actions apart; no list index, which shifts as actions are added.
    fingerprint = json.dumps(
        [code, action.get("actionTime"), action.get("type"), system_code, " ".join(text.split())],
        ensure_ascii=False,
    )
    digest = hashlib.sha1(fingerprint.encode("utf-8")).hexdigest()[:12]
    return build_record(
        source_id,
        field,
        external_id=f"{ref.external_id}:{action_date.isoformat()}:{code or '-'}:{digest}",
        title=f"{_citation(ref.bill_type, ref.number)}: {text}",
        url=web_bill_url(ref.congress, ref.bill_type, ref.number),
        published_on=action_date,
        payload=dict(action),
    )


@register
class CongressCommitteeMeetings(_CongressAdapter):
    """House and Senate committee meetings and hearings, one record per meeting detail.

    Its cursor is a JSON position (listing page URL and meetings of it already done), since a
    run stops after `max_details` detail requests.
    """

    name: ClassVar[str] = "congress_committee_meetings"

    def parse(self, body: bytes) -> Page:
        """Parse a meeting list body, or one meeting's detail body."""
        document = load_json(self.source_id, body)
        if isinstance(document, Mapping) and "committeeMeeting" in document:
            return Page(records=[self._detail_record(document)])
        return self._listing(document, "").page

    def pages(
        self, client: SourceClient, *, since: datetime | None, cursor: str | None
    ) -> Iterator[Page]:
        position = self._position(cursor)
        budget = self._int_param("max_details", 50)
        congress = self._int_param("congress")
        chambers = self._list_param("chambers", ("house", "senate"))
        first_urls = [
            self._api_url(f"/v3/committee-meeting/{congress}/{chamber}", since=since)
            for chamber in chambers
        ]
        guard = PagingGuard(self.source_id)
        requested: set[str] = set()
        emitted: set[str] = set()
        start = position.list_url if position else None
        for listing in self._walk_lists(client, guard, first_urls, start):
            listed = listing.page
            skip = position.skip if position else 0
            position = None
            records: list[SourceRecord] = []
            for index, meeting in enumerate(listed.records):
                if index < skip or meeting.external_id in requested:
                    continue
                if budget == 0:
                    cursor_here = _Position(listed.request_url, index).cursor()
                    yield Page(
                        records=records, next_cursor=cursor_here, request_url=listed.request_url
                    )
                    return
                budget -= 1
                requested.add(meeting.external_id)
                detail = self._fetch_detail(client, guard, meeting)
                if detail.external_id not in emitted:
                    emitted.add(detail.external_id)
                    records.append(detail)
            following = _Position(listed.next_cursor).cursor() if listed.next_cursor else None
            yield Page(records=records, next_cursor=following, request_url=listed.request_url)
            if budget == 0:
                return

    def _fetch_detail(
        self, client: SourceClient, guard: PagingGuard, meeting: SourceRecord
    ) -> SourceRecord:
        congress, chamber, event_id = self._meeting_id(meeting.payload, "committeeMeetings[]")
        url = self._api_url(f"/v3/committee-meeting/{congress}/{chamber}/{event_id}", paged=False)
        _, document = self._fetch(client, guard, url)
        record = self._detail_record(document)
        if record.external_id != meeting.external_id:
            # A misrouted answer: the record keeps the identity of the meeting it describes.
            logger.warning(
                "source %s: %s answered for meeting %s", self.source_id, url, record.external_id
            )
        return record

    def _meeting_id(self, item: Mapping[str, Any], field: str) -> tuple[int, str, str]:
        congress = _congress_number(self.source_id, item, field)
        chamber = _text(self.source_id, item, "chamber", field).lower()
        event_id = _text(self.source_id, item, "eventId", field)
        if not chamber.isalpha():
            raise SourceShapeError(self.source_id, f"{field}.chamber", chamber, "is not a chamber")
        if not event_id.isdigit():
            raise SourceShapeError(
                self.source_id, f"{field}.eventId", event_id, "is not an event id"
            )
        return congress, chamber, event_id

    def _listing(self, document: Any, url: str) -> _Listing:
        items = _items(self.source_id, document, "committeeMeetings")
        records = []
        for index, item in enumerate(items):
            field = f"committeeMeetings[{index}]"
            congress, chamber, event_id = self._meeting_id(item, field)
            # Validated here so a bad list fails before any detail is requested.
            _timestamp(self.source_id, f"{field}.updateDate", item.get("updateDate"))
            records.append(
                build_record(
                    self.source_id,
                    field,
                    external_id=f"{congress}-{chamber}-{event_id}",
                    title=f"Committee meeting {event_id}",
                    url=self._meeting_url(congress, chamber, event_id),
                    payload=dict(item),
                )
            )
        return self._listed(records, document, url)

    def _detail_record(self, document: Any) -> SourceRecord:
        field = "committeeMeeting"
        meeting = require(self.source_id, document, field, Mapping)
        congress, chamber, event_id = self._meeting_id(meeting, field)
        title = _optional_text(self.source_id, meeting, "title", field)
        kind = _optional_text(self.source_id, meeting, "type", field) or "Meeting"
        committees = meeting.get("committees") or []
        if not isinstance(committees, list):
            raise SourceShapeError(
                self.source_id, f"{field}.committees", committees, "should be list"
            )
        names = [c["name"] for c in committees if isinstance(c, Mapping) and c.get("name")]
        status = _optional_text(self.source_id, meeting, "meetingStatus", field)
        summary = f"{kind}, {status or 'status unknown'}: {'; '.join(names) or 'no committee'}"
        return build_record(
            self.source_id,
            field,
            external_id=f"{congress}-{chamber}-{event_id}",
            title=title or f"{kind} {event_id}",
            summary=summary,
            url=self._meeting_url(congress, chamber, event_id),
            published_at=_timestamp(self.source_id, f"{field}.date", meeting.get("date")),
            payload=dict(meeting),
        )

    def _meeting_url(self, congress: int, chamber: str, event_id: str) -> str:
        if chamber in ("house", "senate"):
            congress_path = f"{_ordinal(congress)}-congress"
            return f"https://www.congress.gov/event/{congress_path}/{chamber}-event/{event_id}"
        return f"{self.base_url}/v3/committee-meeting/{congress}/{chamber}/{event_id}"


@register
class CongressCommitteeReports(_SingleListAdapter):
    """Committee reports of one Congress, from the `reports` list."""

    name: ClassVar[str] = "congress_committee_reports"

    def _path(self) -> str:
        return f"/v3/committee-report/{self._int_param('congress')}"

    def _listing(self, document: Any, url: str) -> _Listing:
        items = _items(self.source_id, document, "reports")
        records = []
        for index, item in enumerate(items):
            field = f"reports[{index}]"
            congress = _congress_number(self.source_id, item, field)
            report_type = _text(self.source_id, item, "type", field).lower()
            number = _text(self.source_id, item, "number", field)
            part = item.get("part")
            if part is not None and (isinstance(part, bool) or not isinstance(part, int)):
                raise SourceShapeError(self.source_id, f"{field}.part", part, "should be int")
            external_id = f"{congress}-{report_type}-{number}"
            if part not in (None, 1):
                external_id += f"-part{part}"
            citation = _optional_text(self.source_id, item, "citation", field)
            # The list carries no issue date; its update time is when the report appeared or
            # changed on Congress.gov, which is what a watcher of new reports needs.
            records.append(
                build_record(
                    self.source_id,
                    field,
                    external_id=external_id,
                    title=citation or f"{report_type.upper()} {congress}-{number}",
                    summary=_optional_text(self.source_id, item, "chamber", field),
                    url=_optional_text(self.source_id, item, "url", field),
                    published_at=_timestamp(
                        self.source_id, f"{field}.updateDate", item.get("updateDate")
                    ),
                    payload=dict(item),
                )
            )
        return self._listed(records, document, url)


@register
class CongressCrsReports(_SingleListAdapter):
    """Congressional Research Service products, from the `CRSReports` list."""

    name: ClassVar[str] = "congress_crs_reports"

    def _path(self) -> str:
        return "/v3/crsreport"

    def _listing(self, document: Any, url: str) -> _Listing:
        items = _items(self.source_id, document, "CRSReports")
        records = []
        for index, item in enumerate(items):
            field = f"CRSReports[{index}]"
            report_id = _text(self.source_id, item, "id", field)
            published = item.get("publishDate") or item.get("updateDate")
            published_field = "publishDate" if item.get("publishDate") else "updateDate"
            records.append(
                build_record(
                    self.source_id,
                    field,
                    external_id=report_id,
                    title=_text(self.source_id, item, "title", field),
                    summary=", ".join(
                        text
                        for key in ("contentType", "status")
                        if (text := _optional_text(self.source_id, item, key, field))
                    )
                    or None,
                    url=_optional_text(self.source_id, item, "url", field),
                    published_at=_timestamp(
                        self.source_id, f"{field}.{published_field}", published
                    ),
                    payload=dict(item),
                )
            )
        return self._listed(records, document, url)
