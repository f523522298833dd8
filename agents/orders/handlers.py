"""Handlers: one per incoming message kind. Each runs in a unit of work on one partition
(state + inbox + outbox in one transaction) through the backbone's `MessageProcessor`.

No Azure Functions types here; `blueprint` translates triggers into these calls.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from agents.backbone.envelope import Envelope
from agents.backbone.errors import InvalidEvent, PoisonMessage, PublishFailed
from agents.backbone.processing import MessageProcessor, Outcome
from agents.backbone.saga import REPLY, TIMEOUT, SagaEngine, SagaView, reply_destination, reply_for
from agents.backbone.schemas import SchemaRegistry
from agents.backbone.tables import LOG_PREFIX, prefix_filter, table_key
from agents.backbone.unit_of_work import UnitOfWork
from agents.contracts import fraud, orders
from agents.orders import entities
from agents.orders.model import ACTION_OF_TYPE, SERVICE_OF_ACTION, SOURCE, Action, Order, Service
from agents.orders.simulators import Answer, Switchboard, answer, scopes

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class OrdersAgent:
    """The composed orders agent that `bootstrap` returns and the Blueprint keeps (tests build
    their own): its schema registry, saga engine and adapters.

    One `MessageProcessor` per table: it runs a handler in a unit of work on one partition
    and relays the outbox before the trigger settles the message.
    """

    schemas: SchemaRegistry
    sagas: MessageProcessor
    engine: SagaEngine
    ledgers: dict[Service, MessageProcessor]
    switchboard: Switchboard

    @property
    def processors(self) -> list[MessageProcessor]:
        return [self.sagas, *self.ledgers.values()]


@dataclass(frozen=True)
class Placement:
    created: bool
    conflict: bool


def place_order(order: Order, agent: OrdersAgent) -> Placement:
    """Start the saga for a new Idempotency-Key, or find the order it already named.

    Two racing requests with one key both try to insert the same state row; the loser's
    conflict makes the unit of work re-decide, and it then finds the winner's order. A
    retried request re-publishes what a crashed first attempt left in the outbox. If the
    broker is down after the commit, the order stands and the outbox sweeper publishes.
    """
    decisions: list[Placement] = []

    def decide(uow: UnitOfWork) -> Placement:
        existing = uow.load()
        if existing is None:
            agent.engine.start(uow, order.saga_data())
            decisions.append(Placement(created=True, conflict=False))
        else:
            conflict = existing["data"]["requestHash"] != order.request_hash
            decisions.append(Placement(created=False, conflict=conflict))
        return decisions[-1]

    try:
        agent.sagas.run(order.order_id, decide, inbox_id=None)
        if not decisions[-1].created:
            relay = agent.sagas.relay
            relay.dispatch(relay.pending(order.order_id))
    except PublishFailed as error:
        if not decisions:
            raise
        log.warning("order %s stored, publishing deferred to the sweeper: %s",
                    order.order_id, error)
    return decisions[-1]


@dataclass(frozen=True)
class OrderRecord:
    saga: SagaView
    times: list[datetime | None]
    """When each step-log entry was written, in the order of `saga.log`."""


def get_order(order_id: str, agent: OrdersAgent) -> OrderRecord | None:
    view = SagaEngine.view(agent.sagas.table, order_id)
    if view is None:
        return None
    # SagaView.log leaves out the time each entry was written; read it from the same rows.
    rows = agent.sagas.table.query_entities(
        f"PartitionKey eq @pk and {prefix_filter(LOG_PREFIX)}",
        parameters={"pk": table_key(order_id)}, select=["RowKey", "At"])
    times = [row.get("At") for row in sorted(rows, key=lambda row: str(row["RowKey"]))]
    return OrderRecord(view, times if len(times) == len(view.log) else [None] * len(view.log))


def handle_saga_event(event: Envelope, agent: OrdersAgent) -> Outcome[Any]:
    """A service reply, a step deadline or a fraud alert, applied to its order's saga."""
    if event.type in (REPLY, TIMEOUT):
        return agent.sagas.handle(event, agent.engine.handle,
                                    partition_key=str(event.data["sagaId"]))
    if event.type == fraud.ALERT_RAISED:
        return agent.sagas.handle(event, partial(_abort_for_fraud, engine=agent.engine),
                                    partition_key=str(event.data["orderId"]))
    raise InvalidEvent(f"the order saga does not handle {event.type}", reason="UnexpectedType")


def _abort_for_fraud(event: Envelope, uow: UnitOfWork, *, engine: SagaEngine) -> bool:
    if uow.load() is None:
        raise PoisonMessage(f"fraud alert {event.id}: no order {uow.partition_key}",
                            reason="UnknownOrder")
    reason = str(event.data.get("reason") or "fraud alert")
    return engine.abort(uow, f"fraud alert: {reason}", cause=event)


