"""The simulated services' handlers: each performs a saga command once per ledger key
(charge id, reservation id, order id), records every effect as a movement row and replies to
the saga, all in one unit of work. No Azure Functions types here.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from agents.backbone.envelope import Envelope
from agents.backbone.errors import InvalidEvent
from agents.backbone.processing import Closeable, Composed, MessageProcessor, Outcome
from agents.backbone.saga import reply_destination, reply_for
from agents.backbone.schemas import SchemaRegistry
from agents.backbone.unit_of_work import UnitOfWork
from agents.contracts import orders
from agents.orders import entities
from agents.orders.model import ACTION_OF_TYPE, SERVICE_OF_ACTION, SOURCE, Action, Service
from agents.orders.simulated.modes import Answer, Switchboard, answer, scopes

if TYPE_CHECKING:
    from agents.backbone.settlement import ScheduledRetry


@dataclass(frozen=True)
class SimulatedServices(Composed):
    """The composed simulated services that `simulated.bootstrap` returns and their Blueprint
    keeps: one ledger processor per service, the failure-mode switches, and the retry that
    puts a command back on its service's queue for later."""

    schemas: SchemaRegistry
    ledgers: dict[Service, MessageProcessor]
    switchboard: Switchboard
    retries: Mapping[Service, ScheduledRetry] = field(default_factory=dict)
    """Per service queue; a service without one abandons a flaky attempt instead (plain
    redelivery, which its attempt count does not see)."""
    owned: Sequence[Closeable] = ()
    """The clients `bootstrap` opened, closed after the relays; `build` leaves the adapters
    it was given to their owner."""

    @property
    def processors(self) -> list[MessageProcessor]:
        return list(self.ledgers.values())



def handle_service_command(
    command: Envelope, attempt: int, services: SimulatedServices
) -> Outcome[None]:
    """A simulated service performs an action once per ledger key and replies to the saga.

    The failure mode is decided before the unit of work: a flaky service raises `RetryLater`
    here, so nothing is written and the trigger puts the command back for later.
    """
    action = ACTION_OF_TYPE.get(command.type)
    if action is None:
        raise InvalidEvent(f"no simulated service handles {command.type}",
                           reason="UnexpectedType")
    service = SERVICE_OF_ACTION[action]
    payload = command.data["payload"]
    switch = services.switchboard.lookup(service, scopes(
        payload["orderId"], payload["card"], [item["sku"] for item in payload["items"]]))
    decided = answer(action, switch, attempt)
    ledger_key = {Service.PAYMENTS: payload["chargeId"],
                  Service.INVENTORY: payload["reservationId"],
                  Service.SHIPPING: payload["orderId"]}[service]
    return services.ledgers[service].handle(
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
            # Every field the contract declares that the order carries (location is optional).
            {key: payload[key] for key in orders.PAYMENT_CHARGED_SCHEMA["properties"]
             if key in payload},
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
