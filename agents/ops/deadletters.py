"""Service Bus dead-letter queues: list and show by peeking, replay to the original entity.

Replay sends a copy with the SAME MessageId to the queue (or, for a subscription, to its
topic: Service Bus cannot address one subscription without a rule that matches only the
replay, and ours have none, so sibling subscriptions whose rules match receive it too and
their inboxes absorb a copy already handled), then completes the dead-lettered copy. The
kept MessageId makes a replay re-run after a crash between send and complete a duplicate
the broker drops. The same rule would drop a replay sent within the duplicate-detection
window of the ORIGINAL send, losing it once the copy is completed; such messages are
skipped with the time from which they can be replayed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.servicebus import ServiceBusMessage, ServiceBusReceivedMessage
from azure.servicebus.amqp import AmqpMessageBodyType

from agents.backbone.telemetry import TRACEPARENT, trace_id
from agents.ops.config import Catalogue, OpsError, ServiceBusEntity
from agents.ops.connections import Connections
from agents.ops.servicebus import StopAtFirstFailure, peek_all, receiver, settle_chosen

_PEEKERS = 8
REASON = "DeadLetterReason"
DESCRIPTION = "DeadLetterErrorDescription"
REPLAYED_FROM = "replayedFrom"
REPLAYED_SEQUENCE = "replayedSequenceNumber"
REPLAY_COUNT = "replayCount"
REPLAYED_REASON = "replayedDeadLetterReason"


@dataclass(frozen=True)
class DeadLetter:
    """One dead-lettered message as peeked (nothing is locked or consumed)."""

    entity: str
    sequence_number: int
    message_id: str | None
    enqueued_time: datetime | None
    reason: str | None
    description: str | None
    delivery_count: int | None
    subject: str | None
    content_type: str | None
    correlation_id: str | None
    properties: dict[str, Any] = field(repr=False)
    body: bytes | None = field(repr=False)

    @classmethod
    def of(cls, entity: ServiceBusEntity, message: ServiceBusReceivedMessage) -> DeadLetter:
        properties = _text_keys(message.application_properties or {})
        body = (b"".join(message.body)
                if message.body_type == AmqpMessageBodyType.DATA else None)
        return cls(entity.path, message.sequence_number or 0, message.message_id,
                   message.enqueued_time_utc, _text(properties.get(REASON)),
                   _text(properties.get(DESCRIPTION)), message.delivery_count,
                   message.subject, message.content_type, message.correlation_id,
                   properties, body)

    def summary(self) -> dict[str, Any]:
        return {"entity": self.entity, "sequenceNumber": self.sequence_number,
                "messageId": self.message_id,
                "enqueuedTime": self.enqueued_time.isoformat() if self.enqueued_time else None,
                "deadLetterReason": self.reason, "deadLetterErrorDescription": self.description,
                "deliveryCount": self.delivery_count, "subject": self.subject,
                "traceId": self.trace_id}

    @property
    def trace_id(self) -> str | None:
        """The trace of the work that sent it (`traceparent`, or the CloudEvents copy)."""
        for key in (TRACEPARENT, f"cloudEvents_{TRACEPARENT}"):
            if (found := trace_id(self.properties.get(key))) is not None:
                return found
        return None

    def to_dict(self) -> dict[str, Any]:
        """Everything: summary, properties and the body (JSON when it parses)."""
        return {**self.summary(), "contentType": self.content_type,
                "correlationId": self.correlation_id,
                "applicationProperties": {k: _jsonable(v) for k, v in self.properties.items()},
                "body": decode_body(self.body)}


@dataclass(frozen=True)
class ReplayResult:
    entity: str
    sequence_number: int
    message_id: str | None
    outcome: str  # replayed | would replay | skipped | failed
    detail: str


def list_dead_letters(connections: Connections, catalogue: Catalogue,
                      entity: str | None = None) -> list[DeadLetter]:
    """Every dead-lettered message of one entity, or of every queue and subscription."""
    entities = [catalogue.entity(entity)] if entity else list(catalogue.servicebus)
    for target in entities:
        connections.servicebus(target.setting)  # a missing setting fails here, by name

    def peek(target: ServiceBusEntity) -> list[DeadLetter]:
        with connections.own_servicebus(target.setting) as client, \
                receiver(client, target, dead_letter=True) as peeker:
            return [DeadLetter.of(target, m) for m in peek_all(peeker)]

    # Opening and closing a receiver link costs round trips; peek the entities side by side.
    with ThreadPoolExecutor(max_workers=_PEEKERS) as pool:
        return [letter for letters in pool.map(peek, entities) for letter in letters]


def show_dead_letter(connections: Connections, catalogue: Catalogue, entity: str,
                     sequence_number: int) -> DeadLetter:
    for letter in list_dead_letters(connections, catalogue, entity):
        if letter.sequence_number == sequence_number:
            return letter
    raise OpsError(f"no dead-lettered message {sequence_number} in {entity}")


def replay_dead_letters(
    connections: Connections, catalogue: Catalogue, entity: str, *,
    sequence_numbers: Collection[int] | None, dry_run: bool = False,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[ReplayResult]:
    """Resend the chosen dead-lettered messages (all when `sequence_numbers` is None) and
    complete each dead-lettered copy only after its resend succeeded."""
    target = catalogue.entity(entity)
    client = connections.servicebus(target.setting)
    with receiver(client, target, dead_letter=True) as dead_letters:
        letters = {letter.sequence_number: letter for letter in
                   (DeadLetter.of(target, m) for m in peek_all(dead_letters))}
        wanted = sorted(letters) if sequence_numbers is None else sorted(set(sequence_numbers))
        results: dict[int, ReplayResult] = {}
        eligible: list[int] = []
        for sequence in wanted:
            letter = letters.get(sequence)
            if letter is None:
                results[sequence] = ReplayResult(
                    target.path, sequence, None, "skipped",
                    "not in the dead-letter queue (already replayed or removed)")
            elif (why := _not_replayable(target, letter, now())) is not None:
                results[sequence] = ReplayResult(target.path, sequence, letter.message_id,
                                                 "skipped", why)
            else:
                eligible.append(sequence)
        sent_to = f"queue {target.send_to}"
        if target.topic:
            siblings = [e.name for e in catalogue.servicebus
                        if e.topic == target.topic and e.name != target.name]
            sent_to = f"topic {target.send_to}" + (
                f" (also {', '.join(siblings)} where their rules match)" if siblings else "")
        if dry_run:
            for sequence in eligible:
                results[sequence] = ReplayResult(target.path, sequence,
                                                 letters[sequence].message_id, "would replay",
                                                 f"to {sent_to}")
        elif eligible:
            with client.get_topic_sender(target.send_to) if target.topic \
                    else client.get_queue_sender(target.send_to) as sender:
                resend = StopAtFirstFailure(
                    lambda message: sender.send_messages(replay_message(target, message)))
                done = settle_chosen(dead_letters, chosen=eligible, act=resend)
            for sequence in eligible:
                letter = letters[sequence]
                results[sequence] = (
                    ReplayResult(target.path, sequence, letter.message_id, "replayed",
                                 f"sent to {sent_to}, dead-lettered copy completed")
                    if sequence in done else
                    ReplayResult(target.path, sequence, letter.message_id, "failed",
                                 resend.failed[sequence])
                    if sequence in resend.failed else
                    ReplayResult(target.path, sequence, letter.message_id, "skipped",
                                 "gone from the dead-letter queue before it could be locked"))
    return [results[sequence] for sequence in wanted]


def replay_message(entity: ServiceBusEntity, message: ServiceBusReceivedMessage
                   ) -> ServiceBusMessage:
    """The copy to resend: same body, MessageId and properties, without the dead-letter
    reason, plus where it was replayed from and how many times."""
    properties: dict[str | bytes, Any] = dict(
        _text_keys(message.application_properties or {}).items())
    reason = properties.pop(REASON, None)
    properties.pop(DESCRIPTION, None)
    properties[REPLAYED_FROM] = f"{entity.path}/$DeadLetterQueue"
    properties[REPLAYED_SEQUENCE] = message.sequence_number
    properties[REPLAY_COUNT] = int(properties.get(REPLAY_COUNT, 0)) + 1
    if reason is not None:
        properties[REPLAYED_REASON] = _text(reason)
    partition_key = message.partition_key
    if message.session_id is not None and partition_key != message.session_id:
        partition_key = None
    return ServiceBusMessage(
        b"".join(message.body), message_id=message.message_id,
        content_type=message.content_type, correlation_id=message.correlation_id,
        subject=message.subject, session_id=message.session_id, partition_key=partition_key,
        to=message.to, reply_to=message.reply_to,
        reply_to_session_id=message.reply_to_session_id,
        time_to_live=message.time_to_live, application_properties=properties)


def decode_body(body: bytes | None) -> Any:
    """JSON when the body parses as UTF-8 JSON, else text, else None (not a data body)."""
    if body is None:
        return None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return body.hex()
    try:
        return json.loads(text)
    except ValueError:
        return text


def _not_replayable(entity: ServiceBusEntity, letter: DeadLetter, now: datetime) -> str | None:
    if letter.body is None:
        return "not a data body (AMQP value or sequence): replay it by hand"
    if letter.message_id is not None and entity.requires_duplicate_detection \
            and letter.enqueued_time is not None:
        replayable_from = letter.enqueued_time + entity.duplicate_window
        if replayable_from > now:
            return (f"inside {entity.send_to}'s duplicate-detection window: the broker would "
                    f"drop the resend; replay after {replayable_from:%H:%M:%S} UTC")
    return None


def _text_keys(properties: Mapping[Any, Any]) -> dict[str, Any]:
    """Keys as str, and UTF-8 byte values as str: the SDK hands AMQP strings back as bytes,
    and a resend must keep them strings or correlation filters stop matching."""
    return {_text(k) or "": _string(v) for k, v in properties.items()}


def _string(value: object) -> object:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value
    return value


def _text(value: object) -> str | None:
    if value is None:
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _jsonable(value: object) -> object:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)
