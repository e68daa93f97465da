"""A real threaded HTTP server on 127.0.0.1 that answers like the upstream APIs from the shared
recordings and misbehaves on command, path by path and page by page, counting every request."""

from __future__ import annotations

import email.utils
import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

LDA_PATH = "/api/v1/filings/"
FR_PATH = "/api/v1/documents.json"
ECFR_PATH = "/api/versioner/v1/titles.json"
# The Federal Register's continuation drops the `.json` suffix; both name the same listing.
_ALIASES = {"/api/v1/documents": FR_PATH}

# Pages cut from the recorded lists: LDA 25 filings as 10 + 10 + 5, FR 1,000 documents as 2 x 500.
LDA_PAGE_SIZE = 10
FR_PAGE_SIZE = 500
# Cap on any deliberate stall, so a test that forgets to release the server still ends.
MAX_HANG_SECONDS = 60.0

BOT_WALL_HTML = (
    b"<!DOCTYPE html><html><head><title>Access Denied</title></head><body>"
    b"<h1>Access Denied</h1><p>Your request was blocked by our security service.</p>"
    b"</body></html>"
)


@dataclass(frozen=True)
class Seen:
    """One request as the server received it; `page` is the `page` query parameter or 1."""

    path: str
    page: int
    query: tuple[tuple[str, str], ...]
    at: float
    # Lower-cased names, so a test can check which credentials reached which server.
    headers: tuple[tuple[str, str], ...] = ()

    def header(self, name: str) -> str | None:
        return dict(self.headers).get(name.lower())


class Listing:
    """A recorded list response cut into pages whose continuation URLs lead back to the server."""

    def __init__(self, body: bytes, *, next_key: str, page_size: int) -> None:
        data = json.loads(body)
        self.results: list[dict[str, Any]] = data["results"]
        self.envelope = {key: value for key, value in data.items() if key != "results"}
        self.next_key = next_key
        self.recorded_next: str = data[next_key]
        self.page_size = page_size
        self._bodies: dict[tuple[str, int], bytes] = {}
        self._lock = threading.Lock()

    @property
    def page_count(self) -> int:
        return math.ceil(len(self.results) / self.page_size)

    def items(self, page: int) -> list[dict[str, Any]]:
        start = (page - 1) * self.page_size
        return self.results[start : start + self.page_size]

    def next_url(self, base_url: str, page: int) -> str:
        """The recorded continuation, moved onto `base_url` and pointed at `page`."""
        recorded = urlsplit(self.recorded_next)
        base = urlsplit(base_url)
        query = [(k, v) for k, v in parse_qsl(recorded.query) if k != "page"]
        query.append(("page", str(page)))
        return urlunsplit((base.scheme, base.netloc, recorded.path, urlencode(query), ""))

    def body(
        self,
        base_url: str,
        page: int,
        *,
        items: list[dict[str, Any]] | None = None,
        next_page: int | None = -1,
        next_url: str | None = None,
    ) -> bytes:
        """Page `page` as the API would send it; `items`, `next_page` or `next_url` override
        its content. `next_page=-1` means the natural continuation (none after the last page).
        """
        natural = items is None and next_page == -1 and next_url is None
        if natural:
            with self._lock:
                cached = self._bodies.get((base_url, page))
            if cached is not None:
                return cached
        if next_page == -1:
            next_page = page + 1 if page < self.page_count else None
        document = dict(self.envelope)
        document["results"] = self.items(page) if items is None else items
        if next_url is None and next_page:
            next_url = self.next_url(base_url, next_page)
        document[self.next_key] = next_url
        encoded = json.dumps(document).encode()
        if natural:
            with self._lock:
                self._bodies[(base_url, page)] = encoded
        return encoded


@lru_cache(maxsize=4)
def _read(path: Path) -> bytes:
    return path.read_bytes()


@lru_cache(maxsize=2)
def lda_listing(recordings: Path) -> Listing:
    body = _read(recordings / "lda" / "filings-list.json")
    return Listing(body, next_key="next", page_size=LDA_PAGE_SIZE)


