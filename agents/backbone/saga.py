"""A saga engine: declarative steps, each a command through the outbox and a compensation.

State and step log live in the agent's table, partition = saga id, beside the saga's inbox
markers and outbox rows, so every transition is one transaction.

Each step declares its kind (the standard saga vocabulary): *compensable* steps come first and
can be undone; the *pivot* is the point of no return; *retriable* steps follow it and are
never undone. A step that refuses (a failure reply) took no effect: the saga compensates the
steps before it in reverse order, whatever the kind. A step whose deadline passes is *in
doubt*, not failed: a compensable one is compensated too (compensations are idempotent and
harmless if the action never happened); a pivot or retriable one gets the same idempotent
command again (same step, next attempt, bounded backoff) until it answers, and is never
compensated (an alert goes out after `in_doubt_alert_after` attempts; the re-sends go on).
An abort from outside compensates only while the step in flight is compensable; past the pivot
it is recorded and refused.

Replies are matched to the step and phase they answer: a reply for any attempt of an action in
flight decides it, a success for any attempt of a compensation ends it; a step's phase is
decided once, so a repeated or late reply or timeout changes nothing. The one exception is
recorded, not acted on: a late reply to an action the saga stopped waiting for (its deadline
passed, or an abort) is written to the step log. Compensations are retried (scheduled, with
backoff) until they succeed; after the budget an alert event goes out and the message is
dead-lettered; the remaining compensations still run and the saga ends `failed`. Step
deadlines are scheduled timeout messages; only the latest attempt's deadline counts.

Participants (the services the commands go to) answer with `reply_for(command, ...)` sent
to `reply_destination(command)`, and must make actions and compensations idempotent per
(saga, step): the same command may arrive once per attempt.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from agents.backbone.envelope import Envelope
from agents.backbone.errors import InvalidEvent
from agents.backbone.schemas import SchemaRegistry
from agents.backbone.store import Store
from agents.backbone.tables import LOG_PREFIX, STATE_ROW, as_store, table_key
from agents.backbone.unit_of_work import UnitOfWork

if TYPE_CHECKING:
    from azure.data.tables import TableClient

REPLY = "backbone.saga.reply"
TIMEOUT = "backbone.saga.timeout"
ALERT = "backbone.saga.alert"


class StepKind(StrEnum):
    """What a missed deadline means for the step (see the module docstring)."""

    COMPENSABLE = "compensable"
    PIVOT = "pivot"
    RETRIABLE = "retriable"


class SagaStatus(StrEnum):
    RUNNING = "running"
    COMPENSATING = "compensating"
    COMPLETED = "completed"
    COMPENSATED = "compensated"
    FAILED = "failed"


TERMINAL = frozenset({SagaStatus.COMPLETED, SagaStatus.COMPENSATED, SagaStatus.FAILED})


class StepStatus(StrEnum):
    PENDING = "pending"
    STARTED = "started"
    IN_DOUBT = "in_doubt"
    """A pivot or retriable step past its deadline: its command is being sent again."""
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    ABORTED = "aborted"
    COMPENSATING = "compensating"
    COMPENSATED = "compensated"
    COMPENSATION_FAILED = "compensation_failed"


IN_FLIGHT = frozenset({StepStatus.STARTED, StepStatus.IN_DOUBT, StepStatus.COMPENSATING})
_AWAITING_ACTION = frozenset({StepStatus.STARTED, StepStatus.IN_DOUBT})


class Phase(StrEnum):
    ACTION = "action"
    COMPENSATION = "compensation"
    SAGA = "saga"
    """The saga as a whole (log entries only: no command has this phase)."""


class LogEvent(StrEnum):
    """What a step-log entry records; `attempt` and `reason` carry the details."""

    STARTED = "started"
    SENT = "sent"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    IN_DOUBT = "in_doubt"
    ABORTED = "aborted"
    ABORT_REFUSED = "abort_refused"
    LATE_SUCCESS = "late_success"
    LATE_FAILURE = "late_failure"
    ALERTED = "alerted"
    COMPENSATED = "compensated"
    GAVE_UP = "gave_up"
    COMPLETED = "completed"
    NOTE = "note"
    """An entry written as prose before entries were structured: the text is in `reason`."""


_CORRELATION = {
    "sagaId": {"type": "string", "minLength": 1},
    "step": {"type": "string", "minLength": 1},
    "phase": {"enum": [Phase.ACTION.value, Phase.COMPENSATION.value]},
    "attempt": {"type": "integer", "minimum": 1},
}
REPLY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [*_CORRELATION, "succeeded"],
    "properties": {**_CORRELATION, "succeeded": {"type": "boolean"},
                   "reason": {"type": ["string", "null"]}, "result": {}},
}
TIMEOUT_SCHEMA: dict[str, Any] = {
    "type": "object", "required": list(_CORRELATION), "properties": dict(_CORRELATION),
}
ALERT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["sagaId", "saga", "step", "reason", "attempts"],
    "properties": {"sagaId": {"type": "string"}, "saga": {"type": "string"},
                   "step": {"type": "string"}, "reason": {"type": "string"},
                   "attempts": {"type": "integer"}},
}


def command_schema(payload_schema: Mapping[str, Any] | None) -> dict[str, Any]:
    """Schema of a saga command: correlation fields, `replyTo`, and the step's payload."""
    return {
        "type": "object",
        "required": [*_CORRELATION, "replyTo", "payload"],
        "properties": {**_CORRELATION, "replyTo": {"type": "string", "minLength": 1},
                       "payload": dict(payload_schema or {"type": "object"})},
    }


