"""Fault injection on the order saga: duplicate storms, ETag races, a crash between commit and
dispatch, and poison messages; invariants checked after each."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from agents.backbone import (
    Envelope,
    OutboxRow,
    PublishFailed,
    SagaEngine,
    SchemaRegistry,
    UnitOfWork,
)
from agents.orders import blueprint, entities
from agents.orders.model import Service
from agents.orders.simulated.modes import Mode
from tests.integration.backbone.broker import BrokerPublisher, InMemoryBroker
from tests.integration.orders.stack import (
    STEP_TIMEOUT,
    OrdersStack,
    build_stack,
    order_body,
)


def _charges_minus_refunds(stack: OrdersStack, order_id: str) -> int:
    key = f"charge-{order_id}"
    return (stack.movements(Service.PAYMENTS, key, "charge")
            - stack.movements(Service.PAYMENTS, key, "refund"))


def test_every_message_delivered_three_times_has_one_effect(
        storage_connection_string: str) -> None:
    broker = InMemoryBroker(max_delivery_count=5, copies=3)
    with build_stack(storage_connection_string, broker) as stack:
        order_id = stack.place(order_body())["orderId"]
        deliveries = stack.host.drain()
        per_message = Counter(d.message_id for d in deliveries if d.settlement == "completed")
        assert set(per_message.values()) == {3}
        assert stack.order(order_id)["status"] == "completed"
        assert stack.movements(Service.INVENTORY, f"reservation-{order_id}", "hold") == 1
        assert stack.movements(Service.PAYMENTS, f"charge-{order_id}", "charge") == 1
        assert stack.movements(Service.SHIPPING, order_id, "shipment") == 1
        assert len(broker.available(entities.PAYMENTS_HUB)) == 1


class RacingEngine(SagaEngine):
    """Holds the first two saga decisions at a barrier after loading the saga, so both read
    the same ETag and exactly one commit can win."""

    def __init__(self, engine: SagaEngine, schemas: SchemaRegistry) -> None:
        super().__init__(engine.definition, registry=schemas)
        self.barrier = threading.Barrier(2, timeout=30)
        self.decisions = 0
        self._lock = threading.Lock()

    def _meet(self, uow: UnitOfWork) -> None:
        uow.load()
        with self._lock:
            self.decisions += 1
            wait = self.decisions <= 2
        if wait:
            self.barrier.wait()

    def handle(self, event: Envelope, uow: UnitOfWork) -> str:
        self._meet(uow)
        return super().handle(event, uow)

    def abort(self, uow: UnitOfWork, reason: str, *, cause: Envelope) -> bool:
        self._meet(uow)
        return super().abort(uow, reason, cause=cause)


def test_two_handlers_racing_on_one_saga_one_wins_the_other_retries_on_412(
        storage_connection_string: str) -> None:
    built = build_stack(storage_connection_string, InMemoryBroker(max_delivery_count=5))
    racing = RacingEngine(built.agent.engine, built.agent.schemas)
    with built.with_agent(replace(built.agent, engine=racing)) as stack:
        _race(stack, racing)


def _race(stack: OrdersStack, racing: RacingEngine) -> None:
    order_id = stack.place(order_body())["orderId"]
    assert stack.host.deliver_one(entities.INVENTORY_QUEUE) is not None
    stack.raise_fraud_alert(order_id, "card testing pattern")
    racers = [threading.Thread(target=stack.host.deliver_one, args=(entity,))
              for entity in (entities.SAGA_QUEUE, entities.FRAUD_ALERTS_TOPIC)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(timeout=60)
    assert [d.settlement for d in stack.host.deliveries[-2:]] == ["completed", "completed"]
    # Both read one ETag; the loser's If-Match commit failed (412) and it decided again.
    assert racing.decisions == 3
    stack.host.drain()
    order = stack.order(order_id)
    assert order["status"] == "compensated"
    assert "fraud alert" in order["failure"]["reason"]
    assert stack.movements(Service.INVENTORY, f"reservation-{order_id}", "release") == 1
    assert _charges_minus_refunds(stack, order_id) == 0


class CrashingPublisher:
    """Crashes once when publishing to `destination`: after sending (before the rows are
    marked dispatched) or before sending anything."""

    def __init__(self, inner: BrokerPublisher, destination: str, *, after_send: bool) -> None:
        self.inner = inner
        self.destination = destination
        self.after_send = after_send
        self.crashed = False

    def publish(self, rows: Sequence[OutboxRow]) -> None:
        hit = not self.crashed and any(r.destination == self.destination for r in rows)
        if hit and not self.after_send:
            self.crashed = True
            raise PublishFailed("injected crash before send")
        self.inner.publish(rows)
        if hit:
            self.crashed = True
            raise PublishFailed("injected crash after send, before marking dispatched")


@pytest.mark.parametrize("after_send", [True, False], ids=["after-send", "before-send"])
def test_a_crash_between_commit_and_dispatch_is_healed_by_redelivery(
        storage_connection_string: str, after_send: bool) -> None:
    broker = InMemoryBroker(max_delivery_count=5)
    crashing = CrashingPublisher(BrokerPublisher(broker), entities.PAYMENTS_QUEUE,
                                 after_send=after_send)
    with build_stack(storage_connection_string, broker, crashing) as stack:
        order_id = stack.place(order_body())["orderId"]
        deliveries = stack.host.drain()
        saga = [d.settlement for d in deliveries if d.queue == entities.SAGA_QUEUE]
        assert crashing.crashed
        assert saga[:2] == ["abandoned", "completed"]
        assert broker.queue(entities.PAYMENTS_QUEUE).sent == 1
        assert stack.order(order_id)["status"] == "completed"
        assert stack.movements(Service.PAYMENTS, f"charge-{order_id}", "charge") == 1


def _raw(stack: OrdersStack, entity: str, body: bytes, properties: dict[str, Any]) -> None:
    from azure.servicebus import ServiceBusMessage

    stack.broker.send(entity, ServiceBusMessage(body, message_id=f"bad-{len(body)}-{entity}",
                                                application_properties=properties))


POISON = [
    (entities.SAGA_QUEUE, b"{not json", "InvalidEncoding"),
    (entities.SAGA_QUEUE, b'{"hello": "world"}', "NotACloudEvent"),
    (entities.SAGA_QUEUE,
     Envelope.new("orders.unheard-of", {}, source="/x", subject="o").to_json().encode(),
     "UnknownEventType"),
    (entities.SAGA_QUEUE,
     Envelope.new("backbone.saga.reply", {"step": "charge_payment"}, source="/x",
                  subject="o").to_json().encode(), "SchemaViolation"),
    (entities.PAYMENTS_QUEUE,
     Envelope.new("orders.payments.charge-payment",
                  {"sagaId": "o", "step": "charge_payment", "phase": "action", "attempt": 1,
                   "replyTo": "orders-saga", "payload": {"orderId": "o"}},
                  source="/x", subject="o").to_json().encode(), "SchemaViolation"),
]


@pytest.mark.parametrize(("entity", "body", "reason"), POISON,
                         ids=[f"{e}-{r}" for e, _, r in POISON])
def test_an_invalid_message_is_dead_lettered_at_once_with_its_reason_and_writes_nothing(
        stack: OrdersStack, entity: str, body: bytes, reason: str) -> None:
    order_id = stack.place(order_body())["orderId"]
    stack.host.drain()
    before = stack.snapshot()
    _raw(stack, entity, body, {})
    deliveries = stack.host.drain()
    assert [(d.settlement, d.delivery_count) for d in deliveries] == [("dead-lettered", 1)]
    dead = stack.broker.dead_letters(entity)
    assert [m.dead_letter_reason for m in dead] == [reason]
    assert dead[0].dead_letter_error_description
    assert stack.snapshot() == before
    assert stack.order(order_id)["status"] == "completed"


def test_an_order_stored_while_the_broker_is_down_is_published_by_the_sweeper(
        storage_connection_string: str, monkeypatch: pytest.MonkeyPatch) -> None:
    broker = InMemoryBroker(max_delivery_count=5)
    crashing = CrashingPublisher(BrokerPublisher(broker), entities.INVENTORY_QUEUE,
                                 after_send=False)
    with build_stack(storage_connection_string, broker, crashing) as stack:
        order_id = stack.place(order_body())["orderId"]
        assert broker.available(entities.INVENTORY_QUEUE) == []
        monkeypatch.setattr(blueprint, "SWEEP_AFTER", timedelta(0))
        stack.host.functions["orders_outbox_sweeper"].get_user_function()(None)
        stack.host.drain()
        assert stack.order(order_id)["status"] == "completed"
        assert stack.movements(Service.INVENTORY, f"reservation-{order_id}", "hold") == 1


def test_a_shipping_command_failing_every_delivery_is_dead_lettered_then_sent_again(
        storage_connection_string: str) -> None:
    broker = InMemoryBroker(max_delivery_count=2)  # FLAKY fails the first two deliveries
    with build_stack(storage_connection_string, broker) as stack:
        stack.switch(Service.SHIPPING, "card:tok-courier-down", Mode.FLAKY)
        order_id = stack.place(order_body(card="tok-courier-down"))["orderId"]
        deliveries = stack.host.drain()
        shipping = [(d.settlement, d.delivery_count) for d in deliveries
                    if d.queue == entities.SHIPPING_QUEUE]
        assert shipping == [("abandoned", 1), ("abandoned", 2)]
        (dead,) = broker.dead_letters(entities.SHIPPING_QUEUE)
        assert dead.dead_letter_reason == "MaxDeliveryCountExceeded"
        stack.switch(Service.SHIPPING, "card:tok-courier-down", Mode.NORMAL)  # courier back
        # Shipping is past the point of no return: at its deadline it is in doubt, and the
        # same command goes out again after the backoff instead of refunding.
        broker.advance(STEP_TIMEOUT + timedelta(seconds=1))
        stack.host.drain()
        broker.advance(timedelta(seconds=2))
        stack.host.drain()
        order = stack.order(order_id)
        assert order["status"] == "completed"
        assert _charges_minus_refunds(stack, order_id) == 1
        assert stack.movements(Service.SHIPPING, order_id, "shipment") == 1
