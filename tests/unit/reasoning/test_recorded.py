"""The recorded-answers pattern on the in-memory store, as an agent's unit tests use it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from agents.backbone import MessageProcessor, OutboxRelay, SchemaRegistry, UnitOfWork
from agents.backbone.envelope import Envelope
from agents.backbone.memory import MemoryStore
from agents.reasoning import (
    Completion,
    Reasoner,
    ReasonerUnavailable,
    RecordedAnswers,
    Usage,
    record,
)
from tests.unit.reasoning.support import classify_ticket

TASK = classify_ticket()
ANSWER = '{"category":"billing","priority":"high","team":"payments","summary":"Refund."}'
MANUAL = {"category": "other", "priority": "normal", "team": "support", "summary": "Manual."}


class ScriptedModel:
    """A ChatModel answering from a script: a string is the answer, an exception is raised."""

    def __init__(self, *script: str | Exception) -> None:
        self.script = list(script)
        self.calls = 0

    def complete(self, name: str, messages: Sequence[Mapping[str, str]],
                 schema: Mapping[str, Any]) -> Completion:
        self.calls += 1
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return Completion(step, "scripted", Usage(10, 5, 15))


class NoPublisher:
    """The handlers here emit nothing; a publisher is still part of the processor."""

    def publish(self, rows: Sequence[Any]) -> None:
        assert not rows

    def close(self) -> None:
        return None


def handle(store: MemoryStore, answers: RecordedAnswers, event: Envelope) -> str:
    answer = answers.answer(event.subject or "", event.id, TASK, event.data,
                            fallback=lambda _: MANUAL)

    def decide(event: Envelope, uow: UnitOfWork) -> str:
        uow.save({"team": answer.value["team"]})
        record(uow, event.id, TASK, answer)
        return str(answer.value["team"])

    processor = MessageProcessor(store, OutboxRelay(store, NoPublisher()),
                                 registry=SchemaRegistry())
    return processor.handle(event, decide).result or ""


def ticket() -> Envelope:
    return Envelope.new("helpdesk.ticket.created", {"subject": "Charged twice"},
                        source="/tests", subject="T-1")


def test_a_redelivery_reads_the_recorded_answer_back_without_asking_the_model() -> None:
    store, model = MemoryStore(), ScriptedModel(ANSWER)
    answers, event = RecordedAnswers(store, Reasoner(model)), ticket()
    assert handle(store, answers, event) == "payments"
    handle(store, answers, event)
    recorded = answers.lookup("T-1", event.id, TASK)
    assert model.calls == 1
    assert recorded is not None and recorded.source == "recorded"
    assert recorded.value["team"] == "payments" and recorded.usage.total_tokens == 15


def test_a_failing_model_gives_the_fallback_which_is_recorded_too() -> None:
    store = MemoryStore()
    model = ScriptedModel(ReasonerUnavailable("down"))
    answers, event = RecordedAnswers(store, Reasoner(model)), ticket()
    assert handle(store, answers, event) == "support"
    recorded = answers.lookup("T-1", event.id, TASK)
    assert recorded is not None and recorded.value == MANUAL


def test_without_a_reasoner_every_answer_is_the_fallback() -> None:
    store = MemoryStore()
    assert handle(store, RecordedAnswers(store, None), ticket()) == "support"
