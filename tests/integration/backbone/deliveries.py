"""Ordered deliveries on a test clock: the one driver for tests that decide themselves in
which order messages arrive and when time passes (replies long after their deadline, an
alert while a step is held, a crash between commit and dispatch).

`Deliveries` is a backbone `Publisher`: each row a relay publishes is kept, per destination
and in order, as the Service Bus message the product would send (`to_servicebus_message`),
and nothing moves until the test says so. `deliver(destination, consume)` hands the first
due message to `consume` and settles it with the backbone's own `settle`: completed (gone),
dead-lettered (kept in `dead_letters` with its reason), or abandoned (first in line again,
delivery count + 1; after `max_deliveries` it is dead-lettered `MaxDeliveryCountExceeded`,
the entity's MaxDeliveryCount). A scheduled message is due once `now()` reaches its time;
the clock moves only when the test moves it (`advance`, `advance_to_next_scheduled`).
`copies` delivers every message that many times, as when completions are lost. `retries`
gives a destination's `settle` its `ScheduledRetry` (made on `sender(destination)`): a
`RetryLater` then schedules a copy on the test clock. Locks, duplicate detection and the
host's settlement are not modelled: those are Service Bus's, tested on devstack
(`tests/devstack/`, `test_on_devstack.py`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from agents.backbone import OutboxRow, Outcome, Settlement, settle
from agents.backbone.publishers import to_servicebus_message
from agents.backbone.settlement import ScheduledRetry

START = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Message:
    """A message as its consumer receives it (the fields of `ServiceBusReceivedMessage` the
    backbone reads)."""

    destination: str
    message_id: str
    body: bytes
    application_properties: dict[Any, Any]
    scheduled_at: datetime | None = None
    delivery_count: int = 0
    dead_letter_reason: str | None = None
    dead_letter_error_description: str | None = None
    copies_left: int = 1
    # What `ScheduledRetry` copies onto the message it schedules (none set here).
    content_type: str | None = None
    correlation_id: str | None = None
    subject: str | None = None
    session_id: str | None = None


@dataclass(frozen=True)
class Delivery:
    """One delivery and how `settle` settled it."""

    destination: str
    message_id: str
    delivery_count: int
    settlement: Settlement


Consumer = Callable[[Message], Outcome[Any] | None]


@dataclass
class _Settler:
    """The settlement half of `ServiceBusReceiver`, noting what `settle` chose."""

    reason: str | None = None
    description: str | None = None

    def complete_message(self, message: Message) -> None:
        return None

    def abandon_message(self, message: Message) -> None:
        return None

    def dead_letter_message(self, message: Message, reason: str | None = None,
                            error_description: str | None = None) -> None:
        self.reason, self.description = reason, error_description


@dataclass
class Deliveries:
    """The queues of every destination a test's relays publish to, and its clock."""

    max_deliveries: int = 10
    copies: int = 1
    clock: datetime = START
    queues: dict[str, list[Message]] = field(default_factory=dict)
    sent: dict[str, list[Message]] = field(default_factory=dict)
    """Every message published or sent to each destination, in order (repeats included)."""
    dead_letters: dict[str, list[Message]] = field(default_factory=dict)
    published: list[OutboxRow] = field(default_factory=list)
    delivered: list[Delivery] = field(default_factory=list)
    retries: dict[str, ScheduledRetry] = field(default_factory=dict)
    # Held while the queues change, never while a consumer runs (tests race two deliveries).
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def now(self) -> datetime:
        return self.clock

    def advance(self, delta: timedelta) -> None:
        self.clock += delta

    def advance_to_next_scheduled(self) -> bool:
        """Move the clock to the earliest scheduled message not yet due; False if none."""
        waiting = [m.scheduled_at for queue in self.queues.values() for m in queue
                   if m.scheduled_at is not None and m.scheduled_at > self.clock]
        if not waiting:
            return False
        self.clock = min(waiting)
        return True

    def publish(self, rows: Sequence[OutboxRow]) -> None:
        for row in rows:
            message = to_servicebus_message(row)
            self.send(row.destination, b"".join(message.body), message.message_id,
                      dict(message.application_properties or {}), row.scheduled_at)
        self.published.extend(rows)

    def send(self, destination: str, body: bytes, message_id: str,
             properties: Mapping[Any, Any] | None = None, scheduled_at: datetime | None = None
             ) -> None:
        """Enqueue a message as any sender would (another app, a poison message)."""
        message = Message(destination, message_id, body, dict(properties or {}), scheduled_at,
                          copies_left=self.copies)
        with self._lock:
            self.queues.setdefault(destination, []).append(message)
            self.sent.setdefault(destination, []).append(message)

    def sender(self, destination: str) -> ScheduledSender:
        return ScheduledSender(self, destination)

    def pending(self, destination: str) -> list[Message]:
        return list(self.queues.get(destination, []))

    def due(self, destination: str) -> bool:
        return any(self._is_due(m) for m in self.queues.get(destination, []))

    def deliver(self, destination: str, consume: Consumer) -> Delivery | None:
        """Deliver the first due message on `destination` to `consume`; None if none is due."""
        with self._lock:
            queue = self.queues.setdefault(destination, [])
            message = next((m for m in queue if self._is_due(m)), None)
            if message is None:
                return None
            queue.remove(message)
            message.delivery_count += 1
        settler = _Settler()
        settlement = settle(settler, message, lambda: consume(message),
                            retry=self.retries.get(destination))
        with self._lock:
            self._settled(queue, message, settlement, settler)
            delivery = Delivery(destination, message.message_id, message.delivery_count,
                                settlement)
            self.delivered.append(delivery)
        return delivery

    def _settled(self, queue: list[Message], message: Message, settlement: Settlement,
                 settler: _Settler) -> None:
        if settlement is Settlement.ABANDONED:
            if message.delivery_count >= self.max_deliveries:
                settler.reason = "MaxDeliveryCountExceeded"
                settler.description = f"delivered {message.delivery_count} times"
                self._dead_letter(message, settler)
            else:
                queue.insert(0, message)
        elif settlement is Settlement.DEAD_LETTERED:
            self._dead_letter(message, settler)
        else:
            message.copies_left -= 1
            if message.copies_left > 0:
                queue.append(message)

    def run(self, consumers: Mapping[str, Consumer], *, limit: int = 5_000) -> list[Delivery]:
        """Deliver every due message, one per destination in turn, until none is due."""
        done: list[Delivery] = []
        while any(self.due(name) for name in consumers):
            for name, consume in consumers.items():
                delivery = self.deliver(name, consume)
                if delivery is not None:
                    done.append(delivery)
                if len(done) >= limit:
                    raise RuntimeError(f"still delivering after {limit} deliveries")
        return done

    def run_until_settled(self, consumers: Mapping[str, Consumer], *, rounds: int = 100
                          ) -> list[Delivery]:
        """`run`, then move the clock to the next scheduled message and run again, one due
        instant at a time, until nothing is scheduled."""
        done: list[Delivery] = []
        for _ in range(rounds):
            done += self.run(consumers)
            if not self.advance_to_next_scheduled():
                return done
        raise RuntimeError(f"still scheduling after {rounds} rounds")

    def _is_due(self, message: Message) -> bool:
        return message.scheduled_at is None or message.scheduled_at <= self.clock

    def _dead_letter(self, message: Message, settler: _Settler) -> None:
        message.dead_letter_reason = settler.reason
        message.dead_letter_error_description = settler.description
        self.dead_letters.setdefault(message.destination, []).append(message)


@dataclass
class ScheduledSender:
    """`ServiceBusSender.schedule_messages` onto one destination of `Deliveries`: the sender
    a `ScheduledRetry` puts a message back with."""

    deliveries: Deliveries
    entity_name: str

    def schedule_messages(self, message: Any, at: datetime) -> None:
        self.deliveries.send(self.entity_name, b"".join(message.body), str(message.message_id),
                             dict(message.application_properties or {}), at)
