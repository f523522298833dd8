"""The reasoning port: ask a model for an answer valid for a task's JSON Schema, through a
circuit breaker shared by every instance; see README.md.

    task = load_task(Path(__file__).parent / "prompts", "explain-risk")
    reasoner = reasoner_from_settings(breaker_table=state_table(service, "breakers"))
    answer = reasoner.decide(task, {"amount": 950, ...})     # ReasoningError -> fallback
"""

from agents.reasoning.errors import InvalidAnswer, ReasonerOpen, ReasonerUnavailable, ReasoningError
from agents.reasoning.models import (
    ChatModel,
    Completion,
    OpenAIChatModel,
    Usage,
    azure_openai,
    openai_compatible,
)
from agents.reasoning.reasoner import Answer, Reasoner
from agents.reasoning.recorded import RecordedAnswers, answer_row, record
from agents.reasoning.settings import reasoner_from_settings
from agents.reasoning.tasks import Task, load_task

__all__ = [
    "Answer",
    "ChatModel",
    "Completion",
    "InvalidAnswer",
    "OpenAIChatModel",
    "Reasoner",
    "ReasonerOpen",
    "ReasonerUnavailable",
    "ReasoningError",
    "RecordedAnswers",
    "Task",
    "Usage",
    "answer_row",
    "azure_openai",
    "load_task",
    "openai_compatible",
    "reasoner_from_settings",
    "record",
]
