"""Pure API clients and parsers, one module per upstream family; no Dagster imports here."""

from __future__ import annotations

from va_signals.catalog.models import Service, Source
from va_signals.sources.base import SourceAdapter


class SourceConfigError(ValueError):
    """A catalog entry its adapter cannot work with; the message names the source and key."""


# Adapter modules register their classes here by name (the catalog's `adapter` key).
ADAPTERS: dict[str, type[SourceAdapter]] = {}


def register(adapter_class: type[SourceAdapter]) -> type[SourceAdapter]:
    """Class decorator: make an adapter available to the catalog under its `name`."""
    if adapter_class.name in ADAPTERS:
        raise ValueError(f"adapter {adapter_class.name!r} is registered twice")
    ADAPTERS[adapter_class.name] = adapter_class
    return adapter_class


def build_adapter(source: Source, service: Service) -> SourceAdapter:
    """Instantiate the adapter a catalog source names, bound to its service's base URL."""
    _load_adapter_modules()
    try:
        adapter_class = ADAPTERS[source.adapter]
    except KeyError:
        raise SourceConfigError(
            f"source {source.id!r}: key 'adapter' names unknown adapter {source.adapter!r}; "
            f"known: {sorted(ADAPTERS)}"
        ) from None
    try:
        return adapter_class(source, service.base_url)
    except SourceConfigError:
        raise
    except ValueError as exc:
        # Adapters check their params with plain ValueErrors that already name source and key.
        raise SourceConfigError(str(exc)) from exc


def load_adapters() -> None:
    """Import every adapter module now, in this thread, rather than lazily from ingest threads."""
    _load_adapter_modules()


def _load_adapter_modules() -> None:
    # Imported for their @register side effect; kept here so callers need one import.
    from va_signals.sources import congress, ecfr, federal_register, lda  # noqa: F401
