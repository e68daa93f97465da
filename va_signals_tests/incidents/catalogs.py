"""Small catalogs for correlator tests, built in code so each test shows its dependency graph."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from va_signals.catalog import Catalog, default_catalog


def make_catalog(
    services: Mapping[str, Sequence[str]],
    sources: Sequence[tuple[str, str]],
    *,
    critical: Sequence[str] = (),
) -> Catalog:
    """`services`: name -> names it sits behind; `sources`: (source id, service) pairs."""
    return Catalog.model_validate(
        {
            "services": [
                {
                    "name": name,
                    "base_url": f"https://{name}",
                    "behind": list(behind),
                    "rate_limit": {"requests": 10, "per_seconds": 1},
                }
                for name, behind in services.items()
            ],
            "sources": [
                {
                    "id": source_id,
                    "family": source_id.split("_")[0],
                    "adapter": "none",
                    "service": service,
                    "description": f"test source {source_id}",
                    "cadence": "daily",
                    "freshness_sla_hours": 24,
                    "critical": source_id in critical,
                    "max_pages": 1,
                }
                for source_id, service in sources
            ],
        }
    )


def spread_catalog(count: int) -> Catalog:
    """`count` sources, each on its own unrelated service."""
    services = {f"svc{index}.example": () for index in range(count)}
    sources = [(f"src_{index}", f"svc{index}.example") for index in range(count)]
    return make_catalog(services, sources)


def shipped_catalog() -> Catalog:
    return default_catalog()
