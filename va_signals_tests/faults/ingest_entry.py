"""Runs one catalog source against a fake upstream in a process of its own, so a test can kill it.

Usage: python -m va_signals_tests.faults.ingest_entry BASE_URL DATABASE_URL SOURCE_ID
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from va_signals.db.locks import source_lock
from va_signals.db.pool import close_all_pools, get_pool
from va_signals.db.source_runs import close_abandoned_runs
from va_signals_tests.faults.harness import Ingest, fault_catalog, plain_client

# Long enough that the process is still waiting on a hung page when the test kills it.
READ_TIMEOUT_SECONDS = 60.0


def main(argv: Sequence[str]) -> int:
    base_url, database_url, source_id = argv
    catalog = fault_catalog(base_url, read_timeout_seconds=READ_TIMEOUT_SECONDS)
    pool = get_pool(database_url, max_size=3)
    try:
        # What the pipeline's ingest step does: close the runs of dead processes, then ingest
        # under the source's advisory lock.
        with pool.connection() as conn:
            closed = close_abandoned_runs(conn)
        with source_lock(pool, source_id, wait_seconds=0):
            result = Ingest(catalog, pool, client_factory=plain_client).run(source_id)
    finally:
        close_all_pools()
    print(json.dumps({"closed": closed, "status": result.status.value, "pages": result.pages}))
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
