"""The simulated payment gateway puts each charge on the payment stream with what the fraud
agent scores, the order's optional location included."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

from agents.backbone.envelope import Envelope
from agents.backbone.memory import MemoryStore
from agents.backbone.saga import SagaEngine
from agents.backbone.schemas import SchemaRegistry
from agents.backbone.unit_of_work import UnitOfWork
from agents.contracts import orders
from agents.orders import entities
from agents.orders.edge import place_order_request
from agents.orders.model import Action, command_type, order_saga
from agents.orders.simulated.handlers import perform_action
from agents.orders.simulated.modes import Answer

BODY = {"customerId": "c-1", "card": "tok-1",
        "items": [{"sku": "sku-1", "quantity": 1, "unitPriceCents": 900}]}
SYDNEY = {"country": "AU", "lat": -33.87, "lon": 151.21}


def charged(body: dict[str, object]) -> Envelope:
    """The `orders.payment.charged` event a successful charge of `body`'s order emits."""
    order = place_order_request(str(uuid.uuid4()), json.dumps(body).encode())
    schemas = SchemaRegistry(orders.SCHEMAS)
    SagaEngine(order_saga(timedelta(seconds=5)), registry=schemas)
    command = Envelope.new(
        command_type(Action.CHARGE_PAYMENT),
        {"sagaId": order.order_id, "step": "charge_payment", "phase": "action", "attempt": 1,
         "replyTo": entities.SAGA_QUEUE, "payload": order.saga_data()},
        source="/tests", subject=order.order_id, partitionkey=order.order_id)
    uow = UnitOfWork(MemoryStore(), f"charge-{order.order_id}", inbox_id=None,
                     registry=schemas)
    perform_action(command, uow, action=Action.CHARGE_PAYMENT, decided=Answer(True))
    [payment] = [row.envelope for row in uow.staged_outbox
                 if row.destination == entities.PAYMENTS_HUB]
    return payment


def test_a_charge_carries_the_orders_location_onto_the_payment_stream() -> None:
    payment = charged({**BODY, "location": SYDNEY})
    assert payment.type == orders.PAYMENT_CHARGED
    assert payment.data["location"] == SYDNEY
    assert payment.partitionkey == "tok-1"


def test_a_charge_without_a_location_sends_none() -> None:
    assert "location" not in charged(BODY).data
