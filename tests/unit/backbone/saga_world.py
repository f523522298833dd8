"""A small fulfilment saga and scripted participants on one `MemoryStore`, their messages
delivered by the test's `Deliveries` on its clock.

Steps: reserve (undo: release) -> charge (undo: refund), both compensable -> ship
(retriable: a parcel is not recalled).
Each participant is a real consumer using `MessageProcessor` (so it has an inbox too) and
answers per command type as scripted: "ok", "fail", "silent" (never replies) or "late"
(does it, and its "ok" reply arrives `LATE_BY` after the command, past the step deadline).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from agents.backbone import (
    Envelope,
    MessageProcessor,
    SagaDefinition,
    SagaEngine,
    SagaStep,
    SagaView,
    StepKind,
    UnitOfWork,
    parse_servicebus,
    reply_destination,
    reply_for,
)
from tests.integration.backbone.counter import consumer
from tests.integration.backbone.deliveries import Deliveries, Delivery, Message

REPLIES, ALERTS = "saga-replies", "ops-alerts"
STEP_TIMEOUT = timedelta(seconds=30)
LATE_BY = STEP_TIMEOUT * 2

FULFILMENT = SagaDefinition(
    name="fulfilment", source="/tests/orders", reply_to=REPLIES, alert_destination=ALERTS,
    steps=(
        SagaStep("reserve", "stock.reserve", "inventory", kind=StepKind.COMPENSABLE,
                 compensation="stock.release", timeout=STEP_TIMEOUT),
        SagaStep("charge", "payment.charge", "payments", kind=StepKind.COMPENSABLE,
                 compensation="payment.refund", timeout=STEP_TIMEOUT,
                 payload=lambda data: {"amount": data["amount"]},
                 payload_schema={"type": "object", "required": ["amount"]}),
        SagaStep("ship", "shipping.ship", "shipping", kind=StepKind.RETRIABLE,
                 timeout=STEP_TIMEOUT),
    ),
    compensation_attempts=3,
)
SERVICES = ("inventory", "payments", "shipping")


class World:
    """The saga engine, its participants and their deliveries, driven step by step by a test."""

    def __init__(self, processor: MessageProcessor, deliveries: Deliveries, schemas: Any,
                 script: dict[str, Iterable[str]] | None = None) -> None:
        self.processor, self.deliveries, self.schemas = processor, deliveries, schemas
        self.engine = SagaEngine(FULFILMENT, registry=schemas)
        self.script = {kind: list(answers) for kind, answers in (script or {}).items()}
        self.journal: list[tuple[str, str]] = []
        self.commands: list[Envelope] = []
        self.outcomes: list[str] = []

    def start(self, saga_id: str, amount: int = 42) -> None:
        self.processor.run(saga_id, lambda uow: self.engine.start(uow, {"amount": amount}),
                           inbox_id=f"start-{saga_id}")

    def consumers(self) -> dict[str, Any]:
        consumers = {service: self._participant(service) for service in SERVICES}
        consumers[REPLIES] = consumer(self.processor, self.schemas, self._saga)
        return consumers

    def run(self) -> list[Delivery]:
        """Deliver everything that is due, everywhere, until all queues are idle."""
        return self.deliveries.run(self.consumers())

    def run_until_settled(self) -> None:
        """Run, then move the clock to the next scheduled message (a retry, a deadline) and
        run again, until nothing is scheduled: one due instant at a time, as in real time."""
        self.deliveries.run_until_settled(self.consumers())

    def view(self, saga_id: str) -> SagaView:
        found = SagaEngine.view(self.processor.store, saga_id)
        assert found is not None
        return found

    def _participant(self, service: str) -> Any:
        def consume(message: Message) -> Any:
            command = parse_servicebus(message.body, message.application_properties,
                                       registry=self.schemas)
            return self.processor.handle(command, self._participate,
                                         partition_key=f"{service}:{command.partitionkey}")
        return consume

    def _saga(self, event: Envelope, uow: UnitOfWork) -> str:
        outcome = self.engine.handle(event, uow)
        self.outcomes.append(outcome)
        return outcome

    def _participate(self, command: Envelope, uow: UnitOfWork) -> None:
        answers = self.script.get(command.type) or ["ok"]
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        self.commands.append(command)
        self.journal.append((command.type, answer))
        if answer == "silent":
            return
        succeeded = answer in ("ok", "late")
        reply = reply_for(command, succeeded=succeeded, source="/tests/participant",
                          reason=None if succeeded else f"{command.type} refused",
                          result={"by": command.type})
        late = uow.now() + LATE_BY if answer == "late" else None
        uow.emit(reply, destination=reply_destination(command), scheduled_at=late)
