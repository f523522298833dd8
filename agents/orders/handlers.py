"""Handlers: one per incoming message kind. Each opens a unit of work on one partition,
loads the aggregate, calls one domain method and commits state + inbox + outbox together.

No Azure Functions types here; `blueprint` translates triggers into these calls.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

from agents.backbone.envelope import Envelope
from agents.backbone.errors import InvalidEvent, PoisonMessage
from agents.backbone.processing import MessageProcessor, Outcome
from agents.backbone.unit_of_work import UnitOfWork
from agents.orders import entities
from agents.orders.edge import PlaceOrderRequest
from agents.orders.messages import (
    DEADLINE_TYPE,
    FRAUD_ALERT_TYPE,
    REPLY_OF_TYPE,
    SOURCE,
    STEP_OF_COMMAND_TYPE,
    command_type,
    queue_of,
    reply_type,
)
from agents.orders.model import Order, Reply, Step, StepCommand
from agents.orders.simulators import (
    SERVICE_OF_STEP,
    Answer,
    Service,
    Switchboard,
    answer,
    scopes,
)


@dataclass(frozen=True)
class OrdersContext:
    """The adapters the handlers use, wired once by `bootstrap` (tests wire their own).

    One `MessageProcessor` per table: it runs a handler in a unit of work on one partition
    and relays the outbox before the trigger settles the message.
    """

    sagas: MessageProcessor
    ledgers: dict[Service, MessageProcessor]
    switchboard: Switchboard
    step_timeout: timedelta


@dataclass(frozen=True)
class Placement:
    order: dict[str, Any]
    created: bool
    conflict: bool


def place_order(request: PlaceOrderRequest, context: OrdersContext) -> Outcome[Placement]:
    """Create the saga for a new Idempotency-Key, or find the order it already named.

    Two racing requests with one key both try to insert the same state row; the loser's
    conflict makes the unit of work re-decide, and it then finds the winner's order. A
    retried request re-publishes what a crashed first attempt left in the outbox.
    """

    def decide(uow: UnitOfWork) -> Placement:
        existing = uow.load()
        if existing is not None:
            conflict = existing["requestHash"] != request.request_hash
            return Placement(existing, created=False, conflict=conflict)
        order = Order.place(request.order_id, request.customer_id, request.items, request.card,
                            request.request_hash)
        _stage(uow, order, None, context.step_timeout)
        return Placement(order.to_state(), created=True, conflict=False)

    outcome = context.sagas.run(request.order_id, decide, inbox_id=None)
    if outcome.result is not None and not outcome.result.created:
        relay = context.sagas.relay
        relay.dispatch(relay.pending(request.order_id))
    return outcome


def get_order(order_id: str, context: OrdersContext) -> dict[str, Any] | None:
    return UnitOfWork(context.sagas.table, order_id, inbox_id=None).load()


def handle_saga_event(event: Envelope, context: OrdersContext) -> Outcome[None]:
    """A service reply, a step deadline or a fraud alert, applied to its order's saga."""
    return context.sagas.handle(
        event, partial(apply_to_saga, step_timeout=context.step_timeout),
        partition_key=str(event.data["orderId"]),
    )


def apply_to_saga(event: Envelope, uow: UnitOfWork, *, step_timeout: timedelta) -> None:
    state = uow.load()
    if state is None:
        raise PoisonMessage(f"{event.type} {event.id}: no order {uow.partition_key}",
                            reason="UnknownOrder")
    order = Order.from_state(state)
    if event.type == DEADLINE_TYPE:
        order.handle_deadline(Step(event.data["step"]), int(event.data["sequence"]))
    elif event.type == FRAUD_ALERT_TYPE:
        order.handle_fraud_alert(str(event.data.get("reason", "fraud alert")))
    elif event.type in REPLY_OF_TYPE:
        order.handle_reply(REPLY_OF_TYPE[event.type], str(event.data.get("detail", "")))
    else:
        raise InvalidEvent(f"the saga does not handle {event.type}", reason="UnexpectedType")
    _stage(uow, order, event, step_timeout)


def handle_service_command(
    command: Envelope, delivery_count: int, context: OrdersContext
) -> Outcome[None]:
    """A simulated service performs a step once per ledger key and replies to the saga.

    The failure mode is decided before the unit of work: a flaky service raises here, so
    nothing is written and the broker redelivers.
    """
    step = STEP_OF_COMMAND_TYPE.get(command.type)
    if step is None:
        raise InvalidEvent(f"no simulated service handles {command.type}",
                           reason="UnexpectedType")
    service = SERVICE_OF_STEP[step]
    data = command.data
    switch = context.switchboard.lookup(
        service, scopes(data["orderId"], data["card"], [item["sku"] for item in data["items"]])
    )
    decided = answer(step, switch, delivery_count)
    ledger_key = {Service.PAYMENTS: data["chargeId"], Service.INVENTORY: data["reservationId"],
                  Service.SHIPPING: data["orderId"]}[service]
    return context.ledgers[service].handle(
        command, partial(perform_step, step=step, decided=decided), partition_key=ledger_key
    )


