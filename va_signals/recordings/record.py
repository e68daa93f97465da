"""An httpx transport that passes requests through and saves each answer as a recording."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import httpx
import yaml

# Response headers worth replaying; everything else (cookies, server ids) is left out.
_KEPT_HEADERS = ("retry-after", "x-ratelimit-limit", "x-ratelimit-remaining")


class RecordingTransport(httpx.BaseTransport):
    """Writes `<out>/<host>/<file>` and a `manifest.yaml` per host, in the replay format.

    Only the scheme, host and path of a request are written: query strings (which may carry an
    API key) and request headers (which carry the others) never reach the disk.
    """

    def __init__(self, out_dir: Path | str, inner: httpx.BaseTransport | None = None) -> None:
        self.out_dir = Path(out_dir)
        self.inner = inner or httpx.HTTPTransport()
        self._lock = threading.Lock()
        self._entries: dict[str, list[dict]] = {}

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        body = response.read()
        self._save(request, response, body)
        return httpx.Response(
            response.status_code, headers=response.headers, content=body, request=request
        )

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
