"""A clock that tests move by hand: breaker and limiter timing is exact, sleeps are instant."""

from __future__ import annotations

import threading
from collections.abc import Callable

# A fixed, whole-second start (2027-01-15) keeps every stored timestamp exact to the microsecond.
START = 1_800_000_000.0


class FakeClock:
    """`now()` only moves when told to; `sleep()` records the wait and moves time forward."""

    def __init__(self, start: float = START) -> None:
        self._now = start
        self._lock = threading.Lock()
        self.slept: list[float] = []
        # Called with the seconds about to be slept, before time moves: lets a test act
        # "while" a caller waits.
        self.on_sleep: Callable[[float], None] | None = None

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if self.on_sleep is not None:
            self.on_sleep(seconds)
        self.advance(seconds)