def perform_step(command: Envelope, uow: UnitOfWork, *, step: Step, decided: Answer) -> None:
    service = SERVICE_OF_STEP[step]
    data = command.data
    record = uow.load() or {"status": "none", "amountCents": data["amountCents"]}
    reply, detail = LEDGER_RULES[service](step, record, decided, uow)
    uow.save(record)
    delay = decided.delay_seconds if reply is decided.reply else 0.0
    uow.emit(
        command.follow(
            reply_type(reply),
            {"orderId": data["orderId"], "attempt": data["attempt"], "detail": detail},
            source=f"{SOURCE}/simulators/{service.value}",
        ),
        destination=entities.SAGA_QUEUE,
        scheduled_at=uow.now() + timedelta(seconds=delay) if delay else None,
    )


def _stage(uow: UnitOfWork, order: Order, cause: Envelope | None, step_timeout: timedelta
           ) -> None:
    uow.save(order.to_state())
    for item in order.collect():
        if isinstance(item, StepCommand):
            uow.emit(
                _event(cause, command_type(item.step), {**item.data, "attempt": item.attempt},
                       order.order_id),
                destination=queue_of(item.step),
            )
        else:
            deadline = {"orderId": item.order_id, "step": item.step.value,
                        "sequence": item.sequence}
            uow.emit(_event(cause, DEADLINE_TYPE, deadline, order.order_id),
                     destination=entities.SAGA_QUEUE,
                     scheduled_at=uow.now() + step_timeout)


def _event(cause: Envelope | None, event_type: str, data: dict[str, Any], order_id: str
           ) -> Envelope:
    if cause is None:
        return Envelope.new(event_type, data, source=SOURCE, subject=order_id,
                            correlationid=order_id)
    return cause.follow(event_type, data, source=SOURCE, subject=order_id, partitionkey=order_id)


def _record_movement(uow: UnitOfWork, kind: str, amount_cents: int) -> None:
    """Every effect on money or stock is its own row, so tests can count them."""
    uow.append(f"movement|{kind}|{uuid.uuid4()}", {"movement": kind, "amountCents": amount_cents})


def _payments(step: Step, record: dict[str, Any], decided: Answer, uow: UnitOfWork
              ) -> tuple[Reply, str]:
    status = record["status"]
    if step is Step.CHARGE_PAYMENT:
        if status == "none":
            charged = decided.reply is Reply.PAYMENT_CHARGED
            record["status"] = "charged" if charged else "declined"
            if charged:
                _record_movement(uow, "charge", record["amountCents"])
            return decided.reply, decided.detail
        if status == "charged":
            return Reply.PAYMENT_CHARGED, "already charged"
        return Reply.PAYMENT_DECLINED, f"charge is {status}"
    if status == "charged":
        record["status"] = "refunded"
        _record_movement(uow, "refund", record["amountCents"])
        return Reply.PAYMENT_REFUNDED, "refunded"
    if status == "none":
        # A refund that overtakes its charge voids it: the late charge is then refused.
        record["status"] = "voided"
        return Reply.PAYMENT_REFUNDED, "nothing charged; charge voided"
    return Reply.PAYMENT_REFUNDED, f"nothing to refund: charge is {status}"


def _inventory(step: Step, record: dict[str, Any], decided: Answer, uow: UnitOfWork
               ) -> tuple[Reply, str]:
    status = record["status"]
    if step is Step.RESERVE_STOCK:
        if status == "none":
            held = decided.reply is Reply.STOCK_RESERVED
            record["status"] = "held" if held else "refused"
            if held:
                _record_movement(uow, "hold", 0)
            return decided.reply, decided.detail
        if status in ("held", "allocated"):
            return Reply.STOCK_RESERVED, f"already {status}"
        return Reply.STOCK_UNAVAILABLE, f"reservation is {status}"
    if step is Step.ALLOCATE_STOCK:
        if status == "held" and decided.reply is Reply.STOCK_ALLOCATED:
            record["status"] = "allocated"
            return Reply.STOCK_ALLOCATED, ""
        if status == "allocated":
            return Reply.STOCK_ALLOCATED, "already allocated"
        return Reply.STOCK_ALLOCATION_FAILED, decided.detail or f"reservation is {status}"
    if status in ("held", "allocated"):
        record["status"] = "released"
        _record_movement(uow, "release", 0)
        return Reply.STOCK_RELEASED, f"released from {status}"
    if status in ("none", "refused"):
        # A release that overtakes its reservation voids it: the late hold is then refused.
        record["status"] = "void"
        return Reply.STOCK_RELEASED, "nothing held; reservation voided"
    return Reply.STOCK_RELEASED, f"nothing to release: reservation is {status}"


def _shipping(step: Step, record: dict[str, Any], decided: Answer, uow: UnitOfWork
              ) -> tuple[Reply, str]:
    status = record["status"]
    if status == "none":
        shipped = decided.reply is Reply.SHIPMENT_DISPATCHED
        record["status"] = "dispatched" if shipped else "failed"
        if shipped:
            _record_movement(uow, "shipment", 0)
        return decided.reply, decided.detail
    if status == "dispatched":
        return Reply.SHIPMENT_DISPATCHED, "already dispatched"
    return Reply.SHIPMENT_FAILED, "shipment already failed"


LEDGER_RULES = {Service.PAYMENTS: _payments, Service.INVENTORY: _inventory,
                Service.SHIPPING: _shipping}
