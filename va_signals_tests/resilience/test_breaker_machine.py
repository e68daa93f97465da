"""Every rule of the breaker state machine, as pure functions of (state, now): no database."""

from __future__ import annotations

import pytest

from va_signals.catalog.models import BreakerPolicy
from va_signals.resilience.breaker import (
    Admission,
    BreakerMachine,
    BreakerState,
    CircuitState,
    Step,
)

T0 = 1_800_000_000.0
POLICY = BreakerPolicy(
    failure_threshold=3,
    failure_rate=0.5,
    window_seconds=60,
    min_calls_for_rate=10,
    open_seconds=10,
    max_open_seconds=35,
    half_open_probes=2,
    half_open_timeout_seconds=30,
    recovery_steps=(0.25, 0.5, 1.0),
    recovery_step_calls=2,
)
CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN


@pytest.fixture
def machine() -> BreakerMachine:
    return BreakerMachine(POLICY)


def fail(machine: BreakerMachine, state: BreakerState, now: float, step: Step | None = None):
    admission = step.admission if step and step.admission else Admission.NORMAL
    token = step.token if step else None
    return machine.on_failure(state, now, admission, token, "UpstreamUnavailable: HTTP 500")


def succeed(machine: BreakerMachine, state: BreakerState, now: float, step: Step | None = None):
    admission = step.admission if step and step.admission else Admission.NORMAL
    return machine.on_success(state, now, admission, step.token if step else None)


def opened(machine: BreakerMachine, now: float = T0) -> BreakerState:
    state = BreakerState()
    for _ in range(POLICY.failure_threshold):
        state = fail(machine, state, now).state
    assert state.state is OPEN
    return state


def closed_after_probes(machine: BreakerMachine, now: float) -> BreakerState:
    """From a fresh opening at T0, probe at `now` until the breaker closes into its ramp."""
    state = opened(machine)
    probes = []
    for _ in range(POLICY.half_open_probes):
        probe = machine.admit(state, now)
        assert probe.admission is Admission.PROBE
        probes.append(probe)
        state = probe.state
    for probe in probes:
        state = succeed(machine, state, now, probe).state
    assert state.state is CLOSED and state.recovery_step == 0
    return state


def test_consecutive_failures_reaching_the_threshold_open_the_breaker(
    machine: BreakerMachine,
) -> None:
    state = BreakerState()
    for expected in (1, 2):
        step = fail(machine, state, T0)
        state = step.state
        assert (state.state, state.consecutive_failures, step.transitions) == (CLOSED, expected, ())

    step = fail(machine, state, T0 + 1)

    assert step.state.state is OPEN
    assert step.state.opened_at == T0 + 1
    assert step.state.open_until == T0 + 1 + POLICY.open_seconds
    assert step.state.reopen_count == 0
    assert step.state.last_failure == "UpstreamUnavailable: HTTP 500"
    [transition] = step.transitions
    assert (transition.from_state, transition.to_state, transition.at) == (CLOSED, OPEN, T0 + 1)
    assert transition.reason.startswith("3 consecutive failures")


def test_a_success_between_failures_restarts_the_consecutive_count(
    machine: BreakerMachine,
) -> None:
    state = BreakerState()
    for outcome in ("fail", "fail", "ok", "fail", "fail"):
        state = (fail if outcome == "fail" else succeed)(machine, state, T0).state

    assert (state.state, state.consecutive_failures) == (CLOSED, 2)
    assert (state.window_successes, state.window_failures) == (1, 4)


def test_the_failure_rate_opens_the_breaker_once_the_minimum_calls_are_reached(
    machine: BreakerMachine,
) -> None:
    state = BreakerState()
    # Alternating outcomes never make 3 failures in a row, but half of all calls fail.
    for call in range(1, 10):
        state = (fail if call % 2 else succeed)(machine, state, T0 + call).state
        assert state.state is CLOSED, f"opened after {call} calls, below min_calls_for_rate"

    step = succeed(machine, state, T0 + 10)
    assert step.state.state is CLOSED  # 5 of 10 failed, but a success never opens it

    step = fail(machine, step.state, T0 + 11)

    assert step.state.state is OPEN
    assert step.transitions[0].reason.startswith("6 of 11 calls failed within 60s")


