"""The breaker's state machine on its own (no Table): Polly v8's semantics on a hand clock."""

from __future__ import annotations

import threading

import pytest

from agents.backbone.breaker import BreakerOpen, BreakerOptions, BreakerState, CircuitBreaker
from tests.unit.reasoning.support import FakeClock

OPTIONS = BreakerOptions(failure_ratio=0.5, minimum_throughput=4, sampling_duration=10.0,
                         break_duration=5.0)


class Boom(Exception):
    pass


def fail() -> None:
    raise Boom("down")


def calls(breaker: CircuitBreaker, outcomes: str) -> None:
    """Run one call per letter: s succeeds, f fails."""
    for outcome in outcomes:
        if outcome == "s":
            breaker.call(lambda: None)
        else:
            with pytest.raises(Boom):
                breaker.call(fail)


def tripped(clock: FakeClock) -> CircuitBreaker:
    breaker = CircuitBreaker("t", options=OPTIONS, clock=clock)
    calls(breaker, "ssff")
    assert breaker.state is BreakerState.OPEN
    return breaker


def test_opens_when_failure_ratio_reached_at_minimum_throughput() -> None:
    breaker = CircuitBreaker("t", options=OPTIONS, clock=FakeClock())
    calls(breaker, "ssf")
    assert breaker.state is BreakerState.CLOSED
    calls(breaker, "f")
    assert breaker.state is BreakerState.OPEN


def test_stays_closed_below_minimum_throughput_even_if_all_fail() -> None:
    breaker = CircuitBreaker("t", options=OPTIONS, clock=FakeClock())
    calls(breaker, "fff")
    assert breaker.state is BreakerState.CLOSED


def test_failures_older_than_the_sampling_window_do_not_count() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("t", options=OPTIONS, clock=clock)
    calls(breaker, "fff")
    clock.advance(11)
    calls(breaker, "sssf")
    assert breaker.state is BreakerState.CLOSED


def test_open_refuses_without_calling_and_says_when_to_retry() -> None:
    clock = FakeClock()
    breaker = tripped(clock)
    clock.advance(2)
    called = []
    with pytest.raises(BreakerOpen) as refused:
        breaker.call(lambda: called.append(1))
    assert called == []
    assert refused.value.retry_after == pytest.approx(3.0)


def test_after_the_break_a_successful_probe_closes() -> None:
    clock = FakeClock()
    breaker = tripped(clock)
    clock.advance(5)
    assert breaker.call(lambda: "ok") == "ok"
    assert breaker.state is BreakerState.CLOSED
    calls(breaker, "sss")


def test_after_the_break_a_failed_probe_opens_for_another_break() -> None:
    clock = FakeClock()
    breaker = tripped(clock)
    clock.advance(5)
    calls(breaker, "f")
    assert breaker.state is BreakerState.OPEN
    clock.advance(4.9)
    with pytest.raises(BreakerOpen):
        breaker.call(lambda: None)


def test_exceptions_that_are_not_failures_count_as_successes() -> None:
    breaker = CircuitBreaker("t", options=OPTIONS, clock=FakeClock(),
                             is_failure=lambda error: not isinstance(error, Boom))
    calls(breaker, "ffff")
    assert breaker.state is BreakerState.CLOSED


def test_only_one_of_many_threads_probes_and_none_waits_on_it() -> None:
    clock = FakeClock()
    breaker = tripped(clock)
    clock.advance(5)
    probe_started, release = threading.Event(), threading.Event()
    refused: list[BreakerOpen] = []

    def probe() -> None:
        probe_started.set()
        release.wait(10)

    prober = threading.Thread(target=breaker.call, args=(probe,))
    prober.start()
    assert probe_started.wait(10)
    for _ in range(15):
        try:
            breaker.call(lambda: None)
        except BreakerOpen as error:
            refused.append(error)
    release.set()
    prober.join(10)
    assert len(refused) == 15
    assert breaker.state is BreakerState.CLOSED


def test_options_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError, match="failure_ratio"):
        BreakerOptions(failure_ratio=0)
