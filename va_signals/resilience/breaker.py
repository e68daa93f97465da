"""Circuit breaker of an upstream service: a pure state machine and the gate the client calls.

`BreakerMachine` decides every transition from the stored state and the time; `CircuitBreaker`
reads and writes that state through a `BreakerStore` shared by all processes, and never holds a
lock while the guarded HTTP call runs.
"""

from __future__ import annotations

import logging
import math
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol

from va_signals.catalog.models import BreakerPolicy
from va_signals.resilience.clock import SERVER_CLOCK, Clock
from va_signals.resilience.errors import BreakerOpen, BreakerRecovering, UpstreamError

logger = logging.getLogger(__name__)

# Past 2**60 any open duration is far beyond its cap; bounding the exponent keeps floats finite.
_MAX_DOUBLINGS = 60
_FAILURE_TEXT_LIMIT = 300


class CircuitState(StrEnum):
    CLOSED = "CLOSED"
    OPEN = "OPEN"
    HALF_OPEN = "HALF_OPEN"


class Admission(StrEnum):
    """How a call was let through, which decides what its outcome counts toward."""

    NORMAL = "NORMAL"
    PROBE = "PROBE"
    RAMP = "RAMP"


@dataclass(frozen=True)
class BreakerState:
    """One service's breaker as stored in the `breaker_state` table; times are Unix seconds."""

    state: CircuitState = CircuitState.CLOSED
    opened_at: float | None = None
    open_until: float | None = None
    # Openings since the last full recovery after the first; each one doubles the open time.
    reopen_count: int = 0
    consecutive_failures: int = 0
    window_started_at: float | None = None
    window_successes: int = 0
    window_failures: int = 0
    half_open_since: float | None = None
    # (slot token, lease expiry) per probe in flight: the row's counter of admitted probes.
    probe_leases: tuple[tuple[str, float], ...] = ()
    probe_successes: int = 0
    # Index into BreakerPolicy.recovery_steps while traffic ramps up again; None when recovered.
    recovery_step: int | None = None
    step_successes: int = 0
    step_admitted: int = 0
    step_refused: int = 0
    last_failure: str | None = None


@dataclass(frozen=True)
class Transition:
    """A change of state, as written to `breaker_events`."""

    from_state: CircuitState
    to_state: CircuitState
    reason: str
    at: float


@dataclass(frozen=True)
class Step:
    """One decision: the state to store, what changed, and the verdict on the call."""

    state: BreakerState
    transitions: tuple[Transition, ...] = ()
    notes: tuple[str, ...] = ()
    admission: Admission | None = None
    token: str | None = None
    refusal: str | None = None


