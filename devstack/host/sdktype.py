"""SDK-type Service Bus bindings: the message as the Azure host hands it to the Python worker.

For a trigger parameter annotated with azurefunctions-extensions-bindings-servicebus'
`ServiceBusReceivedMessage`, the Azure host sends `model_binding_data` (version "1.0",
source "AzureServiceBusReceivedMessage", content type "application/octet-stream") whose
content is the 16 lock-token bytes (a .NET Guid, i.e. UUID little-endian) followed by the
AMQP encoding of the received message, lock token in its delivery annotations. The worker
hands that to the package's `ServiceBusConverter.decode`; so does devstack, so the function
gets the very object it gets on Azure.

Known on Azure and here alike: the package's decoder starts reading the AMQP message after
the lock-token annotation, so the header section (delivery count, time to live, priority)
does not reach the function: `delivery_count` and `time_to_live` are None.
"""

from __future__ import annotations

import typing
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from azure.servicebus import ServiceBusReceivedMessage
from azure.servicebus.amqp import AmqpMessageBodyType
from azurefunctions.extensions.base import Datum, get_binding_registry

from devstack.amqp.codec import Described, Symbol, Timestamp, UByte, UInt, ULong, encode_value
from devstack.amqp.message import (
    AMQP_SEQUENCE,
    AMQP_VALUE,
    APPLICATION_PROPERTIES,
    DATA,
    DELIVERY_ANNOTATIONS,
    FOOTER,
    HEADER,
    MESSAGE_ANNOTATIONS,
    PROPERTIES,
    PROPERTY_FIELDS,
)

TRIGGER_BINDING = "serviceBusTrigger"
CLIENT_BINDING = "serviceBusClient"
SOURCE = "AzureServiceBusReceivedMessage"
CONTENT_TYPE = "application/octet-stream"
LOCK_TOKEN = Symbol("x-opt-lock-token")
_TIMESTAMP_ANNOTATIONS = frozenset({"x-opt-enqueued-time", "x-opt-locked-until",
                                    "x-opt-scheduled-enqueue-time"})
_TIMESTAMP_PROPERTIES = frozenset({"absolute_expiry_time", "creation_time"})
_SYMBOL_PROPERTIES = frozenset({"content_type", "content_encoding"})


@dataclass(frozen=True)
class ModelBindingData:
    """The worker protocol's ModelBindingData message, as the converter reads it."""

    content: bytes
    version: str = "1.0"
    source: str = SOURCE
    content_type: str = CONTENT_TYPE


@dataclass(frozen=True)
class CollectionModelBindingData:
    model_binding_data: list[ModelBindingData]


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def _section(code: int, value: Any, out: bytearray) -> None:
    encode_value(out, Described(ULong(code), value))


def amqp_bytes(message: ServiceBusReceivedMessage) -> bytes:
    """The received message re-encoded as AMQP sections, lock token in delivery annotations.

    The SDK hands AMQP strings over as bytes; they are sent back as strings (binary
    application properties would turn into strings: Service Bus apps rarely send them)."""
    raw = message.raw_amqp_message
    out = bytearray()
    header = raw.header
    if header is not None:
        _section(HEADER, [header.durable,
                          None if header.priority is None else UByte(header.priority),
                          None if header.time_to_live is None else UInt(header.time_to_live),
                          header.first_acquirer, UInt(header.delivery_count or 0)], out)
    _section(DELIVERY_ANNOTATIONS, {LOCK_TOKEN: uuid.UUID(str(message.lock_token))}, out)
    annotations = {Symbol(_text(key)): _annotation(str(_text(key)), value)
                   for key, value in (raw.annotations or {}).items()
                   if _text(key) != LOCK_TOKEN}
    if annotations:
        _section(MESSAGE_ANNOTATIONS, annotations, out)
    if raw.properties is not None:
        _section(PROPERTIES, [_property(name, getattr(raw.properties, name, None))
                              for name in PROPERTY_FIELDS], out)
    if raw.application_properties:
        _section(APPLICATION_PROPERTIES, {str(_text(k)): _text(v) for k, v in
                                          raw.application_properties.items()}, out)
    if raw.body_type == AmqpMessageBodyType.DATA:
        for chunk in raw.body:
            _section(DATA, bytes(chunk), out)
    elif raw.body_type == AmqpMessageBodyType.SEQUENCE:
        for sequence in raw.body:
            _section(AMQP_SEQUENCE, list(sequence), out)
    else:
        _section(AMQP_VALUE, raw.body, out)
    if raw.footer:
        _section(FOOTER, {Symbol(_text(k)): _text(v) for k, v in raw.footer.items()}, out)
    return bytes(out)


def _annotation(key: str, value: Any) -> Any:
    if key in _TIMESTAMP_ANNOTATIONS and isinstance(value, int):
        return Timestamp(value)
    return _text(value)


def _property(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name in _TIMESTAMP_PROPERTIES:
        return Timestamp(value)
    if name == "group_sequence":
        return UInt(value)
    if name == "user_id":
        return bytes(value)
    text = _text(value)
    return Symbol(text) if name in _SYMBOL_PROPERTIES else text


def binding_data(message: ServiceBusReceivedMessage) -> ModelBindingData:
    """What the Azure host sends for one message: lock-token bytes, then the AMQP message."""
    return ModelBindingData(uuid.UUID(str(message.lock_token)).bytes_le + amqp_bytes(message))


def is_sdk_type(annotation: Any) -> bool:
    """The worker's test: the parameter's type is an SDK type of an installed extension."""
    return bool(get_binding_registry().check_supported_type(annotation))


def is_settlement_client(annotation: Any) -> bool:
    """The worker's test for the one unbound parameter that gets the settlement client."""
    return bool(get_binding_registry().check_supported_grpc_client_type(annotation))


def settlement_client() -> Any:
    """The extension's `ServiceBusMessageActions`, obtained as the worker obtains it."""
    return get_binding_registry().get(CLIENT_BINDING).get_client()


def annotations_of(handler: Callable[..., Any]) -> dict[str, Any]:
    """Resolved parameter annotations (postponed string annotations evaluated, as the
    worker does), empty when they cannot be resolved."""
    try:
        return typing.get_type_hints(handler)
    except (NameError, TypeError):
        return {}


def decode(received: Sequence[ServiceBusReceivedMessage], *, many: bool,
           pytype: Any) -> Any:
    """The function's argument, built by the extension's own converter from binding data."""
    return decode_binding_data([binding_data(message) for message in received], many=many,
                               pytype=pytype)


def decode_binding_data(data: list[ModelBindingData], *, many: bool, pytype: Any) -> Any:
    """What the worker does with the binding data: the extension's converter decodes it."""
    datum = Datum(CollectionModelBindingData(data), "collection_model_binding_data") if many \
        else Datum(data[0], "model_binding_data")
    converter = get_binding_registry().get(TRIGGER_BINDING)
    return converter.decode(datum, trigger_metadata={}, pytype=pytype)
