"""Calls outside the transaction: the model is asked BEFORE the unit of work,
its answer is recorded in the same transaction as the decision, and a redelivered message
reads the recorded answer back instead of asking again.

    answers = RecordedAnswers(table, reasoner)
    answer = answers.answer(partition, event.id, task, input, fallback=rules_only)  # no UoW yet
    processor.handle(event, lambda event, uow: decide(event, uow, answer))
    # in decide: ...; record(uow, event.id, task, answer)  -> one row in the same transaction

A handler re-run after a 412 reuses the same `answer` (it was obtained once, outside).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from azure.data.tables import TableClient

from agents.backbone.store import Store
from agents.backbone.tables import as_store, table_key
from agents.backbone.unit_of_work import UnitOfWork
from agents.reasoning.errors import ReasoningError
from agents.reasoning.models import Usage
from agents.reasoning.reasoner import Answer, Reasoner
from agents.reasoning.tasks import Task

log = logging.getLogger("agents.reasoning")
ANSWER_PREFIX = "answer|"
Fallback = Callable[[Mapping[str, Any]], dict[str, Any]]


def answer_row(task: Task, message_id: str) -> str:
    return f"{ANSWER_PREFIX}{table_key(task.name)}|{table_key(message_id)}"


class RecordedAnswers:
    """The answer for one message: recorded before, else the model's, else the fallback's.
    `store` is the agent's table (the one its unit of work writes), or a MemoryStore in tests."""

    def __init__(self, store: Store | TableClient, reasoner: Reasoner | None) -> None:
        self.store = as_store(store)
        self.reasoner = reasoner

    def answer(self, partition_key: str, message_id: str, task: Task,
               input: Mapping[str, Any], *, fallback: Fallback) -> Answer:
        """Call this outside any unit of work; a ReasoningError (timeout, 429, 5xx, invalid
        answer, open breaker) takes `fallback(input)`, recorded like a model answer."""
        recorded = self.lookup(partition_key, message_id, task)
        if recorded is not None:
            return recorded
        if self.reasoner is not None:
            try:
                return self.reasoner.answer(task, input)
            except ReasoningError as error:
                log.warning("task %s for %s: %s (%s); taking the fallback", task.name,
                            message_id, error.reason, error.description)
        return Answer(fallback(input), "fallback", "", Usage(0, 0, 0))

    def lookup(self, partition_key: str, message_id: str, task: Task) -> Answer | None:
        row = self.store.get(table_key(partition_key), answer_row(task, message_id))
        if row is None:
            return None
        entity = row.entity
        return Answer(json.loads(entity["Answer"]), "recorded", str(entity.get("Model", "")),
                      Usage(0, 0, int(entity.get("Tokens", 0))))


def record(uow: UnitOfWork, message_id: str, task: Task, answer: Answer) -> None:
    """Stage the answer's row in the message's transaction (an answer read back is already
    there)."""
    if answer.source == "recorded":
        return
    uow.append(answer_row(task, message_id), {
        "Answer": json.dumps(answer.value, separators=(",", ":")), "Source": answer.source,
        "Model": answer.model, "Tokens": answer.usage.total_tokens,
    })