class BreakerMachine:
    """Every rule of the breaker, as pure functions of (state, now) for one service's policy."""

    def __init__(self, policy: BreakerPolicy) -> None:
        self.policy = policy

    def open_seconds(self, reopen_count: int) -> float:
        """How long the breaker stays open: doubled at each re-opening, capped."""
        doubled = self.policy.open_seconds * 2 ** min(reopen_count, _MAX_DOUBLINGS)
        return min(doubled, self.policy.max_open_seconds)

    def settle(self, state: BreakerState, now: float) -> Step:
        """Only the changes that time alone causes: an open period ending, stale probes."""
        return self._settled(state, now).step()

    def admit(self, state: BreakerState, now: float) -> Step:
        """Decide whether a call may go out now."""
        draft = self._settled(state, now)
        current = draft.state
        if current.state is CircuitState.OPEN:
            left = math.ceil((current.open_until or now) - now)
            return draft.step(refusal=f"breaker is OPEN for {left}s more")
        if current.state is CircuitState.HALF_OPEN:
            return self._admit_probe(draft, now)
        if current.recovery_step is None:
            return draft.step(admission=Admission.NORMAL)
        return self._admit_ramp(draft)

    def on_success(
        self, state: BreakerState, now: float, admission: Admission, token: str | None
    ) -> Step:
        """Count a call that the service answered properly."""
        draft = self._settled(state, now)
        current = draft.state
        if current.state is CircuitState.OPEN:
            # A call let through before the breaker opened proves too little to close it.
            return draft.step()
        if current.state is CircuitState.HALF_OPEN:
            leases = dict(current.probe_leases)
            if admission is not Admission.PROBE or token not in leases:
                # Only a probe holding a live slot counts; a late report lost its slot already.
                return draft.step()
            del leases[token]
            successes = current.probe_successes + 1
            draft.update(probe_leases=tuple(leases.items()), probe_successes=successes)
            if successes >= self.policy.half_open_probes:
                self._close(draft, now, f"{successes} probe(s) succeeded")
            return draft.step()
        self._count(draft, now, failed=False)
        draft.update(consecutive_failures=0)
        if current.recovery_step is not None:
            self._advance_ramp(draft)
        return draft.step()

    def on_failure(
        self,
        state: BreakerState,
        now: float,
        admission: Admission,
        token: str | None,
        failure: str,
    ) -> Step:
        """Count a call that failed in a way that blames the service."""
        failure = failure[:_FAILURE_TEXT_LIMIT]
        draft = self._settled(state, now)
        current = draft.state
        if current.state is CircuitState.OPEN:
            return draft.step()
        if current.state is CircuitState.HALF_OPEN:
            kind = "probe" if admission is Admission.PROBE else "call"
            self._open(draft, now, f"{kind} failed while half-open: {failure}", failure)
            return draft.step()
        self._count(draft, now, failed=True)
        failures = current.consecutive_failures + 1
        draft.update(consecutive_failures=failures, last_failure=failure)
        counted = draft.state
        calls = counted.window_successes + counted.window_failures
        if current.recovery_step is not None:
            fraction = self._fraction(current)
            self._open(draft, now, f"failed while recovering at {fraction:.0%}: {failure}", failure)
        elif failures >= self.policy.failure_threshold:
            self._open(draft, now, f"{failures} consecutive failures, last: {failure}", failure)
        elif (
            calls >= self.policy.min_calls_for_rate
            and counted.window_failures / calls >= self.policy.failure_rate
        ):
            self._open(
                draft,
                now,
                f"{counted.window_failures} of {calls} calls failed within "
                f"{self.policy.window_seconds:.0f}s, last: {failure}",
                failure,
            )
        return draft.step()

    # -- transitions: the only code that changes `state` ------------------------------------

    def _open(self, draft: _Draft, now: float, reason: str, failure: str) -> None:
        # Opening again before a full recovery is a re-opening: the service is still unwell.
        before = draft.state
        reopening = before.state is CircuitState.HALF_OPEN or before.recovery_step is not None
        reopen_count = before.reopen_count + 1 if reopening else before.reopen_count
        duration = self.open_seconds(reopen_count)
        draft.move(
            CircuitState.OPEN,
            now,
            f"{reason} (open for {duration:.0f}s)",
            opened_at=now,
            open_until=now + duration,
            reopen_count=reopen_count,
            last_failure=failure,
            **_FRESH_COUNTERS,
        )

    def _half_open(self, draft: _Draft, now: float) -> None:
        draft.move(
            CircuitState.HALF_OPEN,
            now,
            f"open period over; admitting up to {self.policy.half_open_probes} probe(s)",
            open_until=None,
            half_open_since=now,
            **_FRESH_COUNTERS,
        )

    def _close(self, draft: _Draft, now: float, reason: str) -> None:
        steps = self.policy.recovery_steps
        if steps:
            reason = f"{reason}; admitting {steps[0]:.0%} of calls at first"
        draft.move(
            CircuitState.CLOSED,
            now,
            reason,
            open_until=None,
            # Without recovery steps closing is already the full recovery.
            reopen_count=draft.state.reopen_count if steps else 0,
            **{**_FRESH_COUNTERS, "recovery_step": 0 if steps else None},
        )

    # -- bookkeeping inside one state ---------------------------------------------------------

    def _settled(self, state: BreakerState, now: float) -> _Draft:
        draft = _Draft(state)
        if state.state is CircuitState.OPEN and (
            state.open_until is None or now >= state.open_until
        ):
            self._half_open(draft, now)
        current = draft.state
        if current.state is not CircuitState.HALF_OPEN:
            return draft
        live = tuple((token, expiry) for token, expiry in current.probe_leases if expiry > now)
        if len(live) < len(current.probe_leases):
            # The process holding those slots crashed or hung: free them for new probes.
            lost = len(current.probe_leases) - len(live)
            draft.update(probe_leases=live)
            draft.note(f"{lost} probe slot(s) expired without a report; freed")
        timeout = self.policy.half_open_timeout_seconds
        if current.half_open_since is not None and now - current.half_open_since >= timeout:
            # Old successes are stale evidence: half-open is bounded, so start probing afresh.
            draft.update(half_open_since=now, probe_successes=0)
            draft.note(f"half-open for {timeout:.0f}s without closing; probing afresh")
        return draft

    def _admit_probe(self, draft: _Draft, now: float) -> Step:
        current = draft.state
        in_flight = len(current.probe_leases)
        if in_flight + current.probe_successes >= self.policy.half_open_probes:
            return draft.step(
                refusal=f"breaker is HALF_OPEN with {in_flight} probe(s) in flight and "
                f"{current.probe_successes} succeeded of {self.policy.half_open_probes}"
            )
        token = uuid.uuid4().hex
        expiry = now + self.policy.half_open_timeout_seconds
        draft.update(probe_leases=(*current.probe_leases, (token, expiry)))
        return draft.step(admission=Admission.PROBE, token=token)

    def _admit_ramp(self, draft: _Draft) -> Step:
        current = draft.state
        fraction = self._fraction(current)
        seen = current.step_admitted + current.step_refused
        # Admit while the admitted share stays within the step's fraction; the first call goes.
        if current.step_admitted <= fraction * seen:
            draft.update(step_admitted=current.step_admitted + 1)
            return draft.step(admission=Admission.RAMP)
        draft.update(step_refused=current.step_refused + 1)
        return draft.step(refusal=f"breaker is recovering: admitting {fraction:.0%} of calls")

    def _advance_ramp(self, draft: _Draft) -> None:
        current = draft.state
        successes = current.step_successes + 1
        if successes < self.policy.recovery_step_calls:
            draft.update(step_successes=successes)
            return
        steps = self.policy.recovery_steps
        next_step = (current.recovery_step or 0) + 1
        if next_step >= len(steps):
            draft.update(recovery_step=None, reopen_count=0, **_FRESH_STEP)
            draft.note("fully recovered; open durations start again from the shortest")
            return
        draft.update(recovery_step=next_step, **_FRESH_STEP)
        draft.note(f"recovering: admitting {steps[next_step]:.0%} of calls")

    def _count(self, draft: _Draft, now: float, *, failed: bool) -> None:
        current = draft.state
        # A tumbling window: counts restart once it is older than window_seconds.
        started = current.window_started_at
        if started is None or now - started >= self.policy.window_seconds:
            started, successes, failures = now, 0, 0
        else:
            successes, failures = current.window_successes, current.window_failures
        draft.update(
            window_started_at=started,
            window_successes=successes + (0 if failed else 1),
            window_failures=failures + (1 if failed else 0),
        )

    def _fraction(self, state: BreakerState) -> float:
        steps = self.policy.recovery_steps
        return steps[min(state.recovery_step or 0, len(steps) - 1)] if steps else 1.0