@lru_cache(maxsize=2)
def fr_listing(recordings: Path) -> Listing:
    body = _read(recordings / "federal_register" / "documents-2024-page1.json")
    return Listing(body, next_key="next_page_url", page_size=FR_PAGE_SIZE)


Behavior = Callable[["_Handler", Seen], None]


@dataclass
class _Rule:
    path: str
    page: int | None
    behavior: Behavior
    times: int | None

    def matches(self, seen: Seen) -> bool:
        if self.times is not None and self.times <= 0:
            return False
        return self.path == seen.path and (self.page is None or self.page == seen.page)


@dataclass
class StreamReport:
    """What the server managed to send of a streamed body before the client hung up."""

    bytes_sent: int = 0
    aborted: bool = False
    done: threading.Event = field(default_factory=threading.Event)


class FakeUpstream:
    """The Federal Register, LDA and eCFR APIs on one local port, with scripted faults."""

    def __init__(self, recordings: Path, *, keep_alive: bool = False) -> None:
        self.recordings = recordings
        # Without keep-alive every request opens a connection, so refusing connections or
        # restarting the listener affects the very next request, deterministically.
        self.keep_alive = keep_alive
        self.release = threading.Event()
        self.stream = StreamReport()
        self._rules: list[_Rule] = []
        self._seen: list[Seen] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeUpstream:
        self._listen(0)
        return self

    def close(self) -> None:
        self.release.set()
        self.stop_listening()

    def stop_listening(self) -> None:
        """Close the listening socket: new connections are refused until `resume_listening`."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def resume_listening(self) -> None:
        """Listen again on the same port, so the catalog's base_url stays valid."""
        if self._server is None:
            self._listen(self.port)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _listen(self, port: int) -> None:
        server = _Server(("127.0.0.1", port), _Handler)
        server.upstream = self
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-upstream-{self.port}",
            daemon=True,
        )
        self._thread.start()

    # -- scripting -------------------------------------------------------------------------

    def fail(
        self, path: str, behavior: Behavior, *, page: int | None = None, times: int | None = None
    ) -> None:
        """Answer requests of `path` (and `page`, when given) with `behavior`, `times` times or
        for ever. Rules are tried in the order they were added; unmatched requests are healthy."""
        with self._lock:
            self._rules.append(_Rule(_ALIASES.get(path, path), page, behavior, times))

    def heal(self) -> None:
        """Forget every scripted fault: from now on the upstream answers normally."""
        with self._lock:
            self._rules.clear()

    # -- observation -----------------------------------------------------------------------

    @property
    def seen(self) -> list[Seen]:
        with self._lock:
            return list(self._seen)

    def count(self, path: str | None = None, page: int | None = None) -> int:
        path = _ALIASES.get(path, path) if path else None
        return sum(
            1
            for seen in self.seen
            if (path is None or seen.path == path) and (page is None or seen.page == page)
        )

    def pages_requested(self, path: str) -> list[int]:
        path = _ALIASES.get(path, path)
        return [seen.page for seen in self.seen if seen.path == path]

    def wait_for(self, path: str, page: int, *, timeout: float = 20.0) -> bool:
        """Wait until `path` page `page` has been requested; False after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.count(path, page):
                return True
            time.sleep(0.02)
        return False

    # -- answers ---------------------------------------------------------------------------

    def _dispatch(self, handler: _Handler, seen: Seen) -> None:
        with self._lock:
            self._seen.append(seen)
            rule = next((rule for rule in self._rules if rule.matches(seen)), None)
            if rule is not None and rule.times is not None:
                rule.times -= 1
        (rule.behavior if rule else serve)(handler, seen)

    def healthy_body(self, seen: Seen) -> bytes | None:
        if seen.path in (LDA_PATH, FR_PATH):
            listing = _listing_of(self, seen.path)
            if not 1 <= seen.page <= listing.page_count:
                return None
            return listing.body(self.base_url, seen.page)
        if seen.path == ECFR_PATH:
            return _read(self.recordings / "ecfr" / "titles.json")
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Hung handlers must not hold up shutdown; `FakeUpstream.release` ends them.
    block_on_close = False
    upstream: FakeUpstream


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, a kept-alive connection waits for
    # the client's delayed ACK (about 40 ms) on every request.
    disable_nagle_algorithm = True
    server: _Server

    @property
    def upstream(self) -> FakeUpstream:
        return self.server.upstream

    def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
        parts = urlsplit(self.path)
        query = tuple(parse_qsl(parts.query))
        page_text = dict(query).get("page", "1")
        seen = Seen(
            path=_ALIASES.get(parts.path, parts.path),
            page=int(page_text) if page_text.isdigit() else 1,
            query=query,
            at=time.monotonic(),
            headers=tuple((name.lower(), value) for name, value in self.headers.items()),
        )
        self.upstream._dispatch(self, seen)

    def answer(
        self,
        status: int,
        body: bytes,
        *,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if not self.upstream.keep_alive:
            self.send_header("Connection", "close")
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
        pass


# -- behaviors: each answers one request ------------------------------------------------------


def serve(handler: _Handler, seen: Seen) -> None:
    """The healthy answer: the recorded body of that path and page, or a 404."""
    body = handler.upstream.healthy_body(seen)
    if body is None:
        handler.answer(404, b'{"detail": "Not found."}')
    else:
        handler.answer(200, body)


def status(code: int, body: bytes = b"", *, content_type: str = "application/json") -> Behavior:
    def behave(handler: _Handler, seen: Seen) -> None:
        handler.answer(
            code, body or json.dumps({"status": code}).encode(), content_type=content_type
        )

    return behave


def rate_limited(retry_after: str) -> Behavior:
    """429 with the real LDA throttle body and `Retry-After` as given (seconds or HTTP date)."""

    def behave(handler: _Handler, seen: Seen) -> None:
        body = _read(handler.upstream.recordings / "lda" / "throttled-429.json")
        handler.answer(429, body, headers={"Retry-After": retry_after})

    return behave


def http_date(seconds_from_now: float) -> str:
    return email.utils.formatdate(time.time() + seconds_from_now, usegmt=True)


def bot_wall(code: int = 403) -> Behavior:
    """An HTML page from a bot-protection layer where the API's JSON should be."""

    def behave(handler: _Handler, seen: Seen) -> None:
        handler.answer(code, BOT_WALL_HTML, content_type="text/html; charset=utf-8")

    return behave


