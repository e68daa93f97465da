"""Typed shape of the source catalog: every field a source or upstream service may declare."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator


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


# JSON value types under the names PostgreSQL's jsonb_typeof gives them, so a stored payload's
# schema can be read in SQL and compared with the catalog as is.
JSON_TYPES = ("object", "array", "string", "number", "boolean", "null")


def _check_field_type(value: str) -> str:
    unknown = [part for part in value.split("|") if part not in JSON_TYPES]
    if unknown:
        raise ValueError(
            f"unknown JSON type {unknown[0]!r}; use one of {', '.join(JSON_TYPES)}, "
            "or several joined by '|' (e.g. 'string|null')"
        )
    return value


FieldType = Annotated[str, AfterValidator(_check_field_type)]


class QualityBounds(_Strict):
    """Data-quality expectations for one run of a source, read by the source's asset checks."""

    min_records_per_run: int = Field(default=0, ge=0)
    max_records_per_run: int = Field(default=50_000, gt=0)
    earliest_date: date = date(1789, 1, 1)
    # Payload field -> JSON type(s) ("string", "string|null"): the schema the API documents.
    expected_fields: dict[str, FieldType] = Field(default_factory=dict)
    # Records repeated within one run (same external id) before the run counts as broken.
    max_duplicates_per_run: int = Field(default=0, ge=0)
    # Dates up to this many days after today are not "in the future" (scheduled meetings are).
    max_days_ahead: int = Field(default=1, ge=0)
    # The order the API promises for records of a listing: a payload field and a direction.
    ordered_by: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]* (asc|desc)$")
    # New documents are expected at least this often, counted in the source's calendar (only
    # business days for weekday sources); None when a quiet week is normal for the source.
    presence_window_hours: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _check_record_bounds(self) -> QualityBounds:
        if self.min_records_per_run > self.max_records_per_run:
            raise ValueError(
                f"min_records_per_run ({self.min_records_per_run}) exceeds "
                f"max_records_per_run ({self.max_records_per_run})"
            )
        return self


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
