"""The reasoning port: `Reasoner.decide(task, input)` -> a dict valid for the task's schema."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agents.backbone.breaker import BreakerOpen, CircuitBreaker
from agents.reasoning.errors import ReasonerOpen
from agents.reasoning.models import ChatModel, Usage
from agents.reasoning.tasks import Task

log = logging.getLogger("agents.reasoning")


@dataclass(frozen=True)
class Answer:
    """A decided answer; `source` is "model", "recorded" (read back) or "fallback"."""

    value: dict[str, Any]
    source: str
    model: str
    usage: Usage


class Reasoner:
    """Asks `model` for an answer valid for the task's schema, through `breaker` (if given):
    a timeout, a 429/5xx or an invalid answer counts as a failure; an open breaker raises
    ReasonerOpen at once. Every error is a ReasoningError: catch it and fall back."""

    def __init__(self, model: ChatModel, *, breaker: CircuitBreaker | None = None) -> None:
        self.model = model
        self.breaker = breaker

    def decide(self, task: Task, input: Mapping[str, Any]) -> dict[str, Any]:
        return self.answer(task, input).value

    def answer(self, task: Task, input: Mapping[str, Any]) -> Answer:
        def ask() -> Answer:
            completion = self.model.complete(task.name, task.messages(input), task.schema)
            return Answer(task.parse(completion.text), "model", completion.model,
                          completion.usage)

        if self.breaker is None:
            return ask()
        try:
            answer = self.breaker.call(ask)
        except BreakerOpen as error:
            raise ReasonerOpen(f"task {task.name}: {error.description}",
                               retry_after=error.retry_after) from error
        log.debug("task %s answered by %s: %d tokens", task.name, answer.model,
                  answer.usage.total_tokens)
        return answer
