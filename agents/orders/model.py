"""The order saga: reserve stock -> charge payment -> allocate stock -> ship.

A reservation is only a hold until allocation confirms it, so inventory can still run out
after the charge. Reserving and charging are compensable (release, refund); allocation is the
pivot: once stock is allocated the order is going out; shipping is retriable (a parcel is not
recalled). A refusal, a missed deadline of a compensable step or a fraud alert before the
pivot compensates what may have taken effect in reverse order: refund the charge, then
release the stock. A missed deadline of allocation or shipping re-sends the same command
until the service answers. The backbone's `SagaEngine` runs the definition; this module says
what the order saga is.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any, Final

from agents.backbone.saga import SagaDefinition, SagaStep, StepKind
from agents.contracts.orders import LOCATION_SCHEMA
from agents.orders import entities

SOURCE: Final = "/agents/orders"
SAGA_NAME: Final = "orders.order"


class Service(StrEnum):
    INVENTORY = "inventory"
    PAYMENTS = "payments"
    SHIPPING = "shipping"


class Action(StrEnum):
    """What a service is asked to do: the saga's steps and their compensations."""

    RESERVE_STOCK = "reserve-stock"
    CHARGE_PAYMENT = "charge-payment"
    ALLOCATE_STOCK = "allocate-stock"
    SHIP_ORDER = "ship-order"
    REFUND_PAYMENT = "refund-payment"
    RELEASE_STOCK = "release-stock"


SERVICE_OF_ACTION = {
    Action.RESERVE_STOCK: Service.INVENTORY,
    Action.ALLOCATE_STOCK: Service.INVENTORY,
    Action.RELEASE_STOCK: Service.INVENTORY,
    Action.CHARGE_PAYMENT: Service.PAYMENTS,
    Action.REFUND_PAYMENT: Service.PAYMENTS,
    Action.SHIP_ORDER: Service.SHIPPING,
}
QUEUE_OF_SERVICE = {
    Service.INVENTORY: entities.INVENTORY_QUEUE,
    Service.PAYMENTS: entities.PAYMENTS_QUEUE,
    Service.SHIPPING: entities.SHIPPING_QUEUE,
}


def command_type(action: Action) -> str:
    return f"orders.{SERVICE_OF_ACTION[action].value}.{action.value}"


ACTION_OF_TYPE = {command_type(action): action for action in Action}


@dataclass(frozen=True)
class LineItem:
    sku: str
    quantity: int
    unit_price_cents: int


@dataclass(frozen=True)
class PointOfSale:
    """Where the card is used, if the order says: the charge puts it on the payment stream."""

    country: str
    lat: float
    lon: float


@dataclass(frozen=True)
class Order:
    """What the saga carries: enough for every service to act without a lookup."""

    order_id: str
    customer_id: str
    items: tuple[LineItem, ...]
    card: str
    request_hash: str
    location: PointOfSale | None = None

    @property
    def amount_cents(self) -> int:
        return sum(item.quantity * item.unit_price_cents for item in self.items)

    def saga_data(self) -> dict[str, Any]:
        return {
            "orderId": self.order_id, "customerId": self.customer_id, "card": self.card,
            "items": [asdict(item) for item in self.items], "amountCents": self.amount_cents,
            # One charge and one reservation per order: the services are idempotent per id.
            "chargeId": f"charge-{self.order_id}",
            "reservationId": f"reservation-{self.order_id}",
            "requestHash": self.request_hash,
            **({} if self.location is None else {"location": asdict(self.location)}),
        }


_ID = {"type": "string", "minLength": 1, "maxLength": 100}
ORDER_DATA_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["orderId", "customerId", "items", "amountCents", "card", "chargeId",
                 "reservationId"],
    "properties": {
        "orderId": _ID, "customerId": _ID, "card": _ID, "chargeId": _ID, "reservationId": _ID,
        "amountCents": {"type": "integer", "minimum": 0}, "location": LOCATION_SCHEMA,
        "items": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["sku", "quantity", "unit_price_cents"],
            "properties": {"sku": _ID, "quantity": {"type": "integer", "minimum": 1},
                           "unit_price_cents": {"type": "integer", "minimum": 0}}}},
    },
}


def _step(name: str, action: Action, kind: StepKind, compensation: Action | None,
          timeout: timedelta) -> SagaStep:
    return SagaStep(
        name=name, action=command_type(action),
        destination=QUEUE_OF_SERVICE[SERVICE_OF_ACTION[action]], kind=kind,
        compensation=command_type(compensation) if compensation else None,
        timeout=timeout, payload_schema=ORDER_DATA_SCHEMA,
    )


def order_saga(step_timeout: timedelta, *, compensation_backoff: timedelta = timedelta(seconds=2)
               ) -> SagaDefinition:
    """The order saga. Allocation is the pivot rather than shipping: it has no compensation
    of its own (releasing the reservation frees allocated stock too), and it is the last step
    that may still say no for a business reason (out of stock), so a definite refusal there
    compensates, while shipping after it only ever goes forward."""
    return SagaDefinition(
        name=SAGA_NAME,
        source=SOURCE,
        reply_to=entities.SAGA_QUEUE,
        # No alert entity exists yet: alerts come back to the saga queue, whose trigger logs them.
        alert_destination=entities.SAGA_QUEUE,
        steps=(
            _step("reserve_stock", Action.RESERVE_STOCK, StepKind.COMPENSABLE,
                  Action.RELEASE_STOCK, step_timeout),
            _step("charge_payment", Action.CHARGE_PAYMENT, StepKind.COMPENSABLE,
                  Action.REFUND_PAYMENT, step_timeout),
            _step("allocate_stock", Action.ALLOCATE_STOCK, StepKind.PIVOT, None, step_timeout),
            _step("ship_order", Action.SHIP_ORDER, StepKind.RETRIABLE, None, step_timeout),
        ),
        compensation_backoff=compensation_backoff,
    )
