"""Resilience figures: the resilient client's cost per request against bare httpx on one local
server, and the rate two processes achieve together under one shared rate limit: on the slot
schedule, which the limiter guarantees, and as the server received the requests."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from typing import Any

import httpx

from benchmarks.common import ROOT, SHARED_RECORDINGS, scratch_database
from va_signals.catalog import RateLimit, Service, default_catalog
from va_signals.db.pool import close_all_pools, get_pool
from va_signals.resilience.http import ResilientClient
from va_signals_tests.faults.upstream import ECFR_PATH, FakeUpstream

REQUESTS = 2000
WARMUP = 100
# Bare and resilient requests alternate in blocks, so a drift of the machine hits both alike.
BLOCK = 100
SHARED_LIMIT = 50
SHARED_WINDOW = 1.0
SHARED_SECONDS = 10.0
WORKERS = 2
# A worker that has not finished this long after its window is stuck: stop the benchmark.
WORKER_GRACE_SECONDS = 30.0


def _service(base_url: str, limit: RateLimit) -> Service:
    service = default_catalog().service("www.ecfr.gov")
    return service.model_copy(update={"base_url": base_url, "rate_limit": limit})


def _gates(pool: Any, service: Service, source_id: str, **limiter: Any) -> tuple[Any, Any]:
    """The PostgreSQL-backed breaker and rate limiter of `service`."""
    from va_signals.db.breakers import PostgresBreakerStore
    from va_signals.db.rate_limits import PostgresRateLimitStore
    from va_signals.resilience.breaker import CircuitBreaker
    from va_signals.resilience.limiter import RateLimiter

    breaker = CircuitBreaker(
        service.name, service.breaker, PostgresBreakerStore(pool), source_id=source_id
    )
    limiter = RateLimiter(
        service.name,
        service.rate_limit,
        PostgresRateLimitStore(pool),
        source_id=source_id,
        **limiter,
    )
    return breaker, limiter


@contextmanager
def _server() -> Any:
    server = FakeUpstream(SHARED_RECORDINGS, keep_alive=True).start()
    try:
        yield server
    finally:
        server.close()


def _percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def _timed(call: Callable[[], Any], count: int, into: list[float]) -> None:
    for _ in range(count):
        started = time.perf_counter()
        call()
        into.append((time.perf_counter() - started) * 1000)


def bench_overhead() -> None:
    """Latency per request of each path to the same recorded eCFR body (8 KB), keep-alive."""
    with scratch_database("va_signals_bench_res") as url, _server() as server:
        target = server.base_url + ECFR_PATH
        # The limit is set far above what one thread can send: only the limiter's cost shows,
        # its round trips to PostgreSQL (the slot margin is a share of the interval: ~1 us).
        service = _service(server.base_url, RateLimit(requests=1_000_000, per_seconds=1))
        pool = get_pool(url, max_size=4)
        breaker, limiter = _gates(pool, service, "bench_overhead")
        bare_http = httpx.Client()
        plain = ResilientClient(httpx.Client(), service, "bench")
        gated = ResilientClient(httpx.Client(), service, "bench", gate=breaker)
        throttled = ResilientClient(httpx.Client(), service, "bench", throttle=limiter)
        guarded = ResilientClient(httpx.Client(), service, "bench", gate=breaker, throttle=limiter)
        calls: dict[str, Callable[[], Any]] = {
            "bare httpx": lambda: bare_http.get(target).raise_for_status(),
            "ResilientClient": lambda: plain.get(target),
            "ResilientClient + breaker": lambda: gated.get(target),
            "ResilientClient + limiter": lambda: throttled.get(target),
            "ResilientClient + breaker + limiter": lambda: guarded.get(target),
        }
        timings: dict[str, list[float]] = {name: [] for name in calls}
        for call in calls.values():
            _timed(call, WARMUP, [])
        for _ in range(REQUESTS // BLOCK):
            for name, call in calls.items():
                _timed(call, BLOCK, timings[name])
        close_all_pools()
    bare = timings["bare httpx"]
    print(f"GET {ECFR_PATH} on 127.0.0.1, {REQUESTS} requests per path after {WARMUP} warm-up:")
    print(f"  {'path':<38}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}{'p50 x':>8}{'p99 x':>8}")
    for name, values in timings.items():
        p50, p99 = _percentile(values, 0.5), _percentile(values, 0.99)
        print(
            f"  {name:<38}{p50:9.3f}{p99:9.3f}{statistics.fmean(values):9.3f}"
            f"{p50 / _percentile(bare, 0.5):8.2f}{p99 / _percentile(bare, 0.99):8.2f}"
        )


def _worker(
    base_url: str,
    database_url: str,
    worker: int,
    start_at: float,
    seconds: float,
    margin: float | None,
) -> None:
    """One process sending as fast as the shared limiter lets it, from `start_at` on; prints
    the slot of each request it sent, in order (Unix seconds on PostgreSQL's clock)."""
    from va_signals.db.rate_limits import PostgresRateLimitStore
    from va_signals.resilience.limiter import RateLimiter
    from va_signals_tests.resilience.workers import RecordingStore

    limit = RateLimit(requests=SHARED_LIMIT, per_seconds=SHARED_WINDOW, max_wait_seconds=5)
    service = _service(base_url, limit)
    store = RecordingStore(PostgresRateLimitStore(get_pool(database_url, max_size=2)))
    limiter = RateLimiter(
        service.name,
        limit,
        store,
        source_id="bench_shared",
        **({} if margin is None else {"margin": margin}),
    )
    client = ResilientClient(httpx.Client(), service, "bench_shared", throttle=limiter)
    time.sleep(max(0.0, start_at - time.time()))
    deadline = start_at + seconds
    # Bounded twice: by the window, and by a count no honest limiter could reach in it. The
    # query names the request, so the server's receipt can be matched with its slot.
    for sent in range(int(SHARED_LIMIT / SHARED_WINDOW * seconds * 2)):
        if time.time() >= deadline:
            break
        client.get(base_url + ECFR_PATH, params={"w": worker, "n": sent})
    close_all_pools()
    # No pause and no retry here: one granted slot per request sent.
    print(json.dumps(store.slots))


def _max_in_window(times: Sequence[float], window: float) -> int:
    """The most of `times` (sorted) in any half-open window [t, t + window)."""
    best, first = 0, 0
    for last, at in enumerate(times):
        while at - times[first] >= window:
            first += 1
        best = max(best, last - first + 1)
    return best


def _headroom_ms(times: Sequence[float]) -> float:
    """How much further apart than SHARED_WINDOW the closest two of `times` (sorted) that are
    SHARED_LIMIT apart are: the least slack any window had."""
    return 1000 * (
        min(b - a for a, b in zip(times, times[SHARED_LIMIT:], strict=False)) - SHARED_WINDOW
    )


def bench_shared_limit(margin: float | None) -> None:
    """Two processes share one limit of SHARED_LIMIT requests/s for SHARED_SECONDS, starting
    on a service with no row yet (they race to create it); `margin` None is the default."""
    from va_signals.resilience.limiter import SLOT_MARGIN

    with scratch_database("va_signals_bench_res") as url, _server() as server:
        # Both start on the same wall-clock instant, after their imports are done.
        start_at = time.time() + 3.0
        command = [sys.executable, "-m", "benchmarks.bench_resilience", "worker"]
        args = [server.base_url, url, str(start_at), str(SHARED_SECONDS), str(margin)]
        workers = [
            subprocess.Popen(
                command + [args[0], args[1], str(worker), *args[2:]],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for worker in range(WORKERS)
        ]
        slots: dict[tuple[str, str], float] = {}
        for worker, process in enumerate(workers):
            out, err = process.communicate(timeout=3.0 + SHARED_SECONDS + WORKER_GRACE_SECONDS)
            if process.returncode != 0:
                raise SystemExit(f"worker failed:\n{err}")
            for n, slot_at in enumerate(json.loads(out.splitlines()[-1])):
                slots[(str(worker), str(n))] = slot_at
        # The server's receipts (its monotonic clock) on the Unix clock PostgreSQL uses too.
        offset = time.time() - time.monotonic()
        received = {
            (query["w"], query["n"]): seen.at + offset
            for seen in server.seen
            for query in [dict(seen.query)]
        }
    assert received.keys() == slots.keys(), "a request without its slot, or the reverse"
    sent = [sum(1 for w, _ in slots if w == str(worker)) for worker in range(WORKERS)]
    late_ms = sorted((received[key] - slots[key]) * 1000 for key in slots)
    times = sorted(received.values())
    achieved = (len(times) - 1) / (times[-1] - times[0])
    rate = SHARED_LIMIT / SHARED_WINDOW
    slot_peak = _max_in_window(sorted(slots.values()), SHARED_WINDOW)
    received_peak = _max_in_window(times, SHARED_WINDOW)
    used = SLOT_MARGIN if margin is None else margin
    setting = f"slot margin {used:.0%}" + (" (default)" if margin is None else "")
    print(
        f"{WORKERS} processes, shared limit {SHARED_LIMIT}/{SHARED_WINDOW:g}s for "
        f"{SHARED_SECONDS:g}s from a fresh row, {setting} "
        f"(sent {' + '.join(map(str, sent))} = {len(times)} requests):"
    )
    print(f"  achieved {achieved:6.2f} req/s = {achieved / rate:.3f} of the limit")
    print(
        f"  busiest {SHARED_WINDOW:g}-second window: {slot_peak} slots, {received_peak} received "
        f"({slot_peak / SHARED_LIMIT:.3f} and {received_peak / SHARED_LIMIT:.3f} of the limit)"
    )
    print(
        f"  least spacing of requests {SHARED_LIMIT} apart, beyond {SHARED_WINDOW:g}s: "
        f"slots {_headroom_ms(sorted(slots.values())):+.2f} ms, "
        f"received {_headroom_ms(times):+.2f} ms (negative: {SHARED_LIMIT + 1} in a window)"
    )
    print(
        f"  received after the slot: p50 {_percentile(late_ms, 0.5):.2f} ms, "
        f"p99 {_percentile(late_ms, 0.99):.2f} ms, max {late_ms[-1]:.2f} ms, "
        f"min {late_ms[0]:.2f} ms; the margin absorbs {SHARED_WINDOW * used * 1000:.0f} ms"
    )
    verdict = "yes" if slot_peak <= SHARED_LIMIT and achieved >= 0.97 * rate else "NO"
    print(f"  within 3% of the limit and never above it on the schedule: {verdict}")


def main(argv: Sequence[str]) -> None:
    if argv and argv[0] == "worker":
        base_url, database_url, worker, start_at, seconds, margin = argv[1:]
        _worker(
            base_url,
            database_url,
            int(worker),
            float(start_at),
            float(seconds),
            None if margin == "None" else float(margin),
        )
        return
    bench_overhead()
    bench_shared_limit(margin=None)
    # The same schedule without the margin: the slots still keep the limit, the receipts may not.
    bench_shared_limit(margin=0.0)


if __name__ == "__main__":
    main(sys.argv[1:])
