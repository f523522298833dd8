"""How an `Envelope` travels on each broker, and how it is read back (always validated).

Outgoing events use CloudEvents structured mode (the whole event as the JSON body,
content type `application/cloudevents+json`) and also copy every attribute into AMQP
application properties with the `cloudEvents_` prefix (the CloudEvents AMQP binding), so
Service Bus subscription filters can match on `cloudEvents_type`. Incoming messages may be in
structured or binary mode (body = data, attributes in application properties).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from agents.backbone.envelope import Envelope, format_time
from agents.backbone.errors import InvalidEvent
from agents.backbone.schemas import SchemaRegistry

if TYPE_CHECKING:  # azure-core loads with the Event Grid publisher (cold start)
    from azure.core.messaging import CloudEvent

CLOUDEVENTS_CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
PROPERTY_PREFIXES = ("cloudEvents_", "cloudEvents:")


def application_properties(envelope: Envelope) -> dict[str, str]:
    """The event's attributes as `cloudEvents_<name>` application properties."""
    return {f"{PROPERTY_PREFIXES[0]}{name}": value for name, value in envelope.attributes().items()}


def encode_body(envelope: Envelope) -> bytes:
    return envelope.to_json().encode("utf-8")


def parse_servicebus(
    body: bytes | str | Sequence[bytes],
    properties: Mapping[Any, Any] | None = None,
    *,
    registry: SchemaRegistry,
) -> Envelope:
    """A Service Bus message body (+ application properties) to a validated `Envelope`.

    Works with `func.ServiceBusMessage.get_body()` / `.application_properties` and with the
    SDK's `ServiceBusReceivedMessage` (`b"".join(msg.body)`, `msg.application_properties`).
    """
    return _parse_amqp(body, properties, registry)


def parse_eventhub(
    body: bytes | str | Sequence[bytes],
    properties: Mapping[Any, Any] | None = None,
    *,
    registry: SchemaRegistry,
) -> Envelope:
    """An Event Hubs event body (+ its properties) to a validated `Envelope`."""
    return _parse_amqp(body, properties, registry)


def parse_eventgrid(
    payload: bytes | str | Mapping[str, Any] | Sequence[Mapping[str, Any]],
    *,
    registry: SchemaRegistry,
) -> list[Envelope]:
    """An Event Grid CloudEvents delivery (one event or a batch array) to `Envelope`s.

    `data_base64` is decoded as UTF-8 JSON. One invalid event invalidates the delivery,
    so Event Grid retries and then dead-letters it as a whole.
    """
    value: object = _load_json(payload) if isinstance(payload, bytes | str) else payload
    events = list(value) if isinstance(value, Sequence) else [value]
    return [registry.parse(_inline_base64(event)) for event in events]


def to_cloudevent(envelope: Envelope) -> CloudEvent[dict[str, Any]]:
    """The azure-core `CloudEvent` the Event Grid publisher sends."""
    from azure.core.messaging import CloudEvent

    extensions = {
        name: value
        for name in ("partitionkey", "correlationid", "causationid", "traceparent")
        if (value := getattr(envelope, name)) is not None
    }
    return CloudEvent(
        source=envelope.source,
        type=envelope.type,
        id=envelope.id,
        time=envelope.time,
        subject=envelope.subject,
        data=envelope.data,
        datacontenttype=envelope.datacontenttype,
        extensions=extensions or None,
    )


def _parse_amqp(
    body: bytes | str | Sequence[bytes], properties: Mapping[Any, Any] | None,
    registry: SchemaRegistry,
) -> Envelope:
    raw = body if isinstance(body, bytes | str) else b"".join(body)
    decoded = _load_json(raw)
    if isinstance(decoded, Mapping) and "specversion" in decoded:
        return registry.parse(decoded)
    attributes = _attributes_from_properties(properties or {})
    if "specversion" not in attributes:
        raise InvalidEvent(
            "not a CloudEvent: the body has no specversion and no cloudEvents_ properties",
            reason="NotACloudEvent",
        )
    return registry.parse({**attributes, "data": decoded})


def _attributes_from_properties(properties: Mapping[Any, Any]) -> dict[str, str]:
    attributes: dict[str, str] = {}
    for key, value in properties.items():
        name = key.decode("utf-8") if isinstance(key, bytes) else str(key)
        for prefix in PROPERTY_PREFIXES:
            if name.startswith(prefix):
                if isinstance(value, bytes):
                    value = value.decode("utf-8")
                attributes[name[len(prefix):]] = (
                    format_time(value) if isinstance(value, datetime) else str(value)
                )
    return attributes


def _load_json(raw: bytes | str) -> object:
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        return json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidEvent(f"body is not UTF-8 JSON: {error}", reason="InvalidEncoding") from None


def _inline_base64(event: object) -> object:
    if isinstance(event, Mapping) and "data_base64" in event:
        rest = {key: value for key, value in event.items() if key != "data_base64"}
        try:
            rest["data"] = _load_json(base64.b64decode(str(event["data_base64"]), validate=True))
        except ValueError as error:
            raise InvalidEvent(f"data_base64 is not base64: {error}",
                               reason="InvalidEncoding") from None
        return rest
    return event
