"""A tiny in-memory broker with Service Bus peek-lock semantics: a TEST DOUBLE, not product
code, used until devstack's Service Bus runs here.

What it honours: complete removes; abandon redelivers with delivery count + 1; after
MaxDeliveryCount deliveries an abandon dead-letters with reason MaxDeliveryCountExceeded;
dead-letter keeps reason + description; scheduled enqueue time (against a clock the test can
advance); MessageId duplicate detection. Optionally every message is delivered N times
(`copies`), as when a completion is lost. Not modelled: lock expiry, sessions, topics.

`BrokerPublisher` sends outbox rows through the product's own `to_servicebus_message`, and
`BrokerReceiver` has the settlement methods of `azure.servicebus.ServiceBusReceiver`, so the
backbone code under test runs unchanged.
"""

from __future__ import annotations

import functools
import itertools
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from agents.backbone import OutboxRow, Outcome, Settlement, settle
from agents.backbone.publishers import by_destination, to_servicebus_message


@dataclass
class BrokerMessage:
    message_id: str
    body: bytes
    application_properties: dict[Any, Any]
    content_type: str | None
    correlation_id: str | None
    subject: str | None
    scheduled_enqueue_time_utc: datetime | None
    sequence_number: int
    delivery_count: int = 0
    lock_token: str | None = None
    dead_letter_reason: str | None = None
    dead_letter_error_description: str | None = None
    copies_left: int = 1


@dataclass
class _Queue:
    available: list[BrokerMessage] = field(default_factory=list)
    locked: dict[str, BrokerMessage] = field(default_factory=dict)
    dead_letters: list[BrokerMessage] = field(default_factory=list)
    seen_ids: dict[str, datetime] = field(default_factory=dict)
    sent: int = 0


class InMemoryBroker:
    def __init__(
        self, *, max_delivery_count: int = 10, copies: int = 1,
        duplicate_detection_window: timedelta = timedelta(minutes=10),
    ) -> None:
        self.max_delivery_count = max_delivery_count
        self.copies = copies
        self.window = duplicate_detection_window
        self._offset = timedelta(0)
        self._queues: dict[str, _Queue] = {}
        self._lock = threading.RLock()
        self._sequence = itertools.count(1)

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    def advance(self, delta: timedelta) -> None:
        """Move the broker's clock forward (scheduled messages become due)."""
        self._offset += delta

    def advance_to_next_scheduled(self) -> bool:
        """Jump the clock to the earliest scheduled message still waiting; False if none."""
        with self._lock:
            waiting = [m.scheduled_enqueue_time_utc for q in self._queues.values()
                       for m in q.available
                       if m.scheduled_enqueue_time_utc is not None and not self._is_due(m)]
            if not waiting:
                return False
            self._offset += min(waiting) - self.now()
            return True

    def queue(self, name: str) -> _Queue:
        with self._lock:
            return self._queues.setdefault(name, _Queue())

    def send(self, destination: str, message: Any) -> bool:
        """Enqueue an `azure.servicebus.ServiceBusMessage`; False if dropped as a duplicate."""
        with self._lock:
            queue = self.queue(destination)
            message_id = str(message.message_id)
            seen = queue.seen_ids.get(message_id)
            if seen is not None and self.now() - seen < self.window:
                return False
            queue.seen_ids[message_id] = self.now()
            queue.sent += 1
            queue.available.append(BrokerMessage(
                message_id=message_id,
                body=b"".join(message.body),
                application_properties=dict(message.application_properties or {}),
                content_type=message.content_type,
                correlation_id=message.correlation_id,
                subject=message.subject,
                scheduled_enqueue_time_utc=message.scheduled_enqueue_time_utc,
                sequence_number=next(self._sequence),
                copies_left=self.copies,
            ))
            return True

    def receiver(self, name: str) -> BrokerReceiver:
        return BrokerReceiver(self, name)

    def dead_letters(self, name: str) -> list[BrokerMessage]:
        return list(self.queue(name).dead_letters)

    def available(self, name: str) -> list[BrokerMessage]:
        return list(self.queue(name).available)

    def due(self, name: str) -> bool:
        with self._lock:
            return any(self._is_due(m) for m in self.queue(name).available)

    def _is_due(self, message: BrokerMessage) -> bool:
        at = message.scheduled_enqueue_time_utc
        return at is None or at <= self.now()

    def _take(self, name: str) -> BrokerMessage | None:
        with self._lock:
            queue = self.queue(name)
            for index, message in enumerate(queue.available):
                if self._is_due(message):
                    del queue.available[index]
                    message.delivery_count += 1
                    message.lock_token = str(uuid.uuid4())
                    queue.locked[message.lock_token] = message
                    return message
            return None

    def _unlock(self, name: str, message: BrokerMessage) -> BrokerMessage:
        queue = self.queue(name)
        if message.lock_token is None or message.lock_token not in queue.locked:
            raise RuntimeError(f"message {message.message_id} is not locked (settled twice?)")
        held = queue.locked.pop(message.lock_token)
        held.lock_token = None
        return held

    def _complete(self, name: str, message: BrokerMessage) -> None:
        with self._lock:
            held = self._unlock(name, message)
            held.copies_left -= 1
            if held.copies_left > 0:
                self.queue(name).available.append(held)

    def _abandon(self, name: str, message: BrokerMessage) -> None:
        with self._lock:
            held = self._unlock(name, message)
            if held.delivery_count >= self.max_delivery_count:
                held.dead_letter_reason = "MaxDeliveryCountExceeded"
                held.dead_letter_error_description = (
                    f"delivered {held.delivery_count} times, the maximum")
                self.queue(name).dead_letters.append(held)
            else:
                self.queue(name).available.append(held)

    def _dead_letter(self, name: str, message: BrokerMessage, reason: str | None,
                     description: str | None) -> None:
        with self._lock:
            held = self._unlock(name, message)
            held.dead_letter_reason = reason
            held.dead_letter_error_description = description
            self.queue(name).dead_letters.append(held)


