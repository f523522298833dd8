"""The reasoning port's errors: each is transient (the agent falls back, the message may retry)."""

from __future__ import annotations

from agents.backbone.errors import TransientError


class ReasoningError(TransientError):
    """The model gave no usable answer; catch this one to take the agent's fallback."""

    reason = "ReasoningError"


class ReasonerUnavailable(ReasoningError):
    """The model endpoint timed out, throttled (429), failed (5xx) or could not be reached."""

    reason = "ReasonerUnavailable"


class InvalidAnswer(ReasoningError):
    """The model answered, but not a JSON object valid for the task's schema (or refused)."""

    reason = "InvalidAnswer"


class ReasonerOpen(ReasoningError):
    """The breaker is open: the call was refused at once, the model was not called."""

    reason = "ReasonerOpen"

    def __init__(self, description: str, *, retry_after: float) -> None:
        super().__init__(description)
        self.retry_after = retry_after
