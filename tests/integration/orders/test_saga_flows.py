"""The order saga on Azurite with its deliveries in the test's hands: the flows that need the
clock moved by hand (a reply long past its deadline, an alert while a step is held) or each
delivery's settlement. The flows that run in real time are on devstack's host
(`test_on_devstack.py`)."""

from __future__ import annotations

from datetime import timedelta

from agents.backbone import Settlement
from agents.orders import entities
from agents.orders.model import Service
from agents.orders.simulated.modes import FLAKY_FAILED_ATTEMPTS, Mode
from tests.integration.orders.stack import STEP_TIMEOUT, OrdersStack, order_body


def _statuses(order: dict) -> list[tuple[str, str]]:
    return [(entry["step"], entry["status"]) for entry in order["timeline"]]


def test_a_step_that_misses_its_deadline_is_compensated_and_its_late_reply_ignored(
        stack: OrdersStack) -> None:
    card = "tok-slow-gateway"
    stack.switch(Service.PAYMENTS, f"card:{card}", Mode.SLOW, slow_seconds=600)
    order_id = stack.place(order_body(card=card))["orderId"]
    stack.run()
    assert stack.order(order_id)["status"] == "running"
    stack.deliveries.advance(STEP_TIMEOUT + timedelta(seconds=1))
    stack.run()
    assert stack.order(order_id)["status"] == "compensated"
    stack.deliveries.advance(timedelta(seconds=600))
    stack.run()
    order = stack.order(order_id)
    assert order["status"] == "compensated"
    charges = stack.movements(Service.PAYMENTS, f"charge-{order_id}", "charge")
    refunds = stack.movements(Service.PAYMENTS, f"charge-{order_id}", "refund")
    assert charges == refunds == 1
    assert ("charge_payment", "timed_out") in _statuses(order)


def test_a_fraud_alert_while_the_charge_is_in_flight_compensates(stack: OrdersStack) -> None:
    card = "tok-under-review"
    stack.switch(Service.PAYMENTS, f"card:{card}", Mode.SLOW, slow_seconds=20)
    order_id = stack.place(order_body(card=card))["orderId"]
    stack.run()
    stack.raise_fraud_alert(order_id, "velocity 12 payments/min")
    stack.run()
    stack.deliveries.advance(timedelta(seconds=21))  # the charge's late reply: recorded only
    stack.run()
    order = stack.order(order_id)
    assert order["status"] == "compensated"
    assert "fraud alert" in order["failure"]["reason"]
    assert ("charge_payment", "late_success") in _statuses(order)
    assert stack.movements(Service.PAYMENTS, f"charge-{order_id}", "charge") == 1
    assert stack.movements(Service.PAYMENTS, f"charge-{order_id}", "refund") == 1


def test_a_fraud_alert_once_shipping_is_under_way_is_refused_and_the_order_ships(
        stack: OrdersStack) -> None:
    card = "tok-reviewed-late"
    stack.switch(Service.SHIPPING, f"card:{card}", Mode.SLOW, slow_seconds=20)
    order_id = stack.place(order_body(card=card))["orderId"]
    stack.run()
    stack.raise_fraud_alert(order_id, "velocity 12 payments/min")
    stack.run()
    stack.deliveries.advance(timedelta(seconds=21))
    stack.run()
    order = stack.order(order_id)
    assert order["status"] == "completed"
    assert order["failure"] is None
    assert ("ship_order", "abort_refused") in _statuses(order)
    assert stack.movements(Service.PAYMENTS, f"charge-{order_id}", "refund") == 0
    assert stack.movements(Service.SHIPPING, order_id, "shipment") == 1


def test_a_flaky_service_is_tried_again_later_and_the_order_completes(
        stack: OrdersStack) -> None:
    card = "tok-flaky"
    stack.switch(Service.PAYMENTS, f"card:{card}", Mode.FLAKY)
    order_id = stack.place(order_body(card=card))["orderId"]
    deliveries = stack.run()
    for _ in range(FLAKY_FAILED_ATTEMPTS):  # each attempt is put back for a second later
        assert stack.deliveries.advance_to_next_scheduled()
        deliveries += stack.run()
    payments = [(d.settlement, d.delivery_count) for d in deliveries
                if d.destination == entities.PAYMENTS_QUEUE]
    # No delivery is spent: each flaky attempt is a copy scheduled ahead (its own delivery 1).
    assert payments == [(Settlement.RESCHEDULED, 1), (Settlement.RESCHEDULED, 1),
                        (Settlement.COMPLETED, 1)]
    assert stack.order(order_id)["status"] == "completed"
    assert stack.movements(Service.PAYMENTS, f"charge-{order_id}", "charge") == 1
