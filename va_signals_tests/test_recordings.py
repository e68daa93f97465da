"""Replay and record transports: manifest matching, unrecorded requests, and key-free recording."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from va_signals.recordings import RecordingTransport, ReplayTransport
from va_signals_tests.recordings import shared_recordings


def _client(root: Path) -> httpx.Client:
    return httpx.Client(transport=ReplayTransport(root))


def test_fewest_wildcards_win_and_query_is_ignored() -> None:
    client = _client(shared_recordings())
    listing = client.get("https://api.congress.gov/v3/bill/117/hr?offset=20&limit=20")
    actions = client.get("https://api.congress.gov/v3/bill/117/hr/21/actions")
    bill = client.get("https://api.congress.gov/v3/bill/117/hr/21")
    assert listing.status_code == 200
    assert len(listing.json()["bills"]) == 20
    assert len(actions.json()["actions"]) == 10
    assert bill.json()["bill"]["number"] == "21"


def test_unrecorded_request_is_answered_as_not_recorded() -> None:
    response = _client(shared_recordings()).get("https://www.federalregister.gov/api/v1/documents")
    assert response.status_code == 404
    assert response.text.startswith("not recorded: GET https://www.federalregister.gov")


def test_manifest_note_with_a_colon_still_loads() -> None:
    # The courts manifest has a free-text note containing ": "; the rest must stay replayable.
    response = _client(shared_recordings()).get(
        "https://cafc.uscourts.gov/category/opinion-order/feed/"
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/rss+xml"


class _Upstream(http.server.BaseHTTPRequestHandler):
    seen_headers: list[dict[str, str]] = []

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        type(self).seen_headers.append(dict(self.headers))
        body = json.dumps({"path": self.path.split("?")[0], "results": [1, 2]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Retry-After", "3")
        self.send_header("Set-Cookie", "session=secret-cookie")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_recorded_folder_replays_and_holds_no_keys(upstream: str, tmp_path: Path) -> None:
    recorder = httpx.Client(transport=RecordingTransport(tmp_path))
    live = recorder.get(
        f"{upstream}/v3/bill?api_key=SECRET-QUERY-KEY", headers={"X-Api-Key": "SECRET-HEADER-KEY"}
    )
    recorder.get(f"{upstream}/v3/bill?offset=250&api_key=SECRET-QUERY-KEY")
    assert _Upstream.seen_headers[0]["X-Api-Key"] == "SECRET-HEADER-KEY"

    written = "".join(path.read_text() for path in tmp_path.rglob("*") if path.is_file())
    assert "SECRET" not in written
    assert "secret-cookie" not in written
    manifest = yaml.safe_load(next(tmp_path.rglob("manifest.yaml")).read_text())
    assert [entry["url"] for entry in manifest["responses"]] == [f"{upstream}/v3/bill"]
    assert manifest["responses"][0]["headers"] == {"retry-after": "3"}
    assert len(list(tmp_path.rglob("*.json"))) == 1

    replayed = _client(tmp_path).get(f"{upstream}/v3/bill")
    assert replayed.status_code == 200
    assert replayed.json() == live.json()
    assert replayed.headers["retry-after"] == "3"
