"""Replay and record transports: manifest matching, unrecorded requests, and key-free recording."""

from __future__ import annotations

import gzip
import http.server
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from va_signals.recordings import (
    MAX_RECORDED_BYTES,
    RecordingTooLarge,
    RecordingTransport,
    ReplayTransport,
    load_manifests,
)
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
        path = self.path.split("?")[0]
        body = json.dumps({"path": path, "results": [1, 2]}).encode()
        if path == "/big":
            body = b'{"padding": "' + b" " * 4096 + b'"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if path.startswith("/gzip"):
            body = gzip.compress(body)
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
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


def test_a_gzip_answer_is_recorded_decoded_and_passed_on_intact(
    upstream: str, tmp_path: Path
) -> None:
    live = httpx.Client(transport=RecordingTransport(tmp_path)).get(f"{upstream}/gzip/bill")

    assert live.json() == {"path": "/gzip/bill", "results": [1, 2]}
    assert live.headers["content-encoding"] == "gzip"
    recorded = next(tmp_path.rglob("*.json")).read_bytes()
    assert json.loads(recorded) == live.json()
    assert _client(tmp_path).get(f"{upstream}/gzip/bill").json() == live.json()


def test_a_body_past_the_recording_cap_is_refused_and_nothing_is_written(
    upstream: str, tmp_path: Path
) -> None:
    assert MAX_RECORDED_BYTES == 50 * 1024 * 1024
    recorder = httpx.Client(transport=RecordingTransport(tmp_path, max_bytes=1024))

    with pytest.raises(
        RecordingTooLarge, match=r"GET http://127\.0\.0\.1:\d+/big: body exceeds 1024"
    ):
        recorder.get(f"{upstream}/big?api_key=SECRET")

    assert list(tmp_path.rglob("*")) == []
    # Small bodies are still recorded through the same transport.
    assert recorder.get(f"{upstream}/v3/bill").status_code == 200
    assert len(list(tmp_path.rglob("*.json"))) == 1


def _manifest(root: Path, text: str) -> Path:
    folder = root / "recordings" / "svc"
    folder.mkdir(parents=True)
    (folder / "ok.json").write_text('{"ok": true}')
    manifest = folder / "manifest.yaml"
    manifest.write_text(text)
    return manifest


def _entry(body: str) -> str:
    return (
        "service: svc\nresponses:\n"
        "  - url: https://svc.example/ok\n    status: 200\n    body: ok.json\n"
        f"  - url: https://svc.example/secret\n    status: 200\n    body: {json.dumps(body)}\n"
    )


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_a_body_outside_the_recordings_folder_is_refused_at_load(tmp_path: Path, kind: str) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    body = {"dotdot": "../../secret.txt", "absolute": str(secret), "symlink": "link.json"}[kind]
    manifest = _manifest(tmp_path, _entry(body))
    if kind == "symlink":
        os.symlink(secret, manifest.parent / "link.json")

    with pytest.raises(ValueError, match="outside the recordings folder") as raised:
        ReplayTransport(tmp_path / "recordings")

    message = str(raised.value)
    assert str(manifest) in message
    assert "response 1 (GET https://svc.example/secret)" in message
    assert "TOP-SECRET-CONTENT" not in message


def test_a_missing_body_file_is_reported_at_load_naming_file_and_entry(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, _entry("gone.json"))

    with pytest.raises(ValueError, match="body file 'gone.json' does not exist") as raised:
        load_manifests(tmp_path / "recordings")

    assert str(manifest) in str(raised.value)
    assert "response 1 (GET https://svc.example/secret)" in str(raised.value)


def test_a_manifest_that_is_a_list_is_an_error_naming_its_file(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, "- service: svc\n- responses: []\n")

    with pytest.raises(ValueError, match="expected a mapping") as raised:
        load_manifests(tmp_path / "recordings")

    assert str(raised.value).startswith(f"{manifest}: invalid recordings manifest")


def test_a_body_inside_the_folder_still_replays(tmp_path: Path) -> None:
    _manifest(tmp_path, _entry("ok.json"))

    response = _client(tmp_path / "recordings").get("https://svc.example/secret")

    assert response.json() == {"ok": True}
