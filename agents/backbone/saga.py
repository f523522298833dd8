"""A saga engine: declarative steps, each a command through the outbox and a compensation.

State and step log live in the agent's table, partition = saga id, beside the saga's inbox
markers and outbox rows, so every transition is one transaction. Replies are correlated by
(saga id, step, phase, attempt): a repeated or late reply changes nothing. A failed step
compensates the completed steps in reverse order; a timed-out step is compensated too (it
may have taken effect). Compensations are retried (scheduled, with backoff) until they
succeed; after the budget an alert event goes out and the message is dead-lettered; the
remaining compensations still run and the saga ends `failed`. Step
deadlines are scheduled timeout messages; a late timeout is ignored.

Participants (the services the commands go to) answer with `reply_for(command, ...)` sent
to `reply_destination(command)`, and must make compensations idempotent per (saga, step).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.data.tables import TableClient

from agents.backbone.envelope import Envelope
from agents.backbone.errors import InvalidEvent, map_storage_error
from agents.backbone.schemas import SchemaRegistry
from agents.backbone.tables import LOG_PREFIX, STATE_ROW, table_key
from agents.backbone.unit_of_work import UnitOfWork

REPLY = "backbone.saga.reply"
TIMEOUT = "backbone.saga.timeout"
ALERT = "backbone.saga.alert"

RUNNING, COMPENSATING = "running", "compensating"
COMPLETED, COMPENSATED, FAILED = "completed", "compensated", "failed"
TERMINAL = frozenset({COMPLETED, COMPENSATED, FAILED})

_CORRELATION = {
    "sagaId": {"type": "string", "minLength": 1},
    "step": {"type": "string", "minLength": 1},
    "phase": {"enum": ["action", "compensation"]},
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
    """One step: send `action` to `destination`; undo with `compensation` (None: nothing to
    undo). `payload` builds the command data from the saga data and earlier step results."""

    name: str
    action: str
    destination: str
    compensation: str | None = None
    timeout: timedelta | None = None
    payload: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None
    payload_schema: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class SagaDefinition:
    """The declarative saga: ordered steps, where replies/timeouts arrive, where alerts go."""

    name: str
    source: str
    reply_to: str
    alert_destination: str
    steps: tuple[SagaStep, ...]
    compensation_attempts: int = 5
    compensation_backoff: timedelta = timedelta(seconds=2)
    compensation_backoff_max: timedelta = timedelta(minutes=5)

    def step(self, name: str) -> SagaStep:
        for step in self.steps:
            if step.name == name:
                return step
        raise InvalidEvent(f"saga {self.name} has no step {name!r}", reason="UnknownSagaStep")


@dataclass(frozen=True)
class SagaView:
    """A read-only look at one saga's state (for APIs, ops and tests)."""

    saga_id: str
    status: str
    data: dict[str, Any]
    steps: dict[str, dict[str, Any]]
    results: dict[str, Any]
    failure: dict[str, Any] | None
    log: list[dict[str, Any]] = field(default_factory=list)

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
            "saga": self.definition.name, "sagaId": uow.partition_key, "status": RUNNING,
            "data": dict(data), "results": {}, "failure": None, "logSeq": 0,
            "compensationQueue": [],
            "steps": {s.name: {"status": "pending", "attempt": 0, "compensationAttempt": 0}
                      for s in self.definition.steps},
        }
        origin = cause or Envelope.new(
            f"{self.definition.name}.started", {"sagaId": uow.partition_key},
            source=self.definition.source, subject=uow.partition_key,
            partitionkey=uow.partition_key,
        )
        self._log(uow, state, "-", "saga", "started")
        self._send_action(uow, state, self.definition.steps[0], origin)
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
        step, phase, attempt = str(data["step"]), str(data["phase"]), int(data["attempt"])
        entry = state["steps"].get(step)
        if entry is None:
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
        flight is compensated too. False if the saga is not running."""
        state = uow.load()
        if state is None or state["status"] != RUNNING:
            return False
        in_flight = [n for n, e in state["steps"].items() if e["status"] == "started"]
        for name in in_flight:
            state["steps"][name]["status"] = "aborted"
        state["failure"] = {"step": in_flight[0] if in_flight else "-", "reason": reason}
        self._log(uow, state, state["failure"]["step"], "action", f"aborted: {reason}")
        self._begin_compensation(uow, state, cause, include=in_flight)
        uow.save(state)
        return True

    @staticmethod
    def view(table: TableClient, saga_id: str) -> SagaView | None:
        """Read one saga's state and step log (two storage requests)."""
        try:
            entity = table.get_entity(table_key(saga_id), STATE_ROW)
            logs = list(table.query_entities(
                "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
                parameters={"pk": table_key(saga_id), "lo": LOG_PREFIX,
                            "hi": LOG_PREFIX[:-1] + "}"}))
        except ResourceNotFoundError:
            return None
        except AzureError as error:
            raise map_storage_error(error) from error
        state = json.loads(entity["state"])
        return SagaView(
            saga_id=saga_id, status=state["status"], data=state["data"], steps=state["steps"],
            results=state["results"], failure=state["failure"],
            log=[{"step": e["Step"], "phase": e["Phase"], "what": e["What"], "at": e["At"]}
                 for e in sorted(logs, key=lambda e: str(e["RowKey"]))],
        )

    def _on_reply(self, uow: UnitOfWork, state: dict[str, Any], event: Envelope, step: str,
                  phase: str, attempt: int) -> str:
        entry = state["steps"][step]
        succeeded = bool(event.data["succeeded"])
        if phase == "action":
            if state["status"] != RUNNING or entry["status"] != "started" \
                    or entry["attempt"] != attempt:
                return f"ignored: late or repeated {step} reply"
            if succeeded:
                entry["status"] = "succeeded"
                state["results"][step] = event.data.get("result")
                self._log(uow, state, step, phase, "succeeded")
                self._advance(uow, state, step, event)
                return f"{step} succeeded"
            entry["status"] = "failed"
            state["failure"] = {"step": step, "reason": event.data.get("reason") or "failed"}
            self._log(uow, state, step, phase, f"failed: {state['failure']['reason']}")
            self._begin_compensation(uow, state, event, include=[])
            return f"{step} failed"
        if state["status"] != COMPENSATING or entry["status"] != "compensating" \
                or entry["compensationAttempt"] != attempt:
            return f"ignored: late or repeated {step} compensation reply"
        if succeeded:
            entry["status"] = "compensated"
            self._log(uow, state, step, phase, "compensated")
            self._next_compensation(uow, state, event)
            return f"{step} compensated"
        return self._compensation_failed(uow, state, event, step,
                                         event.data.get("reason") or "failed")

    def _on_timeout(self, uow: UnitOfWork, state: dict[str, Any], event: Envelope, step: str,
                    phase: str, attempt: int) -> str:
        entry = state["steps"][step]
        if phase == "action":
            if state["status"] != RUNNING or entry["status"] != "started" \
                    or entry["attempt"] != attempt:
                return f"ignored: late {step} timeout"
            entry["status"] = "timed_out"
            state["failure"] = {"step": step, "reason": "timeout"}
            self._log(uow, state, step, phase, "timed out")
            self._begin_compensation(uow, state, event, include=[step])
            return f"{step} timed out"
        if state["status"] != COMPENSATING or entry["status"] != "compensating" \
                or entry["compensationAttempt"] != attempt:
            return f"ignored: late {step} compensation timeout"
        return self._compensation_failed(uow, state, event, step, "timeout")

    def _advance(self, uow: UnitOfWork, state: dict[str, Any], done: str, cause: Envelope
                 ) -> None:
        names = [s.name for s in self.definition.steps]
        position = names.index(done) + 1
        if position == len(names):
            state["status"] = COMPLETED
            self._log(uow, state, "-", "saga", COMPLETED)
            return
        self._send_action(uow, state, self.definition.steps[position], cause)

    def _begin_compensation(self, uow: UnitOfWork, state: dict[str, Any], cause: Envelope,
                            *, include: list[str]) -> None:
        """Queue, in reverse step order, every succeeded step (plus `include`) to undo."""
        queue = [
            s.name for s in reversed(self.definition.steps)
            if s.compensation is not None
            and (state["steps"][s.name]["status"] == "succeeded" or s.name in include)
        ]
        state["status"] = COMPENSATING
        state["compensationQueue"] = queue
        self._next_compensation(uow, state, cause)

    def _next_compensation(self, uow: UnitOfWork, state: dict[str, Any], cause: Envelope
                           ) -> None:
        queue: list[str] = state["compensationQueue"]
        if not queue:
            gave_up = any(e["status"] == "compensation_failed" for e in state["steps"].values())
            state["status"] = FAILED if gave_up else COMPENSATED
            self._log(uow, state, "-", "saga", state["status"])
            return
        step = self.definition.step(queue.pop(0))
        entry = state["steps"][step.name]
        entry["status"] = "compensating"
        entry["compensationAttempt"] = 0
        self._send_compensation(uow, state, step, cause, delay=None)

    def _compensation_failed(self, uow: UnitOfWork, state: dict[str, Any], cause: Envelope,
                             step: str, reason: str) -> str:
        entry = state["steps"][step]
        attempts = entry["compensationAttempt"]
        if attempts < self.definition.compensation_attempts:
            self._log(uow, state, step, "compensation", f"attempt {attempts} failed: {reason}")
            backoff = min(self.definition.compensation_backoff * (2 ** (attempts - 1)),
                          self.definition.compensation_backoff_max)
            self._send_compensation(uow, state, self.definition.step(step), cause, delay=backoff)
            return f"{step} compensation retried"
        entry["status"] = "compensation_failed"
        self._log(uow, state, step, "compensation",
                  f"gave up after {attempts} attempts: {reason}")
        alert = cause.follow(
            ALERT, {"sagaId": state["sagaId"], "saga": self.definition.name, "step": step,
                    "reason": reason, "attempts": attempts},
            source=self.definition.source, subject=state["sagaId"],
            partitionkey=state["sagaId"],
        )
        uow.emit(alert, destination=self.definition.alert_destination)
        uow.request_dead_letter(
            "CompensationExhausted",
            f"saga {state['sagaId']} step {step}: compensation failed {attempts} times "
            f"({reason}); alert {alert.id} sent",
        )
        self._next_compensation(uow, state, cause)
        return f"{step} compensation exhausted"

    def _send_action(self, uow: UnitOfWork, state: dict[str, Any], step: SagaStep,
                     cause: Envelope) -> None:
        entry = state["steps"][step.name]
        entry["status"] = "started"
        entry["attempt"] += 1
        payload = dict(step.payload({**state["data"], "results": state["results"]})
                       if step.payload else state["data"])
        self._command(uow, state, step, cause, step.action, "action", entry["attempt"],
                      payload, delay=None)
        self._log(uow, state, step.name, "action", f"sent attempt {entry['attempt']}")

    def _send_compensation(self, uow: UnitOfWork, state: dict[str, Any], step: SagaStep,
                           cause: Envelope, *, delay: timedelta | None) -> None:
        assert step.compensation is not None
        entry = state["steps"][step.name]
        entry["compensationAttempt"] += 1
        payload = {**state["data"], "results": state["results"]}
        self._command(uow, state, step, cause, step.compensation, "compensation",
                      entry["compensationAttempt"], payload, delay=delay)
        self._log(uow, state, step.name, "compensation",
                  f"sent attempt {entry['compensationAttempt']}")

    def _command(self, uow: UnitOfWork, state: dict[str, Any], step: SagaStep, cause: Envelope,
                 command_type: str, phase: str, attempt: int, payload: Mapping[str, Any],
                 *, delay: timedelta | None) -> None:
        saga_id = state["sagaId"]
        correlation = {"sagaId": saga_id, "step": step.name, "phase": phase, "attempt": attempt}
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
    def _log(uow: UnitOfWork, state: dict[str, Any], step: str, phase: str, what: str) -> None:
        state["logSeq"] += 1
        uow.append(f"{LOG_PREFIX}{state['logSeq']:06d}",
                   {"Step": step, "Phase": phase, "What": what, "At": uow.now()})