class BrokerReceiver:
    """The peek-lock half of `ServiceBusReceiver`, over one in-memory queue."""

    def __init__(self, broker: InMemoryBroker, queue: str) -> None:
        self._broker = broker
        self.queue = queue

    def receive_messages(self, max_message_count: int = 1) -> list[BrokerMessage]:
        received = []
        for _ in range(max_message_count):
            message = self._broker._take(self.queue)
            if message is None:
                break
            received.append(message)
        return received

    def complete_message(self, message: BrokerMessage) -> None:
        self._broker._complete(self.queue, message)

    def abandon_message(self, message: BrokerMessage) -> None:
        self._broker._abandon(self.queue, message)

    def dead_letter_message(self, message: BrokerMessage, reason: str | None = None,
                            error_description: str | None = None) -> None:
        self._broker._dead_letter(self.queue, message, reason, error_description)


class BrokerPublisher:
    """The backbone `Publisher` port over the in-memory broker (counts what it was asked)."""

    def __init__(self, broker: InMemoryBroker) -> None:
        self.broker = broker
        self.published: list[OutboxRow] = []

    def publish(self, rows: Sequence[OutboxRow]) -> None:
        for destination, group in by_destination(rows).items():
            for row in group:
                self.broker.send(destination, to_servicebus_message(row))
        self.published.extend(rows)


Consumer = Callable[[BrokerMessage], Outcome[Any]]


def drain(broker: InMemoryBroker, consumers: dict[str, Consumer], *, limit: int = 10_000
          ) -> list[tuple[str, BrokerMessage, Settlement]]:
    """Deliver every due message to its queue's consumer, settling with the backbone's
    `settle`, until no queue has a due message. `limit` stops a runaway loop."""
    settled: list[tuple[str, BrokerMessage, Settlement]] = []
    receivers = {name: broker.receiver(name) for name in consumers}
    while any(broker.due(name) for name in consumers):
        for name, consume in consumers.items():
            for message in receivers[name].receive_messages(max_message_count=1):
                outcome = settle(receivers[name], message, functools.partial(consume, message))
                settled.append((name, message, outcome))
                if len(settled) >= limit:
                    raise RuntimeError(f"drain did not settle within {limit} deliveries")
    return settled
