"""A counter aggregate: the smallest domain that shows exactly-once effects.

`counter.increment` commands add to a counter's total and emit `counter.incremented` to
the `counter-events` queue; a projection consumes those and counts what it saw.
"""

from __future__ import annotations

from typing import Any

from agents.backbone import (
    Envelope,
    MessageProcessor,
    Outcome,
    SchemaRegistry,
    UnitOfWork,
    parse_servicebus,
)
from tests.integration.backbone.deliveries import Message

INCREMENT = "counter.increment"
INCREMENTED = "counter.incremented"
COMMANDS = "counter-commands"
EVENTS = "counter-events"
PROJECTION = "projection"
SOURCE = "/tests/counter"


def register_counter_events(registry: SchemaRegistry) -> None:
    registry.register(INCREMENT, {
        "type": "object", "required": ["by"], "additionalProperties": False,
        "properties": {"by": {"type": "integer", "minimum": 1}},
    })
    registry.register(INCREMENTED, {
        "type": "object", "required": ["total", "by"],
        "properties": {"total": {"type": "integer"}, "by": {"type": "integer"}},
    })


def increment_command(counter_id: str, by: int = 1) -> Envelope:
    return Envelope.new(INCREMENT, {"by": by}, source=SOURCE, subject=counter_id)


def increment(event: Envelope, uow: UnitOfWork) -> int:
    state = uow.load() or {"total": 0}
    state["total"] += event.data["by"]
    uow.save(state)
    uow.emit(event.follow(INCREMENTED, {"total": state["total"], "by": event.data["by"]},
                          source=SOURCE), destination=EVENTS)
    return int(state["total"])


def project(event: Envelope, uow: UnitOfWork) -> None:
    state = uow.load() or {"seen": 0, "sum": 0}
    state["seen"] += 1
    state["sum"] += event.data["by"]
    uow.save(state)


def consumer(processor: MessageProcessor, registry: SchemaRegistry, handler: Any,
             partition_key: str | None = None):
    """A queue consumer: parse the delivered message as a CloudEvent, then handle it."""
    def consume(message: Message) -> Outcome[Any]:
        event = parse_servicebus(message.body, message.application_properties,
                                 registry=registry)
        return processor.handle(event, handler, partition_key=partition_key)
    return consume