_FRESH_STEP = {"step_successes": 0, "step_admitted": 0, "step_refused": 0}
_FRESH_COUNTERS = {
    "consecutive_failures": 0,
    "window_started_at": None,
    "window_successes": 0,
    "window_failures": 0,
    "probe_leases": (),
    "probe_successes": 0,
    "recovery_step": None,
    **_FRESH_STEP,
}


class _Draft:
    """A state being decided, with the transitions and notes that led to it."""

    def __init__(self, state: BreakerState) -> None:
        self.state = state
        self._transitions: list[Transition] = []
        self._notes: list[str] = []

    def update(self, **changes: object) -> None:
        self.state = replace(self.state, **changes)

    def move(self, to: CircuitState, now: float, reason: str, **changes: object) -> None:
        self._transitions.append(Transition(self.state.state, to, reason, now))
        self.state = replace(self.state, state=to, **changes)

    def note(self, text: str) -> None:
        self._notes.append(text)

    def step(self, **verdict: object) -> Step:
        return Step(self.state, tuple(self._transitions), tuple(self._notes), **verdict)


class BreakerStateError(Exception):
    """The shared breaker state could not be read or written; the message names the cause."""


class BreakerStore(Protocol):
    """Shared storage of breakers, one per service."""

    def read(self, service: str) -> tuple[BreakerState, float]:
        """The stored state (a fresh CLOSED one when none exists) and the server's time."""

    def change(
        self,
        service: str,
        decide: Callable[[BreakerState, float], Step],
        source_id: str | None,
    ) -> Step:
        """Lock the service's row, store `decide(state, server_now)` and its transitions."""