@dataclass(frozen=True)
class SagaStep:
    """One step: send `action` to `destination`. A compensable step is undone with
    `compensation` (None: nothing to undo); a pivot or retriable step has none.
    `payload` builds the command data from the saga data and earlier step results."""

    name: str
    action: str
    destination: str
    kind: StepKind = field(kw_only=True)
    compensation: str | None = None
    timeout: timedelta | None = None
    payload: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None
    payload_schema: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.kind is not StepKind.COMPENSABLE and self.compensation is not None:
            raise ValueError(f"step {self.name} is {self.kind}: past the point of no return "
                             "it is never compensated, so it cannot name a compensation")


@dataclass(frozen=True)
class SagaDefinition:
    """The declarative saga: ordered steps (compensable ones, at most one pivot, then
    retriable ones), where replies/timeouts arrive, where alerts go."""

    name: str
    source: str
    reply_to: str
    alert_destination: str
    steps: tuple[SagaStep, ...]
    compensation_attempts: int = 5
    compensation_backoff: timedelta = timedelta(seconds=2)
    compensation_backoff_max: timedelta = timedelta(minutes=5)
    in_doubt_backoff: timedelta = timedelta(seconds=2)
    in_doubt_backoff_max: timedelta = timedelta(minutes=1)
    in_doubt_alert_after: int = 5

    def __post_init__(self) -> None:
        order = [StepKind.COMPENSABLE, StepKind.PIVOT, StepKind.RETRIABLE]
        ranks = [order.index(step.kind) for step in self.steps]
        if ranks != sorted(ranks) or ranks.count(order.index(StepKind.PIVOT)) > 1:
            raise ValueError(f"saga {self.name}: steps must be compensable, then at most one "
                             f"pivot, then retriable; got {[s.kind.value for s in self.steps]}")

    def step(self, name: str) -> SagaStep:
        for step in self.steps:
            if step.name == name:
                return step
        raise InvalidEvent(f"saga {self.name} has no step {name!r}", reason="UnknownSagaStep")


@dataclass(frozen=True)
class LogEntry:
    """One step-log entry: `step` is "-" for the saga as a whole."""

    step: str
    phase: Phase
    event: LogEvent
    at: datetime | None
    attempt: int | None = None
    reason: str | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> LogEntry:
        if "Event" not in row:  # written before entries were structured
            return cls(str(row["Step"]), Phase(row["Phase"]), LogEvent.NOTE, row.get("At"),
                       reason=str(row.get("What", "")))
        attempt = row.get("Attempt")
        return cls(str(row["Step"]), Phase(row["Phase"]), LogEvent(row["Event"]), row.get("At"),
                   attempt=None if attempt is None else int(attempt), reason=row.get("Reason"))


