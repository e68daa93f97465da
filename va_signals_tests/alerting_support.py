"""Test doubles for alert receivers (real HTTP servers on 127.0.0.1) and the fixtures using them."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
import pytest

from va_signals.db.pool import get_pool
from va_signals.resources import DatabaseResource
from va_signals.resources.alerts import AlertsResource

ROUTING_KEY = "R0UT1NGKEY-test-0123456789abcdef"
OBSERVABILITY_TABLES = ("alert_outbox", "incident_sources", "incidents")
# Tables of the resilience migration, emptied too when present so breaker evidence is per test.
BREAKER_TABLES = ("breaker_events", "breakers")


@dataclass
class Answer:
    status: int
    body: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    delay_seconds: float = 0.0


@dataclass
class Received:
    path: str
    body: dict[str, Any]


class FakeReceiver:
    """A real HTTP server on 127.0.0.1 that records every POSTed JSON body and answers from a
    script of queued answers (then `default`): fail N times, rate limit, reject, hang."""

    def __init__(self, default: Answer) -> None:
        self.default = default
        self.received: list[Received] = []
        self._script: deque[Answer] = deque()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def answer_next(self, answer: Answer, times: int = 1) -> None:
        with self._lock:
            self._script.extend([answer] * times)

    def bodies(self, path: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [item.body for item in self.received if path is None or item.path == path]

    def start(self) -> FakeReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _next_answer(self, path: str, body: dict[str, Any]) -> Answer:
        with self._lock:
            self.received.append(Received(path, body))
            return self._script.popleft() if self._script else self.default

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the name http.server dispatches to
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                answer = receiver._next_answer(self.path, json.loads(raw or b"{}"))
                if answer.delay_seconds:
                    time.sleep(answer.delay_seconds)
                payload = json.dumps(answer.body).encode()
                try:
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (the "hang" answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


PAGERDUTY_ACCEPTED = Answer(
    202, {"status": "success", "message": "Event processed", "dedup_key": "ignored"}
)
PAGERDUTY_INVALID = Answer(
    400,
    {"status": "invalid event", "message": "Event object is invalid", "errors": ["bad"]},
)


def pagerduty_events(receiver: FakeReceiver, action: str | None = None) -> list[dict[str, Any]]:
    """Events API v2 bodies received at /v2/enqueue, optionally of one event_action."""
    return [
        body
        for body in receiver.bodies("/v2/enqueue")
        if action is None or body.get("event_action") == action
    ]


@pytest.fixture
def fake_pagerduty() -> Iterator[FakeReceiver]:
    receiver = FakeReceiver(PAGERDUTY_ACCEPTED).start()
    yield receiver
    receiver.stop()


@pytest.fixture
def fake_slack() -> Iterator[FakeReceiver]:
    receiver = FakeReceiver(Answer(200, {})).start()
    yield receiver
    receiver.stop()


@pytest.fixture
def obs_db(db: str) -> Iterator[str]:
    """The session database with incidents, outbox and breaker tables emptied too."""
    with psycopg.connect(db, autocommit=True) as conn:
        present = [
            name
            for name in OBSERVABILITY_TABLES + BREAKER_TABLES
            if conn.execute("SELECT to_regclass(%s)", (name,)).fetchone()[0] is not None
        ]
        conn.execute("TRUNCATE " + ", ".join(present) + " RESTART IDENTITY CASCADE")
    yield db


@pytest.fixture
def database(obs_db: str) -> DatabaseResource:
    return DatabaseResource(url=obs_db)


def alerts_resource(
    pagerduty: FakeReceiver | None, slack: FakeReceiver | None = None, **overrides: Any
) -> AlertsResource:
    """Alerts pointed at the fakes, with short timeouts so a hang costs a fraction of a second."""
    settings: dict[str, Any] = {"timeout_seconds": 0.5}
    if pagerduty is not None:
        settings.update(pagerduty_routing_key=ROUTING_KEY, pagerduty_url=pagerduty.url)
    if slack is not None:
        settings["slack_webhook_url"] = slack.url + "/services/T000/B000/SECRETHOOK"
    settings.update(overrides)
    return AlertsResource(**settings)


def outbox_rows(url: str) -> list[dict[str, Any]]:
    with get_pool(url).connection() as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute("SELECT * FROM alert_outbox ORDER BY id")
        return list(cur.fetchall())


def insert_run(
    conn: psycopg.Connection,
    source_id: str,
    status: str,
    ended_at: datetime | None,
    *,
    run_id: str | None = None,
    error_class: str | None = "UpstreamUnavailable",
    started_at: datetime | None = None,
) -> int:
    """A `source_runs` row with explicit times, as the runner would have closed it."""
    error = error_class if status == "ERROR" else None
    started = started_at or ended_at
    return conn.execute(
        """
        INSERT INTO source_runs (source_id, run_id, status, started_at, ended_at, error_class,
                                 error_message)
        VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id
        """,
        (
            source_id,
            run_id,
            status,
            started,
            ended_at,
            error,
            f"{error}: HTTP 503" if error else None,
        ),
    ).fetchone()[0]