def hang(seconds: float, *, after_headers: bool = False) -> Behavior:
    """Say nothing (or only the headers) for `seconds`, or until the upstream is released."""

    def behave(handler: _Handler, seen: Seen) -> None:
        if after_headers:
            body = handler.upstream.healthy_body(seen) or b"{}"
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body[:100])
        handler.upstream.release.wait(min(seconds, MAX_HANG_SECONDS))
        handler.close_connection = True

    return behave


def trickle(interval: float, seconds: float) -> Behavior:
    """Send the body a byte every `interval` (each read completes well within the read timeout)
    for at most `seconds`, then hang up: a body that never finishes but never goes quiet."""

    def behave(handler: _Handler, seen: Seen) -> None:
        body = handler.upstream.healthy_body(seen) or b"{}"
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        deadline = time.monotonic() + min(seconds, MAX_HANG_SECONDS)
        try:
            for byte in body:
                if time.monotonic() >= deadline or handler.upstream.release.is_set():
                    break
                handler.wfile.write(bytes([byte]))
                time.sleep(interval)
        except (BrokenPipeError, ConnectionResetError):
            pass
        handler.close_connection = True

    return behave


def redirect(location: str, code: int = 302) -> Behavior:
    """Send the client elsewhere, as a moved API or a load balancer would."""

    def behave(handler: _Handler, seen: Seen) -> None:
        handler.answer(code, b"", headers={"Location": location})

    return behave


