"""Typed shape of the source catalog: every field a source or upstream service may declare."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Cadence(StrEnum):
    """How often a source publishes, which drives its schedule and freshness expectations."""

    HOURLY = "hourly"
    DAILY = "daily"
    WEEKDAYS = "weekdays"
    WEEKLY = "weekly"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RateLimit(_Strict):
    """At most `requests` calls per `per_seconds` to one upstream service, across all processes."""

    requests: int = Field(gt=0)
    per_seconds: float = Field(gt=0)
    # Some services grant a higher limit to callers with an API key (LDA: 120/min vs 15/min).
    requests_with_key: int | None = Field(default=None, gt=0)
    max_wait_seconds: float = Field(default=60.0, ge=0)


class BreakerPolicy(_Strict):
    """When the breaker of an upstream service opens, how long it stays open, how it recovers."""

    failure_threshold: int = Field(default=5, gt=0)
    failure_rate: float = Field(default=0.5, gt=0, le=1)
    window_seconds: float = Field(default=300.0, gt=0)
    min_calls_for_rate: int = Field(default=10, gt=0)
    open_seconds: float = Field(default=60.0, gt=0)
    max_open_seconds: float = Field(default=4 * 3600.0, gt=0)
    half_open_probes: int = Field(default=2, gt=0)
    half_open_timeout_seconds: float = Field(default=120.0, gt=0)
    recovery_steps: tuple[float, ...] = (0.25, 0.5, 1.0)
    recovery_step_calls: int = Field(default=5, gt=0)


class RetryPolicy(_Strict):
    """Bounds on retrying one request: attempts and total seconds spent."""

    max_attempts: int = Field(default=4, ge=1)
    max_total_seconds: float = Field(default=60.0, gt=0)
    base_delay_seconds: float = Field(default=0.5, gt=0)
    max_delay_seconds: float = Field(default=20.0, gt=0)


class Service(_Strict):
    """An upstream host that one or more sources call; breaker and limits are per service."""

    name: str = Field(min_length=1)
    base_url: str = Field(pattern=r"^https?://")
    # Upstream dependencies (for example a shared API gateway) used to find a common root cause.
    behind: tuple[str, ...] = ()
    api_key_env: str | None = None
    api_key_header: str | None = None
    api_key_prefix: str = ""
    demo_key: str | None = None
    rate_limit: RateLimit
    breaker: BreakerPolicy = BreakerPolicy()
    retry: RetryPolicy = RetryPolicy()
    connect_timeout_seconds: float = Field(default=10.0, gt=0)
    read_timeout_seconds: float = Field(default=30.0, gt=0)
    max_body_bytes: int = Field(default=20 * 1024 * 1024, gt=0)


class QualityBounds(_Strict):
    """Data-quality expectations for one run of a source."""

    min_records_per_run: int = Field(default=0, ge=0)
    max_records_per_run: int = Field(default=50_000, gt=0)
    earliest_date: str = "1789-01-01"
    expected_fields: tuple[str, ...] = ()


class Source(_Strict):
    """One catalog entry: a feed of documents that becomes one Dagster asset."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    family: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    adapter: str = Field(min_length=1)
    service: str = Field(min_length=1)
    description: str = Field(min_length=1)
    cadence: Cadence
    freshness_sla_hours: float = Field(gt=0)
    critical: bool
    max_pages: int = Field(gt=0)
    enabled: bool = True
    owners: tuple[str, ...] = ("team:va-signals",)
    params: dict[str, Any] = Field(default_factory=dict)
    quality: QualityBounds = QualityBounds()


class Catalog(_Strict):
    """All services and sources; validated together so cross-references are checked once."""

    services: tuple[Service, ...]
    sources: tuple[Source, ...]

    @model_validator(mode="after")
    def _check_references(self) -> Catalog:
        service_names = [service.name for service in self.services]
        _reject_duplicates("service", service_names)
        _reject_duplicates("source", [source.id for source in self.sources])
        known = set(service_names)
        for service in self.services:
            for upstream in service.behind:
                if upstream not in known:
                    raise ValueError(
                        f"service {service.name!r}: key 'behind' names unknown service {upstream!r}"
                    )
        for source in self.sources:
            if source.service not in known:
                raise ValueError(
                    f"source {source.id!r}: key 'service' names unknown service {source.service!r}"
                )
        return self

    def service(self, name: str) -> Service:
        for service in self.services:
            if service.name == name:
                return service
        raise KeyError(f"no service named {name!r} in the catalog")

    def source(self, source_id: str) -> Source:
        for source in self.sources:
            if source.id == source_id:
                return source
        raise KeyError(f"no source with id {source_id!r} in the catalog")

    @property
    def enabled_sources(self) -> tuple[Source, ...]:
        return tuple(source for source in self.sources if source.enabled)


def _reject_duplicates(kind: str, names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"{kind} {name!r} is declared twice")
        seen.add(name)
