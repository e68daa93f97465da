"""The ingest without Dagster: the same parsers and upserts in a loop, for comparison."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx

from va_signals.catalog import default_catalog
from va_signals.db.location import database_url
from va_signals.db.pool import get_pool
from va_signals.ingest import run_source
from va_signals.recordings import ReplayTransport
from va_signals.resilience.http import ResilientClient
from va_signals.sources import build_adapter


def main(recordings: Path) -> None:
    catalog = default_catalog()
    pool = get_pool(database_url())
    http = httpx.Client(transport=ReplayTransport(recordings))
    for source in catalog.enabled_sources:
        service = catalog.service(source.service)
        client = ResilientClient(http, service, source.id)
        run_source(build_adapter(source, service), client, pool, run_id="plain-loop")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
