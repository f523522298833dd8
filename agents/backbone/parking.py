"""Parking poison events from Event Hubs, which has no dead-letter queue and checkpoints
past failures: the failing event is sent to a Service Bus queue (e.g. `fraud-poison-events`)
with its partition, offset, sequence number and error BEFORE the batch is checkpointed.

The parked event's id is derived from (hub, consumer group, partition, sequence number), so
parking it again after a crash reuses the MessageId and duplicate detection drops the copy.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from agents.backbone.envelope import Envelope
from agents.backbone.errors import BackboneError
from agents.backbone.outbox import OutboxRow
from agents.backbone.publishers import Publisher

PARKED = "backbone.poison.parked"
_NAMESPACE = uuid.UUID("6f1d3a52-8c1e-4f7e-9a51-5b0e7c2d9e10")

PARKED_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["hub", "consumerGroup", "partitionId", "offset", "sequenceNumber", "reason",
                 "description", "body", "bodyEncoding", "properties"],
    "properties": {
        "hub": {"type": "string"}, "consumerGroup": {"type": "string"},
        "partitionId": {"type": "string"}, "offset": {"type": "string"},
        "sequenceNumber": {"type": "integer"}, "reason": {"type": "string"},
        "description": {"type": "string"}, "body": {"type": "string"},
        "bodyEncoding": {"enum": ["utf-8", "base64"]},
        "properties": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}


def parked_event(
    *, source: str, hub: str, consumer_group: str, partition_id: str, offset: str,
    sequence_number: int, body: bytes, properties: Mapping[Any, Any], error: BaseException,
) -> Envelope:
    """The envelope describing one poison event and why it failed."""
    position = f"{hub}/{consumer_group}/{partition_id}/{sequence_number}"
    try:
        text, encoding = body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(body).decode("ascii"), "base64"
    reason = error.reason if isinstance(error, BackboneError) else type(error).__name__
    description = error.description if isinstance(error, BackboneError) else str(error)
    return Envelope.new(
        PARKED,
        {"hub": hub, "consumerGroup": consumer_group, "partitionId": partition_id,
         "offset": offset, "sequenceNumber": sequence_number, "reason": reason,
         "description": description or reason, "body": text, "bodyEncoding": encoding,
         "properties": {_text(k): _text(v) for k, v in properties.items()}},
        source=source, subject=position, partitionkey=f"{hub}/{partition_id}",
        id=str(uuid.uuid5(_NAMESPACE, position)),
    )


def park(publisher: Publisher, destination: str, event: Envelope) -> OutboxRow:
    """Send a parked event now (not through an outbox: the checkpoint waits on it)."""
    row = OutboxRow.new(event.partitionkey or event.id, event, destination=destination,
                        scheduled_at=None, created_at=datetime.now(UTC))
    publisher.publish([row])
    return row


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
