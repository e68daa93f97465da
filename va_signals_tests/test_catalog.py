"""The catalog: the shipped file validates, and mistakes name the file, the source and the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from va_signals.catalog import DEFAULT_CATALOG_PATH, CatalogError, default_catalog, load_catalog
from va_signals.sources import build_adapter


def _write_variant(tmp_path: Path, change) -> Path:
    raw = yaml.safe_load(DEFAULT_CATALOG_PATH.read_text())
    change(raw)
    path = tmp_path / "sources.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_shipped_catalog_builds_an_adapter_for_every_source() -> None:
    catalog = default_catalog()
    assert len(catalog.sources) >= 9
    for source in catalog.sources:
        adapter = build_adapter(source, catalog.service(source.service))
        assert adapter.source_id == source.id


def test_unknown_key_names_file_source_and_key(tmp_path: Path) -> None:
    path = _write_variant(tmp_path, lambda raw: raw["sources"][2].update(cadance="daily"))
    with pytest.raises(CatalogError) as failure:
        load_catalog(path)
    message = str(failure.value)
    assert str(path) in message
    assert "source 'ecfr_title38'" in message
    assert "unknown key 'cadance'" in message


def test_bad_value_names_the_value(tmp_path: Path) -> None:
    path = _write_variant(tmp_path, lambda raw: raw["sources"][0].update(freshness_sla_hours=-4))
    with pytest.raises(CatalogError) as failure:
        load_catalog(path)
    message = str(failure.value)
    assert "source 'federal_register_va'" in message
    assert "key 'freshness_sla_hours'" in message
    assert "-4" in message


def test_unknown_service_reference_is_rejected(tmp_path: Path) -> None:
    path = _write_variant(tmp_path, lambda raw: raw["sources"][0].update(service="nowhere.gov"))
    with pytest.raises(CatalogError, match="unknown service 'nowhere.gov'"):
        load_catalog(path)


def test_duplicate_source_id_is_rejected(tmp_path: Path) -> None:
    path = _write_variant(tmp_path, lambda raw: raw["sources"].append(dict(raw["sources"][0])))
    with pytest.raises(CatalogError, match="declared twice"):
        load_catalog(path)


def test_unknown_adapter_names_the_source(tmp_path: Path) -> None:
    path = _write_variant(tmp_path, lambda raw: raw["sources"][0].update(adapter="fedreg"))
    catalog = load_catalog(path)
    source = catalog.source("federal_register_va")
    with pytest.raises(ValueError, match="source 'federal_register_va': key 'adapter'"):
        build_adapter(source, catalog.service(source.service))
