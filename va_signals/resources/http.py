"""The HTTP resource: one httpx client per process, bound per source to its service's rules."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import dagster as dg
import httpx
from psycopg_pool import ConnectionPool
from pydantic import Field

from va_signals import __version__
from va_signals.catalog.models import Service
from va_signals.db.breakers import PostgresBreakerStore
from va_signals.db.location import database_url
from va_signals.db.pool import get_pool
from va_signals.db.rate_limits import PostgresRateLimitStore
from va_signals.recordings import RecordingTransport, ReplayTransport
from va_signals.resilience.breaker import CircuitBreaker
from va_signals.resilience.http import CallGate, ResilientClient, Throttle
from va_signals.resilience.limiter import RateLimiter

USER_AGENT = f"va-signals/{__version__} (veterans policy monitor; python-httpx)"

_clients: dict[tuple[str, str], httpx.Client] = {}
_clients_lock = threading.Lock()


# Resource field -> environment variable of each API key (the catalog's `api_key_env`).
API_KEY_ENV = {"data_gov_api_key": "DATA_GOV_API_KEY", "lda_api_key": "LDA_API_KEY"}


def api_key_settings(as_run_config: bool = False) -> dict[str, object]:
    """The keys set in the environment, as `dg.EnvVar`s or as run-config env references.

    Either way the value never enters the definitions or the run config, only its name.
    """
    return {
        field: {"env": env} if as_run_config else dg.EnvVar(env)
        for field, env in API_KEY_ENV.items()
        if os.environ.get(env)
    }


class HttpResource(dg.ConfigurableResource):
    """Outbound HTTP for every source: timeouts, User-Agent, API keys, replay and record.

    Keys are read from environment variables through `dg.EnvVar` and never logged.
    """

    replay_dir: str = Field(default="", description="Serve requests from this recordings folder.")
    record_dir: str = Field(default="", description="Save every response into this folder.")
    user_agent: str = USER_AGENT
    data_gov_api_key: str | None = Field(default=None, description="api.data.gov key.")
    lda_api_key: str | None = Field(default=None, description="Senate LDA API key.")
    state_database_url: str = Field(
        default="",
        description="PostgreSQL holding the shared breakers and rate limits; empty means "
        "DATABASE_URL, else the embedded server.",
    )

    def api_key_for(self, service: Service) -> str | None:
        """The configured key of a service, its public demo key, or None."""
        return self._configured_key(service) or service.demo_key

    def has_api_key(self, service: Service) -> bool:
        """Whether a key of our own is configured (a demo key earns no higher rate limit)."""
        return bool(self._configured_key(service))

    def breaker_for(
        self,
        service: Service,
        source_id: str,
        *,
        log: logging.Logger | logging.LoggerAdapter | None = None,
    ) -> CircuitBreaker:
        """The gate of the service's shared circuit breaker, reporting as `source_id`."""
        store = PostgresBreakerStore(self._state_pool())
        return CircuitBreaker(service.name, service.breaker, store, source_id=source_id, log=log)

    def throttle_for(
        self,
        service: Service,
        source_id: str,
        *,
        log: logging.Logger | logging.LoggerAdapter | None = None,
    ) -> RateLimiter | None:
        """The service's shared rate limiter, or None when replaying: no request reaches it."""
        if self.replay_dir:
            return None
        return RateLimiter(
            service.name,
            service.rate_limit,
            PostgresRateLimitStore(self._state_pool()),
            source_id=source_id,
            has_key=self.has_api_key(service),
            log=log,
        )

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
        self,
        service: Service,
        source_id: str,
        *,
        log: logging.Logger | logging.LoggerAdapter | None = None,
        gate: CallGate | None = None,
        throttle: Throttle | None = None,
    ) -> ResilientClient:
        """A client bound to one source's service: its key, limits, breaker and retries.

        The service's shared breaker and rate limiter are used unless others are passed.
        """
        return ResilientClient(
            self.httpx_client(),
            service,
            source_id,
            api_key=self.api_key_for(service),
            gate=gate if gate is not None else self.breaker_for(service, source_id, log=log),
            throttle=(
                throttle if throttle is not None else self.throttle_for(service, source_id, log=log)
            ),
            log=log,
        )

    def _configured_key(self, service: Service) -> str | None:
        by_env = {env: getattr(self, field) for field, env in API_KEY_ENV.items()}
        return by_env.get(service.api_key_env) if service.api_key_env else None

    def _state_pool(self) -> ConnectionPool:
        # The process-wide pool of that URL: the same one the database resource uses.
        return get_pool(self.state_database_url or database_url())

    def _transport(self) -> httpx.BaseTransport:
        if self.replay_dir and self.record_dir:
            raise ValueError("replay_dir and record_dir cannot both be set")
        if self.replay_dir:
            return ReplayTransport(Path(self.replay_dir))
        if self.record_dir:
            return RecordingTransport(Path(self.record_dir))
        return httpx.HTTPTransport(retries=0)
