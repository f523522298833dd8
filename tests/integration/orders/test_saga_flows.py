"""The order saga end to end through the registered functions, Azurite and the broker."""

from __future__ import annotations

from datetime import timedelta

from agents.orders import entities
from agents.orders.model import Service
from agents.orders.simulated.modes import Mode
from tests.integration.orders.stack import STEP_TIMEOUT, OrdersStack, order_body


def _statuses(order: dict) -> list[tuple[str, str]]:
    return [(entry["step"], entry["status"]) for entry in order["timeline"]]


def test_happy_path_completes_with_one_hold_one_charge_one_shipment(stack: OrdersStack) -> None:
    order_id = stack.place(order_body())["orderId"]
    stack.host.drain()
    order = stack.order(order_id)
    assert order["status"] == "completed"
    assert stack.movements(Service.INVENTORY, f"reservation-{order_id}", "hold") == 1
    assert stack.movements(Service.PAYMENTS, f"charge-{order_id}", "charge") == 1
    assert stack.movements(Service.SHIPPING, order_id, "shipment") == 1
    assert ("ship_order", "succeeded") in _statuses(order)


def test_a_declined_charge_is_not_on_the_payment_stream(stack: OrdersStack) -> None:
    stack.switch(Service.PAYMENTS, "card:tok-refused", Mode.DECLINE)
    stack.place(order_body(card="tok-refused"))
    stack.host.drain()
    assert stack.broker.available(entities.PAYMENTS_HUB) == []


def test_out_of_stock_after_charge_refunds_releases_and_compensates(stack: OrdersStack) -> None:
    stack.switch(Service.INVENTORY, "sku:late-sku", Mode.OUT_OF_STOCK_AFTER_CHARGE)
    order_id = stack.place(order_body(sku="late-sku"))["orderId"]
    stack.host.drain()
    order = stack.order(order_id)
    assert order["status"] == "compensated"
    assert stack.movements(Service.PAYMENTS, f"charge-{order_id}", "charge") == 1
    assert stack.movements(Service.PAYMENTS, f"charge-{order_id}", "refund") == 1
    assert stack.movements(Service.INVENTORY, f"reservation-{order_id}", "release") == 1
    compensations = [e["step"] for e in order["timeline"]
                     if e["phase"] == "compensation" and e["status"] == "compensated"]
    assert compensations == ["charge_payment", "reserve_stock"]


def test_payment_decline_releases_stock_and_charges_nothing(stack: OrdersStack) -> None:
    stack.switch(Service.PAYMENTS, "card:tok-declined", Mode.DECLINE)
    order_id = stack.place(order_body(card="tok-declined"))["orderId"]
    stack.host.drain()
    assert stack.order(order_id)["status"] == "compensated"
    assert stack.movements(Service.PAYMENTS, f"charge-{order_id}", "charge") == 0
    assert stack.movements(Service.INVENTORY, f"reservation-{order_id}", "release") == 1


def test_shipping_failure_refunds_and_releases(stack: OrdersStack) -> None:
    card = "tok-ship-fails"
    stack.switch(Service.SHIPPING, f"card:{card}", Mode.FAIL)
    order_id = stack.place(order_body(card=card))["orderId"]
    stack.host.drain()
    assert stack.order(order_id)["status"] == "compensated"
    assert stack.movements(Service.PAYMENTS, f"charge-{order_id}", "refund") == 1
    assert stack.movements(Service.INVENTORY, f"reservation-{order_id}", "release") == 1
    assert stack.movements(Service.SHIPPING, order_id, "shipment") == 0


def test_a_step_that_misses_its_deadline_is_compensated_and_its_late_reply_ignored(
        stack: OrdersStack) -> None:
    card = "tok-slow-gateway"
    stack.switch(Service.PAYMENTS, f"card:{card}", Mode.SLOW, slow_seconds=600)
    order_id = stack.place(order_body(card=card))["orderId"]
    stack.host.drain()
    assert stack.order(order_id)["status"] == "running"
    stack.broker.advance(STEP_TIMEOUT + timedelta(seconds=1))
    stack.host.drain()
    assert stack.order(order_id)["status"] == "compensated"
    stack.broker.advance(timedelta(seconds=600))
    stack.host.drain()
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
    stack.host.drain()
    stack.raise_fraud_alert(order_id, "velocity 12 payments/min")
    stack.host.drain()
    stack.broker.advance(timedelta(seconds=21))  # the charge's late reply: recorded only
    stack.host.drain()
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
    stack.host.drain()
    stack.raise_fraud_alert(order_id, "velocity 12 payments/min")
    stack.host.drain()
    stack.broker.advance(timedelta(seconds=21))
    stack.host.drain()
    order = stack.order(order_id)
    assert order["status"] == "completed"
    assert order["failure"] is None
    assert ("ship_order", "abort_refused") in _statuses(order)
    assert stack.movements(Service.PAYMENTS, f"charge-{order_id}", "refund") == 0
    assert stack.movements(Service.SHIPPING, order_id, "shipment") == 1


def test_a_flaky_service_is_retried_by_redelivery_and_the_order_completes(
        stack: OrdersStack) -> None:
    card = "tok-flaky"
    stack.switch(Service.PAYMENTS, f"card:{card}", Mode.FLAKY)
    order_id = stack.place(order_body(card=card))["orderId"]
    deliveries = stack.host.drain()
    payments = [d for d in deliveries if d.queue == "orders-payments"]
    assert [d.settlement for d in payments] == ["abandoned", "abandoned", "completed"]
    assert stack.order(order_id)["status"] == "completed"
    assert stack.movements(Service.PAYMENTS, f"charge-{order_id}", "charge") == 1
