"""The `Publisher` port and its adapters over the official SDKs' batch types.

Every adapter sends each outbox row with MessageId = row id (= event id), so a re-send after
a crash is absorbed by Service Bus duplicate detection (and by consumers' inboxes elsewhere).
Any SDK failure raises `PublishFailed`; the rows then stay pending.

A publisher owns the SDK clients it is given: `close()` (or leaving its `with` block) closes
them. Each destination has its own sender and lock, so a busy or reconnecting entity delays
only the rows sent to it; and a Service Bus destination's sends have a time budget
(`SEND_TIMEOUT_SECONDS`), so a handler thread waits seconds for a throttled entity, not the
SDK's full back-off, while the others' threads keep working.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self

from agents.backbone import telemetry
from agents.backbone.envelope import Envelope
from agents.backbone.errors import ConfigurationError, PublishFailed
from agents.backbone.outbox import OutboxRow
from agents.backbone.partitions import PartitionKeys
from agents.backbone.wire import (
    CLOUDEVENTS_CONTENT_TYPE,
    application_properties,
    encode_body,
    to_cloudevent,
)

# The SDKs load on first use (cold start): an adapter's client exists before it publishes.
if TYPE_CHECKING:
    from azure.eventgrid import EventGridPublisherClient
    from azure.eventhub import EventData, EventDataBatch, EventHubProducerClient
    from azure.servicebus import (
        ServiceBusClient,
        ServiceBusMessage,
        ServiceBusMessageBatch,
        ServiceBusSender,
    )

_EVENTGRID_CHUNK = 100
# Room for a reconnect after a dropped connection (~2.6 s with the SDK's default back-off) or
# one server-busy answer (1.6 s); a longer throttle fails the send, and redelivery retries it.
SEND_TIMEOUT_SECONDS = 3.0


def _sdk_errors(*more: type[Exception]) -> tuple[type[Exception], ...]:
    """What a failed send raises: an `except` evaluates this only once a send failed, when
    azure-core is loaded. ServiceBusError and Event Grid's errors are AzureErrors."""
    from azure.core.exceptions import AzureError

    return (AzureError, OSError, *more)


class Publisher(Protocol):
    """Sends outbox rows to their `destination`; raises `PublishFailed` if any did not go.
    `close()` releases the clients it holds."""

    def publish(self, rows: Sequence[OutboxRow]) -> None: ...

    def close(self) -> None: ...