def test_failures_spread_over_more_than_one_window_do_not_add_up(machine: BreakerMachine) -> None:
    state = BreakerState()
    for call in range(9):
        state = (fail if call % 2 else succeed)(machine, state, T0 + call).state
    assert (state.window_successes, state.window_failures) == (5, 4)

    state = fail(machine, state, T0 + POLICY.window_seconds + 1).state

    assert state.state is CLOSED
    assert (state.window_started_at, state.window_successes, state.window_failures) == (
        T0 + POLICY.window_seconds + 1,
        0,
        1,
    )


def test_an_open_breaker_refuses_calls_until_its_period_ends(machine: BreakerMachine) -> None:
    state = opened(machine)

    refused = machine.admit(state, T0 + POLICY.open_seconds - 0.5)

    assert refused.admission is None
    assert refused.refusal == "breaker is OPEN for 1s more"
    assert refused.state == state  # refusing writes nothing


def test_the_end_of_the_open_period_half_opens_and_admits_a_probe(
    machine: BreakerMachine,
) -> None:
    state = opened(machine)

    step = machine.admit(state, T0 + POLICY.open_seconds)

    assert step.admission is Admission.PROBE and step.token
    assert step.state.state is HALF_OPEN
    assert step.state.half_open_since == T0 + POLICY.open_seconds
    assert step.state.probe_leases == ((step.token, T0 + POLICY.open_seconds + 30),)
    [transition] = step.transitions
    assert (transition.from_state, transition.to_state) == (OPEN, HALF_OPEN)


def test_half_open_admits_no_more_probes_than_its_limit(machine: BreakerMachine) -> None:
    state = opened(machine)
    now = T0 + POLICY.open_seconds
    first = machine.admit(state, now)
    second = machine.admit(first.state, now)

    third = machine.admit(second.state, now + 1)

    assert [first.admission, second.admission, third.admission] == [
        Admission.PROBE,
        Admission.PROBE,
        None,
    ]
    assert third.refusal == "breaker is HALF_OPEN with 2 probe(s) in flight and 0 succeeded of 2"
    # A finished probe does not free its place: half-open tries `half_open_probes` calls in all.
    after_success = succeed(machine, third.state, now + 1, first).state
    assert machine.admit(after_success, now + 1).admission is None


def test_enough_successful_probes_close_the_breaker_into_its_first_recovery_step(
    machine: BreakerMachine,
) -> None:
    state = opened(machine)
    now = T0 + POLICY.open_seconds
    first = machine.admit(state, now)
    second = machine.admit(first.state, now)

    after_one = succeed(machine, second.state, now + 1, first)
    after_two = succeed(machine, after_one.state, now + 2, second)

    assert (after_one.state.state, after_one.state.probe_successes) == (HALF_OPEN, 1)
    assert after_two.state.state is CLOSED
    assert after_two.state.recovery_step == 0
    assert after_two.state.probe_leases == ()
    assert after_two.state.reopen_count == 0  # kept until the recovery is complete
    [transition] = after_two.transitions
    assert (transition.from_state, transition.to_state) == (HALF_OPEN, CLOSED)
    assert transition.reason == "2 probe(s) succeeded; admitting 25% of calls at first"


def test_a_failed_probe_reopens_for_twice_as_long_up_to_the_cap(machine: BreakerMachine) -> None:
    state = opened(machine)
    now = T0
    durations = []
    for _ in range(4):
        now = state.open_until
        probe = machine.admit(state, now)
        step = fail(machine, probe.state, now + 1, probe)
        state = step.state
        assert step.transitions[-1].from_state is HALF_OPEN
        assert step.transitions[-1].to_state is OPEN
        durations.append((state.reopen_count, state.open_until - (now + 1)))

    # 10 s doubles to 20 s, then 40 s is capped at max_open_seconds = 35 s.
    assert durations == [(1, 20.0), (2, 35.0), (3, 35.0), (4, 35.0)]


