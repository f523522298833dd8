"""Backpressure on devstack's Service Bus (official SDK): an open breaker puts the message back
for later as a scheduled copy, instead of the broker redelivering it at once."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from azure.servicebus import (
    ServiceBusClient,
    ServiceBusReceivedMessage,
    ServiceBusReceiver,
    ServiceBusSubQueue,
)

from agents.backbone import Envelope
from agents.backbone.breaker import BreakerOptions, CircuitBreaker
from agents.backbone.errors import RetryLater
from agents.backbone.outbox import OutboxRow
from agents.backbone.publishers import to_servicebus_message
from agents.backbone.settlement import RETRY_COUNT, ScheduledRetry, Settlement, settle
from devstack.server import DevStack

QUEUE = "orders-inventory"
BREAK_SECONDS = 30.0


@pytest.fixture
def bus(devstack: DevStack) -> Iterator[ServiceBusClient]:
    with ServiceBusClient.from_connection_string(devstack.connection_string) as client:
        yield client
        with client.get_queue_receiver(QUEUE, max_wait_time=1) as rest:  # leave it empty
            for message in rest.receive_messages(max_message_count=100, max_wait_time=1):
                rest.complete_message(message)


def open_breaker() -> CircuitBreaker:
    breaker = CircuitBreaker("inventory-service", clock=lambda: 1000.0, options=BreakerOptions(
        failure_ratio=0.5, minimum_throughput=2, break_duration=BREAK_SECONDS))
    for _ in range(2):
        with pytest.raises(OSError):
            breaker.call(_refuse)
    return breaker


def _refuse() -> None:
    raise OSError("connection refused")


def received(bus: ServiceBusClient) -> tuple[ServiceBusReceiver, ServiceBusReceivedMessage]:
    """A fresh message on the queue, received (locked) by a new receiver."""
    event = Envelope.new("orders.inventory.reserve-stock", {"orderId": "o-1"},
                         source="/tests", subject=f"o-{uuid.uuid4().hex[:6]}")
    row = OutboxRow.new(event.subject or "", event, destination=QUEUE, scheduled_at=None,
                        created_at=datetime.now(UTC))
    with bus.get_queue_sender(QUEUE) as sender:
        sender.send_messages(to_servicebus_message(row))
    receiver = bus.get_queue_receiver(QUEUE, max_wait_time=5)
    [message] = receiver.receive_messages(max_message_count=1, max_wait_time=5)
    return receiver, message


def test_an_open_breaker_schedules_a_copy_for_when_the_break_ends_and_completes_it(
        bus: ServiceBusClient) -> None:
    breaker, calls = open_breaker(), []
    receiver, message = received(bus)
    now = datetime.now(UTC)
    with bus.get_queue_sender(QUEUE) as sender:
        result = settle(receiver, message,
                        lambda: breaker.call(calls.append, "reserve"),
                        retry=ScheduledRetry(sender, clock=lambda: now))
    assert result is Settlement.RESCHEDULED
    assert calls == []
    with bus.get_queue_receiver(QUEUE) as peeker:
        [copy] = peeker.peek_messages(max_message_count=10)
    assert copy.message_id == f"{message.message_id}~retry1"
    assert b"".join(copy.body) == b"".join(message.body)
    assert copy.application_properties[RETRY_COUNT.encode()] == 1
    scheduled = copy.scheduled_enqueue_time_utc
    assert scheduled is not None
    assert abs(scheduled - (now + timedelta(seconds=BREAK_SECONDS))) < timedelta(milliseconds=2)


def test_a_message_put_back_too_often_is_dead_lettered_with_the_reason(
        bus: ServiceBusClient) -> None:
    receiver, message = received(bus)

    def downstream_slow() -> None:
        raise RetryLater("inventory answers in 40 s", retry_after=5)

    with bus.get_queue_sender(QUEUE) as sender:
        result = settle(receiver, message, downstream_slow,
                        retry=ScheduledRetry(sender, max_retries=0))
    assert result is Settlement.DEAD_LETTERED
    with bus.get_queue_receiver(QUEUE, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dead:
        [letter] = dead.receive_messages(max_message_count=1, max_wait_time=5)
        dead.complete_message(letter)
    assert letter.dead_letter_reason == "RetryLaterExhausted"
    assert "inventory answers in 40 s" in (letter.dead_letter_error_description or "")
