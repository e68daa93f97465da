"""Test doubles built from the project's real parts: replayed recordings through the real client."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from va_signals.catalog import default_catalog
from va_signals.recordings import ReplayTransport
from va_signals.resilience.http import ResilientClient
from va_signals_tests.recordings import shared_recordings


class _OverlayTransport(ReplayTransport):
    """Answers with a test's own bodies first (by full URL, then by path), else the recordings."""

    def __init__(self, served: Mapping[str, bytes], root: Path | None = None) -> None:
        super().__init__(root or shared_recordings())
        self.served = dict(served)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = self.served.get(str(request.url)) or self.served.get(request.url.path)
        if body is None:
            return super().handle_request(request)
        self.requests.append(request)
        return httpx.Response(
            200, headers={"content-type": "application/json"}, content=body, request=request
        )


class ReplayingClient(ResilientClient):
    """The production client over the replay transport, remembering every URL it was asked for
    exactly as the adapter passed it."""

    def __init__(
        self, source_id: str, served: Mapping[str, Any] | None = None, root: Path | None = None
    ) -> None:
        catalog = default_catalog()
        service = catalog.service(catalog.source(source_id).service)
        bodies = {key: _as_bytes(value) for key, value in (served or {}).items()}
        self.transport = _OverlayTransport(bodies, root)
        self.requested: list[str] = []
        super().__init__(httpx.Client(transport=self.transport), service, source_id)

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        self.requested.append(url)
        return super().get(url, **kwargs)


def _as_bytes(value: Any) -> bytes:
    import json

    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value).encode()