def test_a_probe_slot_that_never_reports_expires_and_frees_its_place() -> None:
    machine = BreakerMachine(POLICY.model_copy(update={"half_open_probes": 1}))
    state = opened(machine)
    now = T0 + POLICY.open_seconds
    lost = machine.admit(state, now)  # its process crashes: no report ever comes
    assert machine.admit(lost.state, now + 29.9).admission is None

    replacement = machine.admit(lost.state, now + 30)

    assert replacement.admission is Admission.PROBE
    assert replacement.notes[0] == "1 probe slot(s) expired without a report; freed"
    assert [token for token, _ in replacement.state.probe_leases] == [replacement.token]
    # The lost probe's late report no longer counts; the replacement's does.
    late = succeed(machine, replacement.state, now + 31, lost)
    assert late.state == replacement.state
    assert succeed(machine, late.state, now + 31, replacement).state.state is CLOSED


def test_half_open_is_bounded_in_time_and_old_successes_expire(machine: BreakerMachine) -> None:
    state = opened(machine)
    now = T0 + POLICY.open_seconds
    probe = machine.admit(state, now)
    state = succeed(machine, probe.state, now + 1, probe).state
    assert state.probe_successes == 1

    step = machine.settle(state, now + POLICY.half_open_timeout_seconds)

    assert step.state.state is HALF_OPEN
    assert (step.state.half_open_since, step.state.probe_successes) == (now + 30, 0)
    assert step.notes == ("half-open for 30s without closing; probing afresh",)


def test_recovery_admits_growing_fractions_of_calls_then_recovers_fully(
    machine: BreakerMachine,
) -> None:
    now = T0 + 100
    state = closed_after_probes(machine, now)
    admitted_per_step = []
    notes = []
    for _ in POLICY.recovery_steps:
        pattern = ""
        admitted = []
        for _ in range(8):
            step = machine.admit(state, now)
            state = step.state
            pattern += "A" if step.admission else "r"
            if step.admission:
                assert step.admission is Admission.RAMP
                admitted.append(step)
        admitted_per_step.append(pattern)
        for _ in range(POLICY.recovery_step_calls):
            step = succeed(machine, state, now)
            state = step.state
            notes.extend(step.notes)

    assert admitted_per_step == ["ArrrArrr", "ArArArAr", "AAAAAAAA"]
    assert notes == [
        "recovering: admitting 50% of calls",
        "recovering: admitting 100% of calls",
        "fully recovered; open durations start again from the shortest",
    ]
    assert (state.state, state.recovery_step, state.reopen_count) == (CLOSED, None, 0)
    assert machine.admit(state, now).admission is Admission.NORMAL


def test_a_failure_during_recovery_reopens_for_longer(machine: BreakerMachine) -> None:
    now = T0 + 100
    state = closed_after_probes(machine, now)
    state = machine.admit(state, now).state

    step = fail(machine, state, now + 1)

    assert step.state.state is OPEN
    assert step.state.reopen_count == 1
    assert step.state.open_until == now + 1 + 20
    assert step.transitions[0].reason.startswith("failed while recovering at 25%")


def test_after_a_full_recovery_the_next_opening_is_short_again(machine: BreakerMachine) -> None:
    # Open, fail one probe (reopen_count 1), then recover fully.
    state = opened(machine)
    probe = machine.admit(state, state.open_until)
    state = fail(machine, probe.state, state.open_until, probe).state
    assert state.reopen_count == 1
    now = state.open_until
    for _ in range(POLICY.half_open_probes):
        probe = machine.admit(state, now)
        state = succeed(machine, probe.state, now, probe).state
    while state.recovery_step is not None:
        state = succeed(machine, machine.admit(state, now).state, now).state
    assert state.reopen_count == 0

    for _ in range(POLICY.failure_threshold):
        state = fail(machine, state, now + 1).state

    assert state.open_until - (now + 1) == POLICY.open_seconds


def test_reports_of_calls_made_before_the_breaker_opened_change_nothing(
    machine: BreakerMachine,
) -> None:
    state = opened(machine)

    assert fail(machine, state, T0 + 1).state == state
    assert succeed(machine, state, T0 + 1).state == state