class CircuitBreaker:
    """The `CallGate` of one source's calls; the breaker it consults is the service's, shared.

    No lock is held while the guarded call runs: each report is one short locked update.
    """

    def __init__(
        self,
        service: str,
        policy: BreakerPolicy,
        store: BreakerStore,
        *,
        source_id: str = "",
        log: logging.Logger | logging.LoggerAdapter | None = None,
        clock: Clock = SERVER_CLOCK,
    ) -> None:
        self.service = service
        self.source_id = source_id
        self.machine = BreakerMachine(policy)
        self._store = store
        self._log = log or logger
        self._clock = clock
        # One source may call from several threads; each remembers how its own call went out.
        self._calls = threading.local()

    def snapshot(self) -> BreakerState:
        """The breaker as it stands now, with time-driven changes applied; writes nothing."""
        state, server_now = self._store.read(self.service)
        return self.machine.settle(state, self._now(server_now)).state

    def check(self) -> None:
        """Raise `BreakerOpen` when the breaker is OPEN or unreadable; makes no call, no write."""
        try:
            state = self.snapshot()
        except BreakerStateError as exc:
            raise self._unreadable(exc) from exc
        if state.state is CircuitState.OPEN:
            raise BreakerOpen(
                self.source_id,
                self.service,
                "",
                f"skipped: breaker is OPEN until {_utc(state.open_until)} "
                f"after: {state.last_failure or 'failures'}",
            )

    def before_call(self) -> None:
        """Admit or refuse one call; raise `BreakerOpen` (or `BreakerRecovering`) to refuse."""
        self._calls.admission = None
        try:
            state, server_now = self._store.read(self.service)
            step = self.machine.admit(state, self._now(server_now))
            if step.state != state:
                # Admission changes the row (a probe slot, a ramp count, an open period over):
                # decide again under the row lock so no other process's change is lost.
                step = self._store.change(
                    self.service,
                    lambda locked, now: self.machine.admit(locked, self._now(now)),
                    self.source_id,
                )
        except BreakerStateError as exc:
            raise self._unreadable(exc) from exc
        self._report(step)
        if step.refusal is not None:
            refused = BreakerRecovering if step.state.state is CircuitState.CLOSED else BreakerOpen
            raise refused(self.source_id, self.service, "", step.refusal)
        self._calls.admission = (step.admission, step.token)

    def record_success(self) -> None:
        admission, token = self._take_admission()
        self._change(lambda state, now: self.machine.on_success(state, now, admission, token))

    def record_failure(self, error: UpstreamError) -> None:
        admission, token = self._take_admission()
        failure = f"{type(error).__name__}: {error}"
        self._change(
            lambda state, now: self.machine.on_failure(state, now, admission, token, failure)
        )

    def _change(self, decide: Callable[[BreakerState, float], Step]) -> None:
        try:
            step = self._store.change(
                self.service, lambda state, now: decide(state, self._now(now)), self.source_id
            )
        except BreakerStateError as exc:
            raise self._unreadable(exc) from exc
        self._report(step)

    def _take_admission(self) -> tuple[Admission, str | None]:
        admission = getattr(self._calls, "admission", None)
        self._calls.admission = None
        return admission or (Admission.NORMAL, None)

    def _now(self, server_now: float) -> float:
        now = self._clock.now()
        return server_now if now is None else now

    def _report(self, step: Step) -> None:
        who = self.source_id or "-"
        for transition in step.transitions:
            line = "%s: breaker of %s %s -> %s: %s"
            args = (who, self.service, transition.from_state, transition.to_state)
            if transition.to_state is CircuitState.OPEN:
                self._log.warning(line, *args, transition.reason)
            else:
                self._log.info(line, *args, transition.reason)
        for note in step.notes:
            self._log.info("%s: breaker of %s: %s", who, self.service, note)

    def _unreadable(self, exc: BreakerStateError) -> BreakerOpen:
        self._log.error(
            "%s: breaker state of %s unreadable, refusing the call: %s",
            self.source_id or "-",
            self.service,
            exc,
        )
        return BreakerOpen(
            self.source_id,
            self.service,
            "",
            f"breaker state unreadable, call refused to fail closed ({exc})",
        )


def _utc(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    try:
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, ValueError, OSError):
        return f"{seconds!r} (not a representable time)"