class Closing:
    """`with publisher:` closes it on the way out."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


def by_destination(rows: Sequence[OutboxRow]) -> dict[str, list[OutboxRow]]:
    """Rows grouped by destination, keeping their order within each group."""
    groups: dict[str, list[OutboxRow]] = defaultdict(list)
    for row in rows:
        groups[row.destination].append(row)
    return groups


def refuse_scheduled(rows: Sequence[OutboxRow], service: str) -> None:
    """Only Service Bus can hold a message until a time; elsewhere say so, never send early."""
    for row in rows:
        if row.scheduled_at is not None:
            raise ConfigurationError(
                f"{service} cannot schedule delivery: route {row.destination!r} (event "
                f"{row.message_id}, scheduled for {row.scheduled_at}) to a Service Bus entity")


class RoutingPublisher(Closing):
    """Routes each destination to the publisher that owns it (Service Bus, Event Hubs, ...);
    closing it closes each route once."""

    def __init__(self, routes: Mapping[str, Publisher]) -> None:
        self._routes = dict(routes)

    def publish(self, rows: Sequence[OutboxRow]) -> None:
        for destination, group in by_destination(rows).items():
            route = self._routes.get(destination)
            if route is None:
                raise ConfigurationError(f"no publisher routes destination {destination!r}")
            route.publish(group)

    def close(self) -> None:
        for route in {id(route): route for route in self._routes.values()}.values():
            route.close()


def _properties(envelope: Envelope) -> dict[str | bytes, Any]:
    """CloudEvents attributes plus the trace context under the names consumers read."""
    properties: dict[str | bytes, Any] = dict(application_properties(envelope).items())
    properties.update(telemetry.wire_properties(envelope).items())
    return properties


def to_servicebus_message(row: OutboxRow, *, session: bool = False) -> ServiceBusMessage:
    """The Service Bus message for one outbox row (structured CloudEvent + properties).

    `session=True` sets SessionId = the event's partition key, so a session-enabled entity
    keeps one aggregate's messages in order (agents/backbone/README.md, Partitions).
    """
    from azure.servicebus import ServiceBusMessage

    envelope = row.envelope
    return ServiceBusMessage(
        encode_body(envelope),
        message_id=row.message_id,
        content_type=CLOUDEVENTS_CONTENT_TYPE,
        correlation_id=envelope.correlationid,
        subject=envelope.type,
        application_properties=_properties(envelope),
        scheduled_enqueue_time_utc=row.scheduled_at,
        session_id=(envelope.partitionkey or envelope.subject or envelope.id) if session
        else None,
    )


@dataclass
class _Sender:
    """One entity's sender and the lock its sends take (the SDK's sync senders are not
    thread-safe; the Functions worker calls from a pool)."""

    sender: ServiceBusSender
    lock: threading.Lock = field(default_factory=threading.Lock)


class ServiceBusPublisher(Closing):
    """Sends rows in `ServiceBusMessageBatch`es, one sender per queue or topic.

    `topics` names the destinations that are topics; every other destination is a queue.
    `sessions` names the session-enabled ones (SessionId = the event's partition key).
    Sends to different entities run in parallel; closing closes the senders and `client`.

    `send_timeout` bounds the wait for a destination's sender and then its sends: it is the
    SDK's own `timeout` (the whole operation, reconnects and retries included), so a back-off
    that would outlast it is not started. Past it the rows raise `PublishFailed` and stay
    pending: a Service Bus trigger abandons the message, its redelivery publishes them again,
    and the sweeper is the net. None: the client's retry policy alone decides.
    """

    def __init__(self, client: ServiceBusClient, *, topics: Collection[str] = (),
                 sessions: Collection[str] = (),
                 send_timeout: float | None = SEND_TIMEOUT_SECONDS) -> None:
        if send_timeout is not None and send_timeout <= 0:
            raise ConfigurationError(f"send_timeout must be positive seconds, not {send_timeout}")
        self._client = client
        self._topics = frozenset(topics)
        self._sessions = frozenset(sessions)
        self._send_timeout = send_timeout
        self._senders: dict[str, _Sender] = {}
        self._lock = threading.Lock()  # guards `_senders` only, never held across a send

    def publish(self, rows: Sequence[OutboxRow]) -> None:
        for destination, group in by_destination(rows).items():
            target = self._sender(destination)
            if not target.lock.acquire(timeout=-1 if self._send_timeout is None
                                       else self._send_timeout):
                raise PublishFailed(
                    f"Service Bus send to {destination} failed: another send held its sender "
                    f"for the whole {self._send_timeout:g} s budget")
            try:
                self._send(target.sender, group, session=destination in self._sessions,
                           budget=self._send_timeout)
            except _sdk_errors() as error:
                raise PublishFailed(
                    f"Service Bus send to {destination} failed: {error}") from error
            finally:
                target.lock.release()

    def close(self) -> None:
        with self._lock:
            senders, self._senders = list(self._senders.values()), {}
        for target in senders:
            with target.lock:
                target.sender.close()
        self._client.close()

    def _sender(self, destination: str) -> _Sender:
        with self._lock:  # creating a sender does no I/O: it connects on its first send
            if destination not in self._senders:
                self._senders[destination] = _Sender(
                    self._client.get_topic_sender(destination)
                    if destination in self._topics
                    else self._client.get_queue_sender(destination))
            return self._senders[destination]

    @staticmethod
    def _send(sender: ServiceBusSender, rows: list[OutboxRow], *, session: bool,
              budget: float | None) -> None:
        # A sender's first batch opens its link, under the client's retry policy; the budget
        # starts after it and covers the sends (reconnects and retries included).
        batch: ServiceBusMessageBatch = sender.create_message_batch()
        deadline = None if budget is None else time.monotonic() + budget

        def send(batch: ServiceBusMessageBatch) -> None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise PublishFailed(f"Service Bus send to {sender.entity_name} failed: its "
                                    f"{budget:g} s budget was spent before this batch")
            sender.send_messages(batch, timeout=left)

        for row in rows:
            message = to_servicebus_message(row, session=session)
            try:
                batch.add_message(message)
            except ValueError:
                if len(batch) == 0:
                    raise
                send(batch)
                batch = sender.create_message_batch()
                batch.add_message(message)
        if len(batch):
            send(batch)


def to_event_data(row: OutboxRow) -> EventData:
    from azure.eventhub import EventData

    envelope = row.envelope
    event = EventData(encode_body(envelope))
    event.content_type = CLOUDEVENTS_CONTENT_TYPE
    event.message_id = row.message_id
    if envelope.correlationid is not None:
        event.correlation_id = envelope.correlationid
    event.properties = _properties(envelope)
    return event


class EventHubsPublisher(Closing):
    """Sends rows in `EventDataBatch`es, one batch per (hub, hashed partition key).

    `producers` gives the producer for a hub name (destination = hub name). Producers given
    as a mapping are this publisher's and `close()` closes them; a callable's producers
    belong to whoever provides them.
    """

    def __init__(
        self,
        producers: Mapping[str, EventHubProducerClient] | Callable[[str], EventHubProducerClient],
        *,
        partition_keys: PartitionKeys | None = None,
    ) -> None:
        self._producers = producers
        self.partition_keys = partition_keys or PartitionKeys()
        # One send at a time per hub (its sync producer is shared across threads), so a slow
        # hub delays only its own rows.
        self._locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
        self._locks_lock = threading.Lock()

    def publish(self, rows: Sequence[OutboxRow]) -> None:
        from azure.eventhub.exceptions import EventHubError

        for hub, group in by_destination(rows).items():
            refuse_scheduled(group, "Event Hubs")
            producer = self._producer(hub)
            by_key: dict[str, list[OutboxRow]] = defaultdict(list)
            for row in group:
                by_key[self.partition_keys.for_event(row.envelope)].append(row)
            with self._locks_lock:
                lock = self._locks[hub]
            try:
                with lock:
                    for key, keyed in by_key.items():
                        self._send(producer, key, keyed)
            except _sdk_errors(EventHubError) as error:
                raise PublishFailed(f"Event Hubs send to {hub} failed: {error}") from error

    def close(self) -> None:
        if not callable(self._producers):
            for producer in self._producers.values():
                producer.close()

    def _producer(self, hub: str) -> EventHubProducerClient:
        if callable(self._producers):
            return self._producers(hub)
        try:
            return self._producers[hub]
        except KeyError:
            raise ConfigurationError(f"no Event Hubs producer for hub {hub!r}") from None

    @staticmethod
    def _send(producer: EventHubProducerClient, key: str, rows: list[OutboxRow]) -> None:
        batch: EventDataBatch = producer.create_batch(partition_key=key)
        for row in rows:
            event = to_event_data(row)
            try:
                batch.add(event)
            except ValueError:
                if len(batch) == 0:
                    raise
                producer.send_batch(batch)
                batch = producer.create_batch(partition_key=key)
                batch.add(event)
        if len(batch):
            producer.send_batch(batch)


class EventGridPublisher(Closing):
    """Sends rows as CloudEvents through `EventGridPublisherClient`, one client per topic.

    `clients` maps a destination name to the client for that topic endpoint; `close()`
    closes them.
    """

    def __init__(self, clients: Mapping[str, EventGridPublisherClient]) -> None:
        self._clients = dict(clients)

    def publish(self, rows: Sequence[OutboxRow]) -> None:
        for destination, group in by_destination(rows).items():
            client = self._clients.get(destination)
            if client is None:
                raise ConfigurationError(f"no Event Grid client for destination {destination!r}")
            refuse_scheduled(group, "Event Grid")
            events = [to_cloudevent(row.envelope) for row in group]
            try:
                for start in range(0, len(events), _EVENTGRID_CHUNK):
                    client.send(events[start:start + _EVENTGRID_CHUNK])
            except _sdk_errors() as error:
                raise PublishFailed(f"Event Grid send to {destination} failed: {error}") from error

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
