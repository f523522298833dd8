"""The Reasoner through the official openai SDK against devstack's model endpoint, with its
breaker shared on Azurite: structured output, every fault counted, fail fast, recovery."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest
from azure.data.tables import TableClient

from agents.backbone.breaker import BreakerOptions, BreakerState, CircuitBreaker
from agents.reasoning import (
    InvalidAnswer,
    Reasoner,
    ReasonerOpen,
    ReasonerUnavailable,
    ReasoningError,
    azure_openai,
)
from devstack.llm import LocalModelServer
from tests.unit.reasoning.support import FakeClock, classify_ticket

TICKET = {"subject": "Charged twice", "body": "My card was charged twice for one invoice.",
          "tier": "gold"}
OPTIONS = BreakerOptions(failure_ratio=0.5, minimum_throughput=2, sampling_duration=10.0,
                         break_duration=5.0, sync_interval=1.0, probe_timeout=20.0)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def model_server(clock: FakeClock) -> Iterator[LocalModelServer]:
    with LocalModelServer(port=0, clock=clock) as server:
        yield server


def reasoner(server: LocalModelServer, clock: FakeClock, table: TableClient | None = None, *,
             timeout: float = 5.0) -> Reasoner:
    model = azure_openai(server.base_url, "chat", api_version="2024-10-21", timeout=timeout,
                         max_retries=0, token_provider=lambda: "local-token")
    return Reasoner(model, breaker=CircuitBreaker("llm-chat", table=table, options=OPTIONS,
                                                  clock=clock))


def test_decide_returns_the_structured_answer_with_its_usage(
        model_server: LocalModelServer, clock: FakeClock) -> None:
    answer = reasoner(model_server, clock).answer(classify_ticket(), TICKET)
    assert (answer.value["category"], answer.value["team"], answer.source) == (
        "billing", "payments", "model")
    assert answer.model == "chat" and answer.usage.total_tokens > 0


FAULTS: dict[str, tuple[Callable[[LocalModelServer], None], type[ReasoningError]]] = {
    "hang": (lambda s: s.faults.hang(deployment="chat"), ReasonerUnavailable),
    "throttle": (lambda s: s.faults.throttle(retry_after=0.05, deployment="chat"),
                 ReasonerUnavailable),
    "500": (lambda s: s.faults.error(500, deployment="chat"), ReasonerUnavailable),
    "503": (lambda s: s.faults.error(503, deployment="chat"), ReasonerUnavailable),
    "malformed": (lambda s: s.faults.malformed(deployment="chat"), InvalidAnswer),
    "wrong-schema": (lambda s: s.faults.wrong_schema(deployment="chat"), InvalidAnswer),
    "outage": (lambda s: s.faults.outage(30, deployment="chat"), ReasonerUnavailable),
}


@pytest.mark.parametrize("kind", list(FAULTS))
def test_each_fault_is_a_named_error_counted_as_a_failure(
        model_server: LocalModelServer, clock: FakeClock, kind: str) -> None:
    arm, error = FAULTS[kind]
    chosen = reasoner(model_server, clock, timeout=0.5)
    chosen.decide(classify_ticket(), TICKET)
    arm(model_server)
    with pytest.raises(error):
        chosen.decide(classify_ticket(), TICKET)
    assert chosen.breaker is not None and chosen.breaker.state is BreakerState.OPEN
    sent = model_server.requests["chat"]
    with pytest.raises(ReasonerOpen):
        chosen.decide(classify_ticket(), TICKET)
    assert model_server.requests["chat"] == sent  # failed fast: the model was not asked


def test_latency_within_the_timeout_is_a_success(
        model_server: LocalModelServer, clock: FakeClock) -> None:
    model_server.faults.latency(0.2, deployment="chat")
    chosen = reasoner(model_server, clock, timeout=5.0)
    for _ in range(3):
        chosen.decide(classify_ticket(), TICKET)
    assert chosen.breaker is not None and chosen.breaker.state is BreakerState.CLOSED


def test_one_instance_trips_and_the_other_fails_fast_after_its_cache_ttl(
        model_server: LocalModelServer, clock: FakeClock, table: TableClient) -> None:
    first, second = reasoner(model_server, clock, table), reasoner(model_server, clock, table)
    second.decide(classify_ticket(), TICKET)
    model_server.faults.error(503, deployment="chat", times=2)
    for _ in range(2):
        with pytest.raises(ReasonerUnavailable):
            first.decide(classify_ticket(), TICKET)
    clock.advance(1.0)
    sent = model_server.requests["chat"]
    with pytest.raises(ReasonerOpen):
        second.decide(classify_ticket(), TICKET)
    assert model_server.requests["chat"] == sent


def test_sixteen_threads_at_the_end_of_a_break_send_one_probe_to_the_model(
        model_server: LocalModelServer, clock: FakeClock, table: TableClient) -> None:
    reasoners = [reasoner(model_server, clock, table, timeout=2.0) for _ in range(16)]
    model_server.faults.outage(1.0, deployment="chat")
    for _ in range(2):
        with pytest.raises(ReasonerUnavailable):
            reasoners[0].decide(classify_ticket(), TICKET)
    clock.advance(5.0)
    model_server.faults.hang(deployment="chat")  # the probe stays in flight until it times out
    sent = model_server.requests["chat"]
    start = threading.Barrier(16)
    errors: list[ReasoningError] = []

    def race(chosen: Reasoner) -> None:
        start.wait(20)
        try:
            chosen.decide(classify_ticket(), TICKET)
        except ReasoningError as error:
            errors.append(error)

    threads = [threading.Thread(target=race, args=(r,)) for r in reasoners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert model_server.requests["chat"] - sent == 1
    assert sorted(type(e).__name__ for e in errors) == ["ReasonerOpen"] * 15 + [
        "ReasonerUnavailable"]


def test_a_30_second_outage_fails_fast_during_it_and_recovers_after(
        model_server: LocalModelServer, clock: FakeClock, table: TableClient) -> None:
    chosen = reasoner(model_server, clock, table)
    model_server.faults.outage(30, deployment="chat")
    for _ in range(2):
        with pytest.raises(ReasonerUnavailable):
            chosen.decide(classify_ticket(), TICKET)
    refused = probes = 0
    for _ in range(29):  # one call per second through the outage
        clock.advance(1.0)
        sent = model_server.requests["chat"]
        try:
            chosen.decide(classify_ticket(), TICKET)
        except ReasonerOpen:
            refused += 1
        except ReasonerUnavailable:
            probes += 1
        assert model_server.requests["chat"] - sent <= 1
    assert probes == 5 and refused == 24  # one probe per 5 s break, every other call refused
    clock.advance(5.0)
    assert chosen.decide(classify_ticket(), TICKET)["category"] == "billing"
    assert chosen.breaker is not None and chosen.breaker.state is BreakerState.CLOSED
