"""An httpx transport that passes requests through and saves each answer as a recording."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import httpx
import yaml

from va_signals.resilience.http import (
    BodyLimitExceeded,
    BoundedDecoder,
    CorruptBody,
    UnsupportedEncoding,
)

# The largest body recorded, as received and once decoded. Recordings are test fixtures kept in
# the repository; anything past this is a mistake (a dump, a bomb), never a fixture to keep.
MAX_RECORDED_BYTES = 50 * 1024 * 1024

# Response headers worth replaying; everything else (cookies, server ids) is left out.
_KEPT_HEADERS = ("retry-after", "x-ratelimit-limit", "x-ratelimit-remaining")


class RecordingTooLarge(RuntimeError):
    """A response body past MAX_RECORDED_BYTES: nothing of it was written."""


class RecordingFailed(RuntimeError):
    """A response body that could not be decoded for the recording: nothing was written."""


class RecordingTransport(httpx.BaseTransport):
    """Writes `<out>/<host>/<file>` and a `manifest.yaml` per host, in the replay format.

    Only the scheme, host and path of a request are written: query strings (which may carry an
    API key) and request headers (which carry the others) never reach the disk.
    """

    def __init__(
        self,
        out_dir: Path | str,
        inner: httpx.BaseTransport | None = None,
        *,
        max_bytes: int = MAX_RECORDED_BYTES,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.max_bytes = max_bytes
        self.inner = inner or httpx.HTTPTransport()
        self._lock = threading.Lock()
        self._entries: dict[str, list[dict]] = {}

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        try:
            raw = self._read_raw(request, response)
        finally:
            response.close()
        self._save(request, response, self._decoded(request, response, raw))
        # The caller gets the body exactly as it came, still encoded, with its own headers.
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=httpx.ByteStream(raw),
            request=request,
            extensions=response.extensions,
        )

    def _read_raw(self, request: httpx.Request, response: httpx.Response) -> bytes:
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_raw():
            size += len(chunk)
            if size > self.max_bytes:
                raise RecordingTooLarge(self._too_large(request))
            chunks.append(chunk)
        return b"".join(chunks)

    def _decoded(self, request: httpx.Request, response: httpx.Response, raw: bytes) -> bytes:
        """The body as replay serves it: without its Content-Encoding, which is not recorded."""
        try:
            decoder = BoundedDecoder(response.headers.get("content-encoding"), self.max_bytes)
            return b"".join(decoder.feed(raw) + decoder.finish())
        except (UnsupportedEncoding, CorruptBody) as exc:
            raise RecordingFailed(f"not recorded: {_where(request)}: {exc}") from None
        except BodyLimitExceeded:
            raise RecordingTooLarge(self._too_large(request) + " once decoded") from None

    def _too_large(self, request: httpx.Request) -> str:
        return f"not recorded: {_where(request)}: body exceeds {self.max_bytes} bytes"

    def close(self) -> None:
        self.inner.close()

    def _save(self, request: httpx.Request, response: httpx.Response, body: bytes) -> None:
        # Host and port only: credentials in the URL's user-info must never reach the disk.
        port = f":{request.url.port}" if request.url.port else ""
        host = f"{request.url.host.lower()}{port}"
        url = f"{request.url.scheme}://{host}{request.url.path}"
        digest = hashlib.sha256(str(request.url).encode()).hexdigest()[:12]
        suffix = ".json" if "json" in response.headers.get("content-type", "") else ".body"
        name = f"{request.url.path.strip('/').replace('/', '_') or 'root'}-{digest}{suffix}"
        entry = {
            "method": request.method,
            "url": url,
            "status": response.status_code,
            "content_type": response.headers.get("content-type", "application/octet-stream"),
            "body": name,
        }
        kept = {k: response.headers[k] for k in _KEPT_HEADERS if k in response.headers}
        if kept:
            entry["headers"] = kept
        folder = self.out_dir / host
        with self._lock:
            entries = self._entries.setdefault(host, [])
            # The first answer for a path wins: replay ignores the query string anyway.
            if any(e["url"] == url and e["method"] == request.method for e in entries):
                return
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(body)
            entries.append(entry)
            manifest = {
                "service": host,
                "provenance": "recorded by `va-signals record`",
                "responses": entries,
            }
            (folder / "manifest.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))


def _where(request: httpx.Request) -> str:
    # Never the query string or user-info: either may carry a credential.
    port = f":{request.url.port}" if request.url.port else ""
    return f"{request.method} {request.url.scheme}://{request.url.host}{port}{request.url.path}"
