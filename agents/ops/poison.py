"""Event Hubs poison events parked on Service Bus (`<domain>-poison-events`, see
`agents.backbone.parking`): list and show by peeking, replay to the original hub.

Replay republishes the original body and properties to the partition the event was read
from (the parked record keeps the partition id, not the partition key; sending to the same
partition keeps the event's place among its key's events), then completes the parked
message. Event Hubs has no duplicate detection: a replay re-run after a crash between send
and complete publishes the event twice, and the consumer's inbox (CloudEvent id) absorbs it.
"""

from __future__ import annotations

import base64
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from azure.eventhub import EventData
from azure.servicebus import ServiceBusReceivedMessage

from agents.backbone import SchemaRegistry, parse_servicebus
from agents.backbone.errors import InvalidEvent
from agents.backbone.parking import PARKED, PARKED_SCHEMA
from agents.ops.config import Catalogue, OpsError, ServiceBusEntity, setting_for
from agents.ops.connections import Connections
from agents.ops.deadletters import REPLAY_COUNT, REPLAYED_FROM, ReplayResult, decode_body
from agents.ops.servicebus import StopAtFirstFailure, peek_all, receiver, settle_chosen

REPLAYED_OFFSET = "replayedOffset"
NOT_PARKED = "NotAParkedEvent"


@dataclass(frozen=True)
class ParkedEvent:
    """One parked poison event, as peeked from the parking queue."""

    queue: str
    sequence_number: int
    message_id: str | None
    enqueued_time: datetime | None
    hub: str
    consumer_group: str
    partition_id: str
    offset: str
    event_sequence_number: int
    reason: str
    description: str
    properties: dict[str, str] = field(repr=False)
    body: bytes = field(repr=False)

    @classmethod
    def of(cls, queue: ServiceBusEntity, message: ServiceBusReceivedMessage) -> ParkedEvent:
        """The parked event; a message that is not one is listed as `NotAParkedEvent` (so one
        stray message does not hide the others) and never replayed."""
        raw = b"".join(message.body)
        try:
            envelope = parse_servicebus(raw, message.application_properties,
                                        registry=SchemaRegistry({PARKED: PARKED_SCHEMA}))
            if envelope.type != PARKED:
                raise InvalidEvent(f"type {envelope.type!r}, not {PARKED!r}")
        except InvalidEvent as error:
            return cls(queue.name, message.sequence_number or 0, message.message_id,
                       message.enqueued_time_utc, "", "", "", "", -1, NOT_PARKED,
                       error.description, {}, raw)
        data: dict[str, Any] = dict(envelope.data)
        body = (base64.b64decode(data["body"]) if data["bodyEncoding"] == "base64"
                else str(data["body"]).encode("utf-8"))
        return cls(queue.name, message.sequence_number or 0, message.message_id,
                   message.enqueued_time_utc, data["hub"], data["consumerGroup"],
                   data["partitionId"], data["offset"], data["sequenceNumber"],
                   data["reason"], data["description"], dict(data["properties"]), body)

    def summary(self) -> dict[str, Any]:
        return {"queue": self.queue, "sequenceNumber": self.sequence_number,
                "messageId": self.message_id,
                "enqueuedTime": self.enqueued_time.isoformat() if self.enqueued_time else None,
                "hub": self.hub, "consumerGroup": self.consumer_group,
                "partitionId": self.partition_id, "offset": self.offset,
                "eventSequenceNumber": self.event_sequence_number, "reason": self.reason,
                "description": self.description}

    def to_dict(self) -> dict[str, Any]:
        return {**self.summary(), "properties": self.properties,
                "body": decode_body(self.body)}


def parking_queue(catalogue: Catalogue, name: str | None) -> ServiceBusEntity:
    """The named parking queue, or the only one the catalogue has."""
    if name:
        return catalogue.entity(name)
    queues = catalogue.poison_queues()
    if len(queues) != 1:
        names = ", ".join(q.name for q in queues) or "none"
        raise OpsError(f"pass --queue: the catalogue has {len(queues)} parking queues "
                       f"({names})")
    return queues[0]


