"""Time as breakers and rate limits see it: the database server's clock by default, so every
process and host agrees on it, or an injected clock that tests move by hand."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Where `now` comes from and how a caller waits."""

    def now(self) -> float | None:
        """Unix seconds, or None to read the time from the database server in the same query."""

    def sleep(self, seconds: float) -> None: ...


class ServerClock:
    """The database server's clock for `now`; real sleeping for waits.

    One clock for all processes means a host whose clock drifts cannot send early or keep a
    breaker open longer than its peers do.
    """

    def now(self) -> None:
        return None

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


SERVER_CLOCK = ServerClock()
