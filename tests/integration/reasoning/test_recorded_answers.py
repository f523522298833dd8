"""Calls outside the transaction: the model is asked before the unit of work, its answer is
recorded with the decision, and neither a 412 re-run nor a redelivery asks it again."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from azure.data.tables import TableClient

from agents.backbone import (
    Envelope,
    MessageProcessor,
    OutboxRelay,
    Outcome,
    SchemaRegistry,
    UnitOfWork,
)
from agents.backbone.tables import table_key
from agents.reasoning import Answer, Reasoner, RecordedAnswers, answer_row, azure_openai, record
from devstack.llm import LocalModelServer
from tests.integration.backbone.deliveries import Deliveries
from tests.unit.reasoning.support import classify_ticket

TASK = classify_ticket()
MANUAL = {"category": "other", "priority": "normal", "team": "support",
          "summary": "Manual triage: the model gave no answer."}


@pytest.fixture
def server() -> Iterator[LocalModelServer]:
    with LocalModelServer(port=0) as started:
        yield started


@pytest.fixture
def processor(table: TableClient) -> MessageProcessor:
    return MessageProcessor(table, OutboxRelay(table, Deliveries()),
                            registry=SchemaRegistry())


@pytest.fixture
def answers(table: TableClient, server: LocalModelServer) -> RecordedAnswers:
    model = azure_openai(server.base_url, "chat", api_version="2024-10-21", timeout=5,
                         max_retries=0, token_provider=lambda: "local-token")
    return RecordedAnswers(table, Reasoner(model))


def ticket(ticket_id: str = "T-1") -> Envelope:
    return Envelope.new("helpdesk.ticket.created", {
        "subject": "Charged twice", "body": "My card was charged twice.", "tier": "gold"},
        source="/tests/helpdesk", subject=ticket_id)


def route(event: Envelope, uow: UnitOfWork, answer: Answer) -> str:
    """The handler: a plain decision from the answer it is given; effects only on the uow."""
    state = uow.load() or {}
    state["team"] = answer.value["team"]
    uow.save(state)
    record(uow, event.id, TASK, answer)
    return str(state["team"])


def handle(processor: MessageProcessor, answers: RecordedAnswers, event: Envelope,
           runs: list[str] | None = None,
           after_decide: Callable[[int], None] = lambda run: None) -> Outcome[str]:
    """What an agent's trigger does: the answer first (no unit of work open), then the
    handler, given the answer, inside the unit of work."""
    answer = answers.answer(event.subject or "", event.id, TASK, event.data,
                            fallback=lambda _: MANUAL)

    def decide(event: Envelope, uow: UnitOfWork) -> str:
        decided = route(event, uow, answer)
        if runs is not None:
            runs.append(event.id)
            after_decide(len(runs))
        return decided

    return processor.handle(event, decide)


def recorded(table: TableClient, event: Envelope) -> dict[str, Any]:
    return dict(table.get_entity(table_key(event.subject or ""), answer_row(TASK, event.id)))


def test_the_answer_is_recorded_in_the_same_transaction_as_the_decision(
        processor: MessageProcessor, answers: RecordedAnswers, table: TableClient,
        server: LocalModelServer) -> None:
    event = ticket()
    outcome = handle(processor, answers, event)
    assert outcome.result == "payments"
    row = recorded(table, event)
    assert (row["Source"], row["Model"]) == ("model", "chat")
    assert '"team":"payments"' in row["Answer"]
    assert server.requests["chat"] == 1


def test_a_redelivered_message_never_asks_the_model_again(
        processor: MessageProcessor, answers: RecordedAnswers, server: LocalModelServer
        ) -> None:
    event = ticket()
    handle(processor, answers, event)
    again = handle(processor, answers, event)
    assert again.duplicate
    assert server.requests["chat"] == 1


def test_a_handler_rerun_after_a_412_reuses_the_answer_it_was_given(
        processor: MessageProcessor, answers: RecordedAnswers, table: TableClient,
        server: LocalModelServer) -> None:
    handle(processor, answers, ticket("T-2"))
    event, runs = ticket("T-2"), []

    def another_writer(run: int) -> None:  # changes the state between load and commit, once
        if run == 1:
            table.update_entity(table.get_entity(table_key("T-2"), "state"))

    outcome = handle(processor, answers, event, runs, another_writer)
    assert runs == [event.id, event.id]  # the handler ran twice: 412, reload, re-decide
    assert server.requests["chat"] == 2  # once per message, not per run
    assert outcome.result == "payments" and recorded(table, event)["Source"] == "model"


def test_when_the_model_fails_the_fallback_is_recorded_and_replayed(
        processor: MessageProcessor, answers: RecordedAnswers, table: TableClient,
        server: LocalModelServer) -> None:
    server.faults.error(503, deployment="chat")
    event = ticket()
    assert handle(processor, answers, event).result == "support"
    assert recorded(table, event)["Source"] == "fallback"
    lookup = answers.lookup(event.subject or "", event.id, TASK)
    assert lookup is not None and (lookup.source, lookup.value) == ("recorded", MANUAL)
    assert server.requests["chat"] == 1
