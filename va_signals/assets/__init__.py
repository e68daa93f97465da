"""Dagster assets: every catalog source, the documents stage and the signals it yields."""

from va_signals.assets.pipeline import (
    DOCUMENTS_KEY,
    SIGNALS_KEY,
    IngestConfig,
    build_pipeline,
    source_asset_key,
)

__all__ = ["DOCUMENTS_KEY", "SIGNALS_KEY", "IngestConfig", "build_pipeline", "source_asset_key"]
