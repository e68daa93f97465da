"""An httpx transport that answers from a recordings folder and never touches the network."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx

from va_signals.recordings.manifest import Manifest, RecordedResponse, body_path, load_manifests

NOT_RECORDED_STATUS = 404


class ReplayTransport(httpx.BaseTransport):
    """Serves each request from the best-matching recorded response.

    The query string is ignored; among matches the entry with the fewest wildcards wins. A
    request with no recording is answered 404 "not recorded", which an adapter meets exactly as
    it would meet a failing upstream.
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self._manifests: list[Manifest] = load_manifests(self.root)
        self._bodies: dict[Path, bytes] = {}
        self._lock = threading.Lock()
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.requests.append(request)
        match = self._match(request)
        if match is None:
            return httpx.Response(
                NOT_RECORDED_STATUS,
                headers={"content-type": "text/plain", "x-replay": "not-recorded"},
                content=f"not recorded: {request.method} {_without_query(request)}".encode(),
                request=request,
            )
        manifest, entry = match
        headers = {"content-type": entry.content_type, "x-replay": "recorded", **entry.headers}
        return httpx.Response(
            entry.status, headers=headers, content=self._body(manifest, entry), request=request
        )

    def _match(self, request: httpx.Request) -> tuple[Manifest, RecordedResponse] | None:
        host = request.url.host.lower()
        if request.url.port not in (None, 80, 443):
            host = f"{host}:{request.url.port}"
        candidates = [
            (entry.wildcards, manifest, entry)
            for manifest in self._manifests
            for entry in manifest.responses
            if entry.matches(request.method, host, request.url.path)
        ]
        if not candidates:
            return None
        _, manifest, entry = min(candidates, key=lambda candidate: candidate[0])
        return manifest, entry

    def _body(self, manifest: Manifest, entry: RecordedResponse) -> bytes:
        # Checked at load time too; again here, as the folder may have changed since.
        path = body_path(manifest, entry)
        with self._lock:
            body = self._bodies.get(path)
            if body is None:
                body = path.read_bytes()
                self._bodies[path] = body
        return body


def _without_query(request: httpx.Request) -> str:
    return str(request.url.copy_with(query=None))
