"""Ingest figures: upsert throughput against COPY, and the whole job against a plain loop."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

import psutil
import psycopg

from benchmarks.common import ROOT, SHARED_RECORDINGS, scratch_database
from va_signals.catalog import default_catalog
from va_signals.db.documents import content_hash, dedup_key, upsert_documents
from va_signals.sources import build_adapter

ROUNDS = 5


def federal_register_records() -> list:
    catalog = default_catalog()
    source = catalog.source("federal_register_va")
    adapter = build_adapter(source, catalog.service(source.service))
    body = (SHARED_RECORDINGS / "federal_register/documents-2024-page1.json").read_bytes()
    return adapter.parse(body).records


def bench_upsert_vs_copy() -> None:
    records = federal_register_records()
    with scratch_database() as url, psycopg.connect(url) as conn:
        new_times, unchanged_times, copy_times = [], [], []
        for round_ in range(ROUNDS):
            source_id = f"bench_{round_}"
            started = time.perf_counter()
            upsert_documents(conn, source_id, records)
            conn.commit()
            new_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            counts = upsert_documents(conn, source_id, records)
            conn.commit()
            unchanged_times.append(time.perf_counter() - started)
            assert counts.unchanged == len(records)

            conn.execute("DROP TABLE IF EXISTS scratch_copy")
            conn.execute("CREATE TABLE scratch_copy (LIKE documents INCLUDING DEFAULTS)")
            conn.commit()
            started = time.perf_counter()
            columns = (
                "id, source_id, external_id, title, summary, url, published_at, published_on, "
                "content_hash, dedup_key, payload"
            )
            with conn.cursor().copy(f"COPY scratch_copy ({columns}) FROM STDIN") as copy:
                for index, r in enumerate(records):
                    copy.write_row(
                        (
                            index,
                            source_id,
                            r.external_id,
                            r.title,
                            r.summary,
                            r.url,
                            r.published_at,
                            r.published_on,
                            content_hash(r),
                            dedup_key(r),
                            psycopg.types.json.Jsonb(r.payload),
                        )
                    )
            conn.commit()
            copy_times.append(time.perf_counter() - started)
    best_new, best_same, best_copy = min(new_times), min(unchanged_times), min(copy_times)
    n = len(records)
    print(f"upsert of {n} Federal Register documents (best of {ROUNDS}):")
    print(f"  insert new       {n / best_new:10.0f} docs/s  ({best_new * 1000:.0f} ms)")
    print(f"  re-upsert same   {n / best_same:10.0f} docs/s  ({best_same * 1000:.0f} ms)")
    print(f"  COPY to scratch  {n / best_copy:10.0f} docs/s  ({best_copy * 1000:.0f} ms)")
    print(f"  ratio upsert-new / COPY throughput: {best_copy / best_new:.2f}")


def _timed_child(command: list[str], env: dict[str, str], url: str) -> tuple[float, int, int]:
    """Wall seconds, peak RSS (bytes) of the child's process tree, and peak server connections
    to the benchmark database while it ran, sampled every 20 ms."""
    peak_connections = 0
    peak_rss = 0
    child = subprocess.Popen(
        command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    started = time.perf_counter()
    process = psutil.Process(child.pid)
    with psycopg.connect(url, autocommit=True) as conn:
        while child.poll() is None:
            try:
                tree = [process, *process.children(recursive=True)]
                peak_rss = max(peak_rss, sum(p.memory_info().rss for p in tree))
            except psutil.Error:
                pass  # the child exited between poll() and the sample
            count = conn.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone()[0]
            peak_connections = max(peak_connections, count)
            time.sleep(0.02)
    elapsed = time.perf_counter() - started
    stdout, stderr = child.communicate()
    if child.returncode != 0:
        raise SystemExit(f"{command} failed:\n{stdout}\n{stderr}")
    return elapsed, peak_rss, peak_connections


def bench_job_vs_plain_loop() -> None:
    with scratch_database() as url, tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "DATABASE_URL": url, "DAGSTER_HOME": home}
        job = [sys.executable, "-m", "va_signals.cli", "run", "--replay", str(SHARED_RECORDINGS)]
        job_time, job_rss, job_peak = _timed_child(job, env, url)
    with scratch_database() as url:
        env = {**os.environ, "DATABASE_URL": url}
        plain = [sys.executable, "-m", "benchmarks.plain_loop", str(SHARED_RECORDINGS)]
        plain_time, plain_rss, plain_peak = _timed_child(plain, env, url)
    print("va-signals run --replay ../shared/recordings (fresh database):")
    print(
        f"  Dagster job   {job_time:6.2f} s wall, peak RSS {job_rss / 2**20:6.0f} MiB, "
        f"peak connections {job_peak}"
    )
    print(
        f"  plain loop    {plain_time:6.2f} s wall, peak RSS {plain_rss / 2**20:6.0f} MiB, "
        f"peak connections {plain_peak}"
    )
    print(
        f"  ratio job / plain loop: wall {job_time / plain_time:.2f}, "
        f"RSS {job_rss / max(plain_rss, 1):.2f}"
    )


if __name__ == "__main__":
    bench_upsert_vs_copy()
    bench_job_vs_plain_loop()
