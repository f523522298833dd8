"""Service Bus helpers for the ops tests: send, dead-letter with a reason, peek, receive."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusSubQueue

# The duplicate-detection window of the test entity files (see conftest.py).
WINDOW = timedelta(seconds=4)


def send(bus: ServiceBusClient, queue_or_topic: str, message: ServiceBusMessage, *,
         topic: bool = False) -> None:
    sender = bus.get_topic_sender(queue_or_topic) if topic else bus.get_queue_sender(
        queue_or_topic)
    with sender:
        sender.send_messages(message)


def dead_letter_one(bus: ServiceBusClient, queue: str, *, subscription: str | None = None,
                    reason: str = "InvalidEvent", description: str = "amount is negative"
                    ) -> tuple[int, datetime]:
    """Receive the next message and dead-letter it with a reason. Returns its dead-letter
    sequence number and its enqueued time."""
    receiver = (bus.get_subscription_receiver(queue, subscription) if subscription
                else bus.get_queue_receiver(queue))
    with receiver:
        [message] = receiver.receive_messages(max_message_count=1, max_wait_time=10)
        receiver.dead_letter_message(message, reason=reason, error_description=description)
    dead = peek(bus, queue, subscription=subscription, dead_letter=True)
    letter = next(m for m in dead if m.message_id == message.message_id)
    return letter.sequence_number, letter.enqueued_time_utc


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
