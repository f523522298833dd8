"""Service Bus helpers for the ops tests: send, dead-letter with a reason, peek, receive."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusSubQueue

# The duplicate-detection window of the test entity files (see conftest.py).
WINDOW = timedelta(seconds=4)


def send(bus: ServiceBusClient, queue_or_topic: str, *messages: ServiceBusMessage,
         topic: bool = False) -> None:
    sender = bus.get_topic_sender(queue_or_topic) if topic else bus.get_queue_sender(
        queue_or_topic)
    with sender:
        sender.send_messages(list(messages))


def dead_letter(bus: ServiceBusClient, queue: str, count: int = 1, *,
                subscription: str | None = None, reason: str = "InvalidEvent",
                description: str = "amount is negative") -> list[tuple[int, datetime]]:
    """Receive the next `count` messages and dead-letter them with a reason. Returns each
    one's dead-letter sequence number and enqueued time, in the order received."""
    receiver = (bus.get_subscription_receiver(queue, subscription) if subscription
                else bus.get_queue_receiver(queue))
    received: list = []
    with receiver:
        while len(received) < count:
            batch = receiver.receive_messages(max_message_count=count - len(received),
                                              max_wait_time=10)
            assert batch, f"only {len(received)} of {count} messages arrived"
            for message in batch:
                receiver.dead_letter_message(message, reason=reason,
                                             error_description=description)
            received.extend(batch)
    dead = {m.message_id: m for m in peek(bus, queue, subscription=subscription,
                                          dead_letter=True)}
    return [(dead[m.message_id].sequence_number, dead[m.message_id].enqueued_time_utc)
            for m in received]


def dead_letter_one(bus: ServiceBusClient, queue: str, *, subscription: str | None = None,
                    reason: str = "InvalidEvent", description: str = "amount is negative"
                    ) -> tuple[int, datetime]:
    [letter] = dead_letter(bus, queue, subscription=subscription, reason=reason,
                           description=description)
    return letter


def peek(bus: ServiceBusClient, queue: str, *, subscription: str | None = None,
         dead_letter: bool = False) -> list:
    sub_queue = ServiceBusSubQueue.DEAD_LETTER if dead_letter else None
    receiver = (bus.get_subscription_receiver(queue, subscription, sub_queue=sub_queue)
                if subscription else bus.get_queue_receiver(queue, sub_queue=sub_queue))
    with receiver:
        return list(receiver.peek_messages(max_message_count=100))


def receive_all(bus: ServiceBusClient, queue: str, *, subscription: str | None = None,
                expected: int = 1, deadline: float = 20.0) -> list:
    """Receive and complete messages until `expected` arrived (or the deadline passed),
    then any more that arrive within half a second: a duplicate is already queued by then,
    since every send in these tests returns only after the broker accepted it."""
    receiver = (bus.get_subscription_receiver(queue, subscription) if subscription
                else bus.get_queue_receiver(queue))
    received: list = []
    give_up = time.monotonic() + deadline
    with receiver:
        while len(received) < expected and time.monotonic() < give_up:
            batch = receiver.receive_messages(max_message_count=50, max_wait_time=1)
            for message in batch:
                receiver.complete_message(message)
            received.extend(batch)
        while batch := receiver.receive_messages(max_message_count=50, max_wait_time=0.5):
            for message in batch:
                receiver.complete_message(message)
            received.extend(batch)
    return received


def outwait_duplicate_window(enqueued: datetime) -> None:
    """Replay keeps the MessageId: wait until the original send has left the window."""
    remaining = (enqueued + WINDOW - datetime.now(UTC)).total_seconds()
    if remaining > 0:
        time.sleep(remaining + 0.05)


def text(value: object) -> object:
    return value.decode() if isinstance(value, bytes) else value


def properties(message) -> dict:
    return {text(k): text(v) for k, v in (message.application_properties or {}).items()}
