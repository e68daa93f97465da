"""Loads and validates `sources.yaml`, the single catalog every source asset is generated from."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from va_signals.catalog.models import (
    BreakerPolicy,
    Cadence,
    Catalog,
    QualityBounds,
    RateLimit,
    RetryPolicy,
    Service,
    Source,
)

DEFAULT_CATALOG_PATH = Path(__file__).with_name("sources.yaml")

__all__ = [
    "DEFAULT_CATALOG_PATH",
    "BreakerPolicy",
    "Cadence",
    "Catalog",
    "CatalogError",
    "QualityBounds",
    "RateLimit",
    "RetryPolicy",
    "Service",
    "Source",
    "load_catalog",
    "default_catalog",
]


class CatalogError(ValueError):
    """The catalog file is unreadable or invalid; the message names the file, entry and key."""


def load_catalog(path: Path | str = DEFAULT_CATALOG_PATH) -> Catalog:
    """Read and validate a catalog file, failing with one message per invalid key."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise CatalogError(f"{path}: cannot read catalog: {exc}") from exc
    if not isinstance(raw, dict):
        raise CatalogError(f"{path}: expected a mapping with 'services' and 'sources' at the top")
    try:
        return Catalog.model_validate(raw)
    except ValidationError as exc:
        problems = [_describe(path, raw, error) for error in exc.errors()]
        raise CatalogError("\n".join(problems)) from None


@lru_cache(maxsize=1)
def default_catalog() -> Catalog:
    """The catalog shipped with the package, parsed once per process."""
    return load_catalog(DEFAULT_CATALOG_PATH)


def _describe(path: Path, raw: dict[str, Any], error: Any) -> str:
    location = list(error["loc"])
    where = "catalog"
    if (
        len(location) >= 2
        and location[0] in ("sources", "services")
        and isinstance(location[1], int)
    ):
        section, index = location[0], location[1]
        entries = raw.get(section) or []
        entry = entries[index] if index < len(entries) else {}
        label = "source" if section == "sources" else "service"
        key_name = "id" if section == "sources" else "name"
        entry_name = entry.get(key_name, f"#{index}") if isinstance(entry, dict) else f"#{index}"
        where = f"{label} {entry_name!r}"
        location = location[2:]
    key = ".".join(str(part) for part in location) or "(entry)"
    value = error.get("input")
    if error["type"] == "extra_forbidden":
        return f"{path}: {where}: unknown key {key!r}"
    return f"{path}: {where}: key {key!r}: {error['msg']} (value: {value!r})"
