"""The HTTP resource: one httpx client per process, bound per source to its service's rules."""

from __future__ import annotations

import threading
from pathlib import Path

import dagster as dg
import httpx
from pydantic import Field

from va_signals import __version__
from va_signals.catalog.models import Service
from va_signals.recordings import RecordingTransport, ReplayTransport
from va_signals.resilience.http import ResilientClient

USER_AGENT = f"va-signals/{__version__} (veterans policy monitor; python-httpx)"

_clients: dict[tuple[str, str], httpx.Client] = {}
_clients_lock = threading.Lock()


class HttpResource(dg.ConfigurableResource):
    """Outbound HTTP for every source: timeouts, User-Agent, API keys, replay and record.

    Keys are read from environment variables through `dg.EnvVar` and never logged.
    """

    replay_dir: str = Field(default="", description="Serve requests from this recordings folder.")
    record_dir: str = Field(default="", description="Save every response into this folder.")
    user_agent: str = USER_AGENT
    data_gov_api_key: str | None = Field(default=None, description="api.data.gov key.")
    lda_api_key: str | None = Field(default=None, description="Senate LDA API key.")

    def api_key_for(self, service: Service) -> str | None:
        """The configured key of a service, its public demo key, or None."""
        keys = {"DATA_GOV_API_KEY": self.data_gov_api_key, "LDA_API_KEY": self.lda_api_key}
        key = keys.get(service.api_key_env or "") if service.api_key_env else None
        return key or service.demo_key

    def httpx_client(self) -> httpx.Client:
        """The process-wide client for this replay/record setting."""
        cache_key = (self.replay_dir, self.record_dir)
        with _clients_lock:
            client = _clients.get(cache_key)
            if client is None or client.is_closed:
                client = httpx.Client(
                    transport=self._transport(),
                    headers={"User-Agent": self.user_agent, "Accept": "application/json"},
                    follow_redirects=True,
                    limits=httpx.Limits(max_connections=50, max_keepalive_connections=20),
                )
                _clients[cache_key] = client
            return client

    def client_for(
        self, service: Service, source_id: str, *, log=None, gate=None, throttle=None
    ) -> ResilientClient:
        """A client bound to one source's service: its key, limits, breaker and retries."""
        return ResilientClient(
            self.httpx_client(),
            service,
            source_id,
            api_key=self.api_key_for(service),
            gate=gate,
            throttle=throttle,
            log=log,
        )

    def _transport(self) -> httpx.BaseTransport:
        if self.replay_dir and self.record_dir:
            raise ValueError("replay_dir and record_dir cannot both be set")
        if self.replay_dir:
            return ReplayTransport(Path(self.replay_dir))
        if self.record_dir:
            return RecordingTransport(Path(self.record_dir))
        return httpx.HTTPTransport(retries=0)