def cut_off(handler: _Handler, seen: Seen) -> None:
    """Declare the full body's length, send half of it and hang up (a dropped connection)."""
    body = handler.upstream.healthy_body(seen) or b"{}"
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.send_header("Connection", "close")
    handler.end_headers()
    handler.wfile.write(body[: len(body) // 2])
    handler.close_connection = True


def truncated_json(handler: _Handler, seen: Seen) -> None:
    """A complete HTTP answer whose JSON stops half-way (a proxy that cut the payload)."""
    body = handler.upstream.healthy_body(seen) or b"{}"
    handler.answer(200, body[: len(body) // 2])


def wrong_shape(document: Any) -> Behavior:
    def behave(handler: _Handler, seen: Seen) -> None:
        handler.answer(200, json.dumps(document).encode())

    return behave


def drop(handler: _Handler, seen: Seen) -> None:
    """Close the connection without any answer."""
    handler.close_connection = True


def huge_body(size: int, *, declare_length: bool, chunk: int = 64 * 1024) -> Behavior:
    """Stream `size` bytes of a JSON-looking body, counting what the client accepted."""

    def behave(handler: _Handler, seen: Seen) -> None:
        report = handler.upstream.stream
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        if declare_length:
            handler.send_header("Content-Length", str(size))
        else:
            handler.send_header("Transfer-Encoding", "chunked")
        handler.send_header("Connection", "close")
        handler.end_headers()
        block = b'{"results": [' + b" " * (chunk - 13)
        try:
            for piece in _pieces(size, len(block)):
                data = block[:piece]
                if declare_length:
                    handler.wfile.write(data)
                else:
                    handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                report.bytes_sent += len(data)
                block = b" " * len(block)
            if not declare_length:
                handler.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            report.aborted = True
        finally:
            handler.close_connection = True
            report.done.set()

    return behave


def _pieces(total: int, size: int) -> Iterator[int]:
    sent = 0
    while sent < total:
        piece = min(size, total - sent)
        sent += piece
        yield piece


def listing_page(
    content_page: int, *, next_page: int | None | Callable[[int], int | None] = -1
) -> Behavior:
    """Answer with the records of `content_page`; `next_page` may depend on the page asked."""

    def behave(handler: _Handler, seen: Seen) -> None:
        listing = _listing_of(handler.upstream, seen.path)
        following = next_page(seen.page) if callable(next_page) else next_page
        items = listing.items(content_page)
        handler.answer(
            200,
            listing.body(handler.upstream.base_url, seen.page, items=items, next_page=following),
        )

    return behave


def loop_to_self(handler: _Handler, seen: Seen) -> None:
    """Page 1 with a continuation that is the very URL just requested: paging for ever."""
    listing = _listing_of(handler.upstream, seen.path)
    url = handler.upstream.base_url + handler.path
    handler.answer(
        200, listing.body(handler.upstream.base_url, 1, items=listing.items(1), next_url=url)
    )


def with_records_of(page: int, extra: list[int]) -> Behavior:
    """Page `page` plus the records at indexes `extra` of the whole list (already served)."""

    def behave(handler: _Handler, seen: Seen) -> None:
        listing = _listing_of(handler.upstream, seen.path)
        items = [listing.results[index] for index in extra] + listing.items(page)
        handler.answer(200, listing.body(handler.upstream.base_url, seen.page, items=items))

    return behave


def hook(action: Callable[[FakeUpstream, Seen], None], then: Behavior = serve) -> Behavior:
    """Run `action` (restart a database, stop listening...) before answering with `then`."""

    def behave(handler: _Handler, seen: Seen) -> None:
        action(handler.upstream, seen)
        then(handler, seen)

    return behave


def _listing_of(upstream: FakeUpstream, path: str) -> Listing:
    if path == LDA_PATH:
        return lda_listing(upstream.recordings)
    if path == FR_PATH:
        return fr_listing(upstream.recordings)
    raise ValueError(f"{path} is not a paged listing")