@dataclass(frozen=True)
class SagaView:
    """A read-only look at one saga's state (for APIs, ops and tests)."""

    saga_id: str
    status: SagaStatus
    data: dict[str, Any]
    steps: dict[str, dict[str, Any]]
    results: dict[str, Any]
    failure: dict[str, Any] | None
    log: list[LogEntry] = field(default_factory=list)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


def reply_for(
    command: Envelope, *, succeeded: bool, source: str,
    result: Any = None, reason: str | None = None,
) -> Envelope:
    """The reply a participant sends for a saga command (send it to `reply_destination`)."""
    data = command.data
    saga_id = str(data["sagaId"])
    return command.follow(
        REPLY,
        {"sagaId": saga_id, "step": data["step"], "phase": data["phase"],
         "attempt": data["attempt"], "succeeded": succeeded, "reason": reason, "result": result},
        source=source, subject=saga_id, partitionkey=saga_id,
    )


def reply_destination(command: Envelope) -> str:
    return str(command.data["replyTo"])


def _backoff(first: timedelta, most: timedelta, attempt: int) -> timedelta:
    # The doubling stops at 2**30: in-doubt re-sends never stop, timedelta would overflow.
    return min(first * (1 << min(attempt - 1, 30)), most)


class SagaEngine:
    """Drives one `SagaDefinition`. Its methods are handlers run in a `UnitOfWork` whose
    partition is the saga id (`MessageProcessor.handle` routes replies by `partitionkey`)."""

    def __init__(self, definition: SagaDefinition, *, registry: SchemaRegistry):
        if not definition.steps:
            raise ValueError(f"saga {definition.name} has no steps")
        self.definition = definition
        registry.register(REPLY, REPLY_SCHEMA)
        registry.register(TIMEOUT, TIMEOUT_SCHEMA)
        registry.register(ALERT, ALERT_SCHEMA)
        for step in definition.steps:
            registry.register(step.action, command_schema(step.payload_schema))
            if step.compensation is not None:
                registry.register(step.compensation, command_schema(None))

    def start(self, uow: UnitOfWork, data: Mapping[str, Any], *, cause: Envelope | None = None
              ) -> bool:
        """Begin the saga with id `uow.partition_key`; False if it already exists."""
        if uow.load() is not None:
            return False
        state: dict[str, Any] = {
            "saga": self.definition.name, "sagaId": uow.partition_key,
            "status": SagaStatus.RUNNING, "data": dict(data), "results": {}, "failure": None,
            "logSeq": 0, "compensationQueue": [],
            "steps": {s.name: {"status": StepStatus.PENDING, "attempt": 0,
                               "compensationAttempt": 0, "answered": False}
                      for s in self.definition.steps},
        }
        origin = cause or Envelope.new(
            f"{self.definition.name}.started", {"sagaId": uow.partition_key},
            source=self.definition.source, subject=uow.partition_key,
            partitionkey=uow.partition_key,
        )
        self._log(uow, state, "-", Phase.SAGA, LogEvent.STARTED)
        self._send_action(uow, state, self.definition.steps[0], origin, delay=None)
        uow.save(state)
        return True

    def handle(self, event: Envelope, uow: UnitOfWork) -> str:
        """The handler for replies and timeouts; returns what it did (for logs and tests)."""
        if event.type not in (REPLY, TIMEOUT):
            raise InvalidEvent(f"saga {self.definition.name} cannot handle {event.type}",
                               reason="UnexpectedEventType")
        state = uow.load()
        if state is None:
            return "ignored: unknown saga"
        data = event.data
        step, phase, attempt = str(data["step"]), Phase(data["phase"]), int(data["attempt"])
        if step not in state["steps"]:
            return f"ignored: unknown step {step}"
        if event.type == REPLY:
            outcome = self._on_reply(uow, state, event, step, phase, attempt)
        else:
            outcome = self._on_timeout(uow, state, event, step, phase, attempt)
        if not outcome.startswith("ignored"):
            uow.save(state)
        return outcome

    def abort(self, uow: UnitOfWork, reason: str, *, cause: Envelope) -> bool:
        """Stop a running saga from outside (e.g. a fraud alert) and compensate; the step in
        flight is compensated too. Past the pivot (a pivot or retriable step in flight) the
        saga only goes forward: the abort is logged and refused. False if not aborted."""
        state = uow.load()
        if state is None or state["status"] != SagaStatus.RUNNING:
            return False
        in_flight = [n for n, e in state["steps"].items() if e["status"] in _AWAITING_ACTION]
        forward = [n for n in in_flight
                   if self.definition.step(n).kind is not StepKind.COMPENSABLE]
        if forward:
            self._log(uow, state, forward[0], Phase.ACTION, LogEvent.ABORT_REFUSED, reason=reason)
            uow.save(state)
            return False
        for name in in_flight:
            state["steps"][name]["status"] = StepStatus.ABORTED
        state["failure"] = {"step": in_flight[0] if in_flight else "-", "reason": reason}
        self._log(uow, state, state["failure"]["step"], Phase.ACTION, LogEvent.ABORTED,
                  reason=reason)
        self._begin_compensation(uow, state, cause, include=in_flight)
        uow.save(state)
        return True

    @staticmethod
    def view(store: Store | TableClient, saga_id: str) -> SagaView | None:
        """Read one saga's state and step log (two storage requests)."""
        chosen = as_store(store)
        partition = table_key(saga_id)
        found = chosen.get(partition, STATE_ROW)
        if found is None:
            return None
        logs = chosen.query(LOG_PREFIX, partition_key=partition)
        state = json.loads(found.entity["state"])
        steps = {name: {**entry, "status": StepStatus(entry["status"])}
                 for name, entry in state["steps"].items()}
        return SagaView(
            saga_id=saga_id, status=SagaStatus(state["status"]), data=state["data"],
            steps=steps, results=state["results"], failure=state["failure"],
            log=[LogEntry.from_row(row.entity) for row in logs],
        )

    def _on_reply(self, uow: UnitOfWork, state: dict[str, Any], event: Envelope, step: str,
                  phase: Phase, attempt: int) -> str:
        entry = state["steps"][step]
        status = StepStatus(entry["status"])
        succeeded = bool(event.data["succeeded"])
        reason = event.data.get("reason") or "failed"
        if phase is Phase.ACTION:
            # Sagas stored before `answered` existed: a decided status means it was answered.
            answered = entry.get("answered", status in (StepStatus.SUCCEEDED, StepStatus.FAILED))
            if attempt > entry["attempt"] or answered:
                return f"ignored: late or repeated {step} reply"
            entry["answered"] = True
            if status not in _AWAITING_ACTION or state["status"] != SagaStatus.RUNNING:
                # The saga stopped waiting (deadline or abort): the answer is history only.
                if succeeded:
                    self._log(uow, state, step, phase, LogEvent.LATE_SUCCESS, attempt=attempt)
                else:
                    self._log(uow, state, step, phase, LogEvent.LATE_FAILURE, attempt=attempt,
                              reason=reason)
                return f"{step} late reply recorded"
            if succeeded:
                entry["status"] = StepStatus.SUCCEEDED
                state["results"][step] = event.data.get("result")
                self._log(uow, state, step, phase, LogEvent.SUCCEEDED, attempt=attempt)
                self._advance(uow, state, step, event)
                return f"{step} succeeded"
            entry["status"] = StepStatus.FAILED
            state["failure"] = {"step": step, "reason": reason}
            self._log(uow, state, step, phase, LogEvent.FAILED, attempt=attempt, reason=reason)
            self._begin_compensation(uow, state, event, include=[])
            return f"{step} failed"
        if status is not StepStatus.COMPENSATING or attempt > entry["compensationAttempt"]:
            return f"ignored: late or repeated {step} compensation reply"
        if succeeded:
            entry["status"] = StepStatus.COMPENSATED
            self._log(uow, state, step, phase, LogEvent.COMPENSATED, attempt=attempt)
            self._next_compensation(uow, state, event)
            return f"{step} compensated"
        if attempt < entry["compensationAttempt"]:
            return f"ignored: {step} compensation attempt {attempt} failed, a later one is out"
        return self._compensation_failed(uow, state, event, step, reason)

    def _on_timeout(self, uow: UnitOfWork, state: dict[str, Any], event: Envelope, step: str,
                    phase: Phase, attempt: int) -> str:
        entry = state["steps"][step]
        status = StepStatus(entry["status"])
        if phase is Phase.ACTION:
            if state["status"] != SagaStatus.RUNNING or status not in _AWAITING_ACTION \
                    or entry["attempt"] != attempt:
                return f"ignored: late {step} timeout"
            definition = self.definition.step(step)
            if definition.kind is not StepKind.COMPENSABLE:
                return self._resend_in_doubt(uow, state, event, definition)
            entry["status"] = StepStatus.TIMED_OUT
            state["failure"] = {"step": step, "reason": "timeout"}
            self._log(uow, state, step, phase, LogEvent.TIMED_OUT, attempt=attempt)
            self._begin_compensation(uow, state, event, include=[step])
            return f"{step} timed out"
        if status is not StepStatus.COMPENSATING or entry["compensationAttempt"] != attempt:
            return f"ignored: late {step} compensation timeout"
        return self._compensation_failed(uow, state, event, step, "timeout")

    def _resend_in_doubt(self, uow: UnitOfWork, state: dict[str, Any], cause: Envelope,
                         step: SagaStep) -> str:
        """Past the point of no return a missed deadline is not a failure: send again."""
        entry = state["steps"][step.name]
        attempts = entry["attempt"]
        entry["status"] = StepStatus.IN_DOUBT
        self._log(uow, state, step.name, Phase.ACTION, LogEvent.IN_DOUBT, attempt=attempts)
        if attempts == self.definition.in_doubt_alert_after:
            reason = f"in doubt after {attempts} attempts; still re-sending"
            self._alert(uow, state, cause, step.name, reason, attempts)
            self._log(uow, state, step.name, Phase.ACTION, LogEvent.ALERTED, attempt=attempts,
                      reason=reason)
        definition = self.definition
        delay = _backoff(definition.in_doubt_backoff, definition.in_doubt_backoff_max, attempts)
        self._send_action(uow, state, step, cause, delay=delay)
        return f"{step.name} in doubt, re-sent"

    def _advance(self, uow: UnitOfWork, state: dict[str, Any], done: str, cause: Envelope
                 ) -> None:
        names = [s.name for s in self.definition.steps]
        position = names.index(done) + 1
        if position == len(names):
            state["status"] = SagaStatus.COMPLETED
            self._log(uow, state, "-", Phase.SAGA, LogEvent.COMPLETED)
            return
        self._send_action(uow, state, self.definition.steps[position], cause, delay=None)

    def _begin_compensation(self, uow: UnitOfWork, state: dict[str, Any], cause: Envelope,
                            *, include: list[str]) -> None:
        """Queue, in reverse step order, every succeeded step (plus `include`) to undo."""
        queue = [
            s.name for s in reversed(self.definition.steps)
            if s.compensation is not None
            and (state["steps"][s.name]["status"] == StepStatus.SUCCEEDED or s.name in include)
        ]
        state["status"] = SagaStatus.COMPENSATING
        state["compensationQueue"] = queue
        self._next_compensation(uow, state, cause)

    def _next_compensation(self, uow: UnitOfWork, state: dict[str, Any], cause: Envelope
                           ) -> None:
        queue: list[str] = state["compensationQueue"]
        if not queue:
            gave_up = any(e["status"] == StepStatus.COMPENSATION_FAILED
                          for e in state["steps"].values())
            state["status"] = SagaStatus.FAILED if gave_up else SagaStatus.COMPENSATED
            self._log(uow, state, "-", Phase.SAGA,
                      LogEvent.FAILED if gave_up else LogEvent.COMPENSATED)
            return
        step = self.definition.step(queue.pop(0))
        entry = state["steps"][step.name]
        entry["status"] = StepStatus.COMPENSATING
        entry["compensationAttempt"] = 0
        self._send_compensation(uow, state, step, cause, delay=None)

    def _compensation_failed(self, uow: UnitOfWork, state: dict[str, Any], cause: Envelope,
                             step: str, reason: str) -> str:
        entry = state["steps"][step]
        attempts = entry["compensationAttempt"]
        if attempts < self.definition.compensation_attempts:
            self._log(uow, state, step, Phase.COMPENSATION, LogEvent.FAILED, attempt=attempts,
                      reason=reason)
            definition = self.definition
            backoff = _backoff(definition.compensation_backoff,
                               definition.compensation_backoff_max, attempts)
            self._send_compensation(uow, state, self.definition.step(step), cause, delay=backoff)
            return f"{step} compensation retried"
        entry["status"] = StepStatus.COMPENSATION_FAILED
        self._log(uow, state, step, Phase.COMPENSATION, LogEvent.GAVE_UP, attempt=attempts,
                  reason=reason)
        alert = self._alert(uow, state, cause, step, reason, attempts)
        uow.request_dead_letter(
            "CompensationExhausted",
            f"saga {state['sagaId']} step {step}: compensation failed {attempts} times "
            f"({reason}); alert {alert.id} sent",
        )
        self._next_compensation(uow, state, cause)
        return f"{step} compensation exhausted"

    def _alert(self, uow: UnitOfWork, state: dict[str, Any], cause: Envelope, step: str,
               reason: str, attempts: int) -> Envelope:
        alert = cause.follow(
            ALERT, {"sagaId": state["sagaId"], "saga": self.definition.name, "step": step,
                    "reason": reason, "attempts": attempts},
            source=self.definition.source, subject=state["sagaId"],
            partitionkey=state["sagaId"],
        )
        uow.emit(alert, destination=self.definition.alert_destination)
        return alert

    def _send_action(self, uow: UnitOfWork, state: dict[str, Any], step: SagaStep,
                     cause: Envelope, *, delay: timedelta | None) -> None:
        """Send the step's next attempt; a first attempt starts the step."""
        entry = state["steps"][step.name]
        if entry["attempt"] == 0:
            entry["status"] = StepStatus.STARTED
        entry["attempt"] += 1
        payload = dict(step.payload({**state["data"], "results": state["results"]})
                       if step.payload else state["data"])
        self._command(uow, state, step, cause, step.action, Phase.ACTION, entry["attempt"],
                      payload, delay=delay)
        self._log(uow, state, step.name, Phase.ACTION, LogEvent.SENT, attempt=entry["attempt"])

    def _send_compensation(self, uow: UnitOfWork, state: dict[str, Any], step: SagaStep,
                           cause: Envelope, *, delay: timedelta | None) -> None:
        assert step.compensation is not None
        entry = state["steps"][step.name]
        entry["compensationAttempt"] += 1
        payload = {**state["data"], "results": state["results"]}
        self._command(uow, state, step, cause, step.compensation, Phase.COMPENSATION,
                      entry["compensationAttempt"], payload, delay=delay)
        self._log(uow, state, step.name, Phase.COMPENSATION, LogEvent.SENT,
                  attempt=entry["compensationAttempt"])

    def _command(self, uow: UnitOfWork, state: dict[str, Any], step: SagaStep, cause: Envelope,
                 command_type: str, phase: Phase, attempt: int, payload: Mapping[str, Any],
                 *, delay: timedelta | None) -> None:
        saga_id = state["sagaId"]
        correlation = {"sagaId": saga_id, "step": step.name, "phase": phase.value,
                       "attempt": attempt}
        sent_at = uow.now() + delay if delay else None
        command = cause.follow(
            command_type, {**correlation, "replyTo": self.definition.reply_to,
                           "payload": dict(payload)},
            source=self.definition.source, subject=saga_id, partitionkey=saga_id,
        )
        uow.emit(command, destination=step.destination, scheduled_at=sent_at)
        if step.timeout is not None:
            deadline = (sent_at or uow.now()) + step.timeout
            timeout = cause.follow(TIMEOUT, correlation, source=self.definition.source,
                                   subject=saga_id, partitionkey=saga_id)
            uow.emit(timeout, destination=self.definition.reply_to, scheduled_at=deadline)

    @staticmethod
    def _log(uow: UnitOfWork, state: dict[str, Any], step: str, phase: Phase, event: LogEvent,
             *, attempt: int | None = None, reason: str | None = None) -> None:
        state["logSeq"] += 1
        row: dict[str, Any] = {"Step": step, "Phase": phase.value, "Event": event.value,
                               "At": uow.now()}
        if attempt is not None:
            row["Attempt"] = attempt
        if reason is not None:
            row["Reason"] = reason
        uow.append(f"{LOG_PREFIX}{state['logSeq']:06d}", row)