def handle_service_command(
    command: Envelope, delivery_count: int, agent: OrdersAgent
) -> Outcome[None]:
    """A simulated service performs an action once per ledger key and replies to the saga.

    The failure mode is decided before the unit of work: a flaky service raises here, so
    nothing is written and the broker redelivers.
    """
    action = ACTION_OF_TYPE.get(command.type)
    if action is None:
        raise InvalidEvent(f"no simulated service handles {command.type}",
                           reason="UnexpectedType")
    service = SERVICE_OF_ACTION[action]
    payload = command.data["payload"]
    switch = agent.switchboard.lookup(service, scopes(
        payload["orderId"], payload["card"], [item["sku"] for item in payload["items"]]))
    decided = answer(action, switch, delivery_count)
    ledger_key = {Service.PAYMENTS: payload["chargeId"],
                  Service.INVENTORY: payload["reservationId"],
                  Service.SHIPPING: payload["orderId"]}[service]
    return agent.ledgers[service].handle(
        command, partial(perform_action, action=action, decided=decided),
        partition_key=ledger_key,
    )


def perform_action(command: Envelope, uow: UnitOfWork, *, action: Action, decided: Answer
                   ) -> None:
    service = SERVICE_OF_ACTION[action]
    payload = command.data["payload"]
    record = uow.load() or {"status": "none", "amountCents": payload["amountCents"]}
    before = record["status"]
    succeeded, reason = LEDGER_RULES[service](action, record, decided, uow)
    uow.save(record)
    if service is Service.PAYMENTS and (before, record["status"]) == ("none", "charged"):
        _announce_charge(command, uow)
    late = decided.delay_seconds if succeeded and decided.succeeded else 0.0
    uow.emit(
        reply_for(command, succeeded=succeeded, reason=reason,
                  source=f"{SOURCE}/simulators/{service.value}"),
        destination=reply_destination(command),
        scheduled_at=uow.now() + timedelta(seconds=late) if late else None,
    )


def _announce_charge(command: Envelope, uow: UnitOfWork) -> None:
    """The charge goes onto the payment stream in the same transaction that records it."""
    payload = command.data["payload"]
    uow.emit(
        command.follow(
            orders.PAYMENT_CHARGED,
            {key: payload[key] for key in orders.PAYMENT_CHARGED_SCHEMA["required"]},
            source=f"{SOURCE}/simulators/payments", subject=payload["orderId"],
            partitionkey=payload["card"]),
        destination=entities.PAYMENTS_HUB,
    )


def _record_movement(uow: UnitOfWork, kind: str, amount_cents: int) -> None:
    """Every effect on money or stock is its own row, so tests and ops can count them."""
    uow.append(f"movement|{kind}|{uuid.uuid4()}", {"movement": kind, "amountCents": amount_cents})


Decision = tuple[bool, str | None]


def _payments(action: Action, record: dict[str, Any], decided: Answer, uow: UnitOfWork
              ) -> Decision:
    status = record["status"]
    if action is Action.CHARGE_PAYMENT:
        if status == "none":
            record["status"] = "charged" if decided.succeeded else "declined"
            if decided.succeeded:
                _record_movement(uow, "charge", record["amountCents"])
            return decided.succeeded, decided.reason
        if status == "charged":
            return True, None
        return False, f"charge is {status}"
    if status == "charged":
        record["status"] = "refunded"
        _record_movement(uow, "refund", record["amountCents"])
        return True, None
    if status == "none":
        # A refund that overtakes its charge voids it: the late charge is then refused.
        record["status"] = "voided"
    return True, None


def _inventory(action: Action, record: dict[str, Any], decided: Answer, uow: UnitOfWork
               ) -> Decision:
    status = record["status"]
    if action is Action.RESERVE_STOCK:
        if status == "none":
            record["status"] = "held" if decided.succeeded else "refused"
            if decided.succeeded:
                _record_movement(uow, "hold", 0)
            return decided.succeeded, decided.reason
        if status in ("held", "allocated"):
            return True, None
        return False, f"reservation is {status}"
    if action is Action.ALLOCATE_STOCK:
        if status == "held" and decided.succeeded:
            record["status"] = "allocated"
            return True, None
        if status == "allocated":
            return True, None
        return False, decided.reason or f"reservation is {status}"
    if status in ("held", "allocated"):
        record["status"] = "released"
        _record_movement(uow, "release", 0)
    elif status in ("none", "refused"):
        # A release that overtakes its reservation voids it: the late hold is then refused.
        record["status"] = "void"
    return True, None


def _shipping(action: Action, record: dict[str, Any], decided: Answer, uow: UnitOfWork
              ) -> Decision:
    status = record["status"]
    if status == "none":
        record["status"] = "dispatched" if decided.succeeded else "failed"
        if decided.succeeded:
            _record_movement(uow, "shipment", 0)
        return decided.succeeded, decided.reason
    return status == "dispatched", None if status == "dispatched" else "shipment failed"


LEDGER_RULES = {Service.PAYMENTS: _payments, Service.INVENTORY: _inventory,
                Service.SHIPPING: _shipping}