def list_parked(connections: Connections, catalogue: Catalogue, queue: str | None = None
                ) -> list[ParkedEvent]:
    target = parking_queue(catalogue, queue)
    with receiver(connections.servicebus(target.setting), target, dead_letter=False) as peeker:
        return [ParkedEvent.of(target, message) for message in peek_all(peeker)]


def show_parked(connections: Connections, catalogue: Catalogue, sequence_number: int,
                queue: str | None = None) -> ParkedEvent:
    for parked in list_parked(connections, catalogue, queue):
        if parked.sequence_number == sequence_number:
            return parked
    raise OpsError(f"no parked event {sequence_number} in "
                   f"{parking_queue(catalogue, queue).name}")


def replay_parked(connections: Connections, catalogue: Catalogue, *,
                  sequence_numbers: Collection[int] | None, queue: str | None = None,
                  dry_run: bool = False) -> list[ReplayResult]:
    """Republish the chosen parked events to their hub and partition, then complete them."""
    target = parking_queue(catalogue, queue)
    hubs = {hub.lower() for hub in catalogue.hubs}
    with receiver(connections.servicebus(target.setting), target, dead_letter=False) as parking:
        parked = {p.sequence_number: p for p in
                  (ParkedEvent.of(target, m) for m in peek_all(parking))}
        wanted = sorted(parked) if sequence_numbers is None else sorted(set(sequence_numbers))
        results: dict[int, ReplayResult] = {}
        eligible = []
        for sequence in wanted:
            event = parked.get(sequence)
            if event is None:
                results[sequence] = ReplayResult(target.name, sequence, None, "skipped",
                                                 "not parked (already replayed or removed)")
            elif event.reason == NOT_PARKED:
                results[sequence] = ReplayResult(target.name, sequence, event.message_id,
                                                 "skipped", f"not a parked event: "
                                                 f"{event.description}")
            elif event.hub.lower() not in hubs:
                results[sequence] = ReplayResult(target.name, sequence, event.message_id,
                                                 "skipped", f"hub {event.hub!r} is not in the "
                                                 "entity catalogue")
            else:
                eligible.append(sequence)
        if dry_run:
            for sequence in eligible:
                event = parked[sequence]
                results[sequence] = ReplayResult(
                    target.name, sequence, event.message_id, "would replay",
                    f"to {event.hub} partition {event.partition_id}")
        elif eligible:
            def send(message: ServiceBusReceivedMessage) -> None:
                event = ParkedEvent.of(target, message)
                hub = catalogue.hub(event.hub)
                producer = connections.producer(setting_for(hub, "EVENTHUBS"), hub)
                producer.send_batch([replay_event(event)], partition_id=event.partition_id)

            republish = StopAtFirstFailure(send)
            done = settle_chosen(parking, chosen=eligible, act=republish)
            for sequence in eligible:
                event = parked[sequence]
                results[sequence] = (
                    ReplayResult(target.name, sequence, event.message_id, "replayed",
                                 f"sent to {event.hub} partition {event.partition_id}, "
                                 "parked message completed")
                    if sequence in done else
                    ReplayResult(target.name, sequence, event.message_id, "failed",
                                 republish.failed[sequence])
                    if sequence in republish.failed else
                    ReplayResult(target.name, sequence, event.message_id, "skipped",
                                 "gone from the parking queue before it could be locked"))
    return [results[sequence] for sequence in wanted]


def replay_event(parked: ParkedEvent) -> EventData:
    """The original event again, with where it was parked and how often it was replayed."""
    event = EventData(parked.body)
    properties: dict[str | bytes, Any] = dict(parked.properties.items())
    properties[REPLAYED_FROM] = f"{parked.queue}/{parked.sequence_number}"
    properties[REPLAYED_OFFSET] = parked.offset
    properties[REPLAY_COUNT] = int(parked.properties.get(REPLAY_COUNT, 0)) + 1
    event.properties = properties
    return event
