"""Fault injection on the order saga: duplicate storms, ETag races, a crash between commit and
dispatch, and poison messages; invariants checked after each."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta

import pytest

from agents.backbone import (
    Envelope,
    OutboxRow,
    Publisher,
    PublishFailed,
    SagaEngine,
    SchemaRegistry,
    Settlement,
    UnitOfWork,
)
from agents.orders import blueprint, entities
from agents.orders.model import Service
from agents.orders.simulated.modes import Mode
from tests.integration.backbone.deliveries import Deliveries
from tests.integration.orders.stack import (
    MAX_DELIVERY_COUNT,
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
    stack = build_stack(storage_connection_string,
                        Deliveries(max_deliveries=MAX_DELIVERY_COUNT, copies=3))
    order_id = stack.place(order_body())["orderId"]
    deliveries = stack.run()
    per_message = Counter(d.message_id for d in deliveries
                          if d.settlement is Settlement.COMPLETED)
    assert set(per_message.values()) == {3}
    assert stack.order(order_id)["status"] == "completed"
    assert stack.movements(Service.INVENTORY, f"reservation-{order_id}", "hold") == 1
    assert stack.movements(Service.PAYMENTS, f"charge-{order_id}", "charge") == 1
    assert stack.movements(Service.SHIPPING, order_id, "shipment") == 1
    assert len(stack.deliveries.sent[entities.PAYMENTS_HUB]) == 1


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
    built = build_stack(storage_connection_string, Deliveries(max_deliveries=MAX_DELIVERY_COUNT))
    racing = RacingEngine(built.agent.engine, built.agent.schemas)
    _race(built.with_agent(replace(built.agent, engine=racing)), racing)


def _race(stack: OrdersStack, racing: RacingEngine) -> None:
    order_id = stack.place(order_body())["orderId"]
    assert stack.deliver(entities.INVENTORY_QUEUE) is not None
    stack.raise_fraud_alert(order_id, "card testing pattern")
    racers = [threading.Thread(target=stack.deliver, args=(entity,))
              for entity in (entities.SAGA_QUEUE, entities.FRAUD_ALERTS_TOPIC)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(timeout=60)
    assert [d.settlement for d in stack.deliveries.delivered[-2:]] == [
        Settlement.COMPLETED, Settlement.COMPLETED]
    # Both read one ETag; the loser's If-Match commit failed (412) and it decided again.
    assert racing.decisions == 3
    stack.run()
    order = stack.order(order_id)
    assert order["status"] == "compensated"
    assert "fraud alert" in order["failure"]["reason"]
    assert stack.movements(Service.INVENTORY, f"reservation-{order_id}", "release") == 1
    assert _charges_minus_refunds(stack, order_id) == 0


class CrashingPublisher:
    """Crashes once when publishing to `destination`: after sending (before the rows are
    marked dispatched) or before sending anything."""

    def __init__(self, inner: Publisher, destination: str, *, after_send: bool) -> None:
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
    deliveries = Deliveries(max_deliveries=MAX_DELIVERY_COUNT)
    crashing = CrashingPublisher(deliveries, entities.PAYMENTS_QUEUE, after_send=after_send)
    stack = build_stack(storage_connection_string, deliveries, crashing)
    order_id = stack.place(order_body())["orderId"]
    delivered = stack.run()
    saga = [d.settlement for d in delivered if d.destination == entities.SAGA_QUEUE]
    assert crashing.crashed
    assert saga[:2] == [Settlement.ABANDONED, Settlement.COMPLETED]
    # After the send, the re-send carries the same MessageId, which Service Bus duplicate
    # detection drops (tests/devstack): one charge command reaches the service either way.
    sent = [m.message_id for m in deliveries.sent[entities.PAYMENTS_QUEUE]]
    assert len(set(sent)) == 1 and len(sent) == (2 if after_send else 1)
    assert stack.order(order_id)["status"] == "completed"
    assert stack.movements(Service.PAYMENTS, f"charge-{order_id}", "charge") == 1


def _raw(stack: OrdersStack, entity: str, body: bytes) -> None:
    stack.deliveries.send(entity, body, f"bad-{len(body)}-{entity}")


POISON = [
    (b"{not json", "InvalidEncoding"),
    (b'{"hello": "world"}', "NotACloudEvent"),
    (Envelope.new("orders.unheard-of", {}, source="/x", subject="o").to_json().encode(),
     "UnknownEventType"),
    (Envelope.new("backbone.saga.reply", {"step": "charge_payment"}, source="/x",
                  subject="o").to_json().encode(), "SchemaViolation"),
]


@pytest.mark.parametrize(("body", "reason"), POISON, ids=[r for _, r in POISON])
def test_an_invalid_message_is_dead_lettered_at_once_with_its_reason_and_writes_nothing(
        stack: OrdersStack, body: bytes, reason: str) -> None:
    order_id = stack.place(order_body())["orderId"]
    stack.run()
    before = stack.snapshot()
    _raw(stack, entities.SAGA_QUEUE, body)
    deliveries = stack.run()
    assert [(d.settlement, d.delivery_count) for d in deliveries] == [
        (Settlement.DEAD_LETTERED, 1)]
    dead = stack.deliveries.dead_letters[entities.SAGA_QUEUE]
    assert [m.dead_letter_reason for m in dead] == [reason]
    assert dead[0].dead_letter_error_description
    assert stack.snapshot() == before
    assert stack.order(order_id)["status"] == "completed"


INVALID_CHARGE = Envelope.new(
    "orders.payments.charge-payment",
    {"sagaId": "o", "step": "charge_payment", "phase": "action", "attempt": 1,
     "replyTo": "orders-saga", "payload": {"orderId": "o"}},
    source="/x", subject="o").to_json().encode()


def test_an_invalid_service_command_is_dead_lettered_at_once_with_its_reason_and_writes_nothing(
        stack: OrdersStack) -> None:
    order_id = stack.place(order_body())["orderId"]
    stack.run()
    before = stack.snapshot()
    _raw(stack, entities.PAYMENTS_QUEUE, INVALID_CHARGE)
    deliveries = stack.run()
    assert [(d.settlement, d.delivery_count) for d in deliveries] == [
        (Settlement.DEAD_LETTERED, 1)]
    [dead] = stack.deliveries.dead_letters[entities.PAYMENTS_QUEUE]
    assert dead.dead_letter_reason == "SchemaViolation"
    assert dead.dead_letter_error_description
    assert stack.snapshot() == before
    assert stack.order(order_id)["status"] == "completed"


def test_an_order_stored_while_the_broker_is_down_is_published_by_the_sweeper(
        storage_connection_string: str, monkeypatch: pytest.MonkeyPatch) -> None:
    deliveries = Deliveries(max_deliveries=MAX_DELIVERY_COUNT)
    crashing = CrashingPublisher(deliveries, entities.INVENTORY_QUEUE, after_send=False)
    stack = build_stack(storage_connection_string, deliveries, crashing)
    order_id = stack.place(order_body())["orderId"]
    assert deliveries.pending(entities.INVENTORY_QUEUE) == []
    monkeypatch.setattr(blueprint, "SWEEP_AFTER", timedelta(0))
    deliveries.advance(timedelta(seconds=1))  # the timer fires later than the write
    blueprint.sweep_outboxes(stack.agent.processors)  # what orders_outbox_sweeper runs
    stack.run()
    assert stack.order(order_id)["status"] == "completed"
    assert stack.movements(Service.INVENTORY, f"reservation-{order_id}", "hold") == 1


def test_a_shipping_command_failing_every_attempt_is_dead_lettered_then_sent_again(
        storage_connection_string: str) -> None:
    deliveries = Deliveries(max_deliveries=MAX_DELIVERY_COUNT)
    # FLAKY fails the first two attempts; the service puts a command back only once.
    stack = build_stack(storage_connection_string, deliveries, max_retries=1)
    stack.switch(Service.SHIPPING, "card:tok-courier-down", Mode.FLAKY)
    order_id = stack.place(order_body(card="tok-courier-down"))["orderId"]
    delivered = stack.run()
    assert deliveries.advance_to_next_scheduled()  # the attempt put back a second later
    delivered += stack.run()
    shipping = [(d.settlement, d.delivery_count) for d in delivered
                if d.destination == entities.SHIPPING_QUEUE]
    assert shipping == [(Settlement.RESCHEDULED, 1), (Settlement.DEAD_LETTERED, 1)]
    (dead,) = deliveries.dead_letters[entities.SHIPPING_QUEUE]
    assert dead.dead_letter_reason == "RetryLaterExhausted"
    stack.switch(Service.SHIPPING, "card:tok-courier-down", Mode.NORMAL)  # courier back
    # Shipping is past the point of no return: at its deadline it is in doubt, and the
    # same command goes out again after the backoff instead of refunding.
    deliveries.advance(STEP_TIMEOUT + timedelta(seconds=1))
    stack.run()
    deliveries.advance(timedelta(seconds=2))
    stack.run()
    order = stack.order(order_id)
    assert order["status"] == "completed"
    assert _charges_minus_refunds(stack, order_id) == 1
    assert stack.movements(Service.SHIPPING, order_id, "shipment") == 1
