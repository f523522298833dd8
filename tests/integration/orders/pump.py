"""Drives the app's registered functions the way the Functions host does, over the backbone's
in-memory peek-lock broker (test support, not product code).

Service Bus: for an SDK-type trigger (`ServiceBusReceivedMessage`) each due message is
encoded as the Azure host sends it (lock-token bytes + AMQP message) and decoded by the
extension's own `ServiceBusConverter`; the function settles it through `PumpMessageActions`
(the host's settlement service stands in here: settles on the broker by lock token). For a
classic trigger it becomes a `func.ServiceBusMessage` by the worker's own converter
(`ServiceBusMessageInConverter.decode` with the trigger metadata the host sends) and is
settled as the host does with `autoCompleteMessages`: returned -> complete, raised ->
abandon (redelivery; the broker dead-letters after MaxDeliveryCount); a poison message is
dead-lettered with its reason through the Blueprint's `poison_settlement` port.
HTTP: `func.HttpRequest` objects go to the route's user function.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import azure.functions as func
from azure.functions.meta import Datum
from azure.functions.servicebus import ServiceBusMessageInConverter

from agents.backbone.errors import PoisonMessage
from agents.orders import blueprint
from devstack.amqp.codec import Described, Symbol, UInt, ULong, encode_value
from devstack.amqp.message import (
    APPLICATION_PROPERTIES,
    DATA,
    DELIVERY_ANNOTATIONS,
    HEADER,
    MESSAGE_ANNOTATIONS,
    PROPERTIES,
)
from devstack.host import sdktype
from tests.integration.backbone.broker import BrokerMessage, InMemoryBroker

log = logging.getLogger(__name__)


def host_message(message: BrokerMessage) -> func.ServiceBusMessage:
    """The `func.ServiceBusMessage` the Python worker builds from the host's invocation."""
    properties = json.dumps(message.application_properties)
    metadata: dict[str, Datum] = {
        "MessageId": Datum(message.message_id, "string"),
        "DeliveryCount": Datum(message.delivery_count, "int"),
        "SequenceNumber": Datum(message.sequence_number, "int"),
        "LockToken": Datum(message.lock_token, "string"),
        "ApplicationProperties": Datum(properties, "json"),
        "UserProperties": Datum(properties, "json"),
    }
    for name, value in (("ContentType", message.content_type),
                        ("CorrelationId", message.correlation_id),
                        ("Subject", message.subject), ("Label", message.subject)):
        if value is not None:
            metadata[name] = Datum(value, "string")
    decoded = ServiceBusMessageInConverter.decode(Datum(message.body, "bytes"),
                                                  trigger_metadata=metadata)
    assert isinstance(decoded, func.ServiceBusMessage)
    return decoded


def sdk_message(message: BrokerMessage, pytype: Any) -> Any:
    """The SDK-type message the extension decodes from what the Azure host sends."""
    assert message.lock_token is not None
    lock_token = uuid.UUID(message.lock_token)
    out = bytearray()
    for code, value in (
            (HEADER, [None, None, None, None, UInt(message.delivery_count)]),
            (DELIVERY_ANNOTATIONS, {Symbol("x-opt-lock-token"): lock_token}),
            (MESSAGE_ANNOTATIONS, {Symbol("x-opt-sequence-number"): message.sequence_number}),
            (PROPERTIES, [message.message_id, None, None, message.subject, None,
                          message.correlation_id,
                          Symbol(message.content_type) if message.content_type else None]),
            (APPLICATION_PROPERTIES, message.application_properties),
            (DATA, message.body)):
        encode_value(out, Described(ULong(code), value))
    data = sdktype.ModelBindingData(lock_token.bytes_le + bytes(out))
    return sdktype.decode_binding_data([data], many=False, pytype=pytype)


class PumpMessageActions:
    """`ServiceBusMessageActions` for the pump: settles on the broker by lock token."""

    def __init__(self, broker: InMemoryBroker, entity: str, message: BrokerMessage) -> None:
        self._receiver = broker.receiver(entity)
        self._message = message
        self.settlement: str | None = None
        self.reason: str | None = None

    def _settling(self, received: Any, settlement: str) -> None:
        assert str(received.lock_token) == self._message.lock_token
        assert self.settlement is None, "settled twice"
        self.settlement = settlement

    def complete(self, received: Any) -> None:
        self._settling(received, "completed")
        self._receiver.complete_message(self._message)

    def abandon(self, received: Any) -> None:
        self._settling(received, "abandoned")
        self._receiver.abandon_message(self._message)

    def deadletter(self, received: Any, deadletter_reason: str | None = None,
                   deadletter_error_description: str | None = None) -> None:
        self._settling(received, "dead-lettered")
        self.reason = deadletter_reason
        self._receiver.dead_letter_message(self._message, reason=deadletter_reason,
                                           error_description=deadletter_error_description)


@dataclass
class RecordingPoisonSettlement:
    """Remembers which locked messages the trigger asked to dead-letter, and why."""

    requests: dict[str, PoisonMessage] = field(default_factory=dict)

    def dead_letter(self, message: func.ServiceBusMessage, error: PoisonMessage) -> None:
        assert message.lock_token is not None
        self.requests[message.lock_token] = error


@dataclass
class Delivery:
    queue: str
    message_id: str
    delivery_count: int
    settlement: str
    error: str | None = None


class FunctionHost:
    """The registered functions of a `func.FunctionApp`, invoked like the host invokes them."""

    def __init__(self, functions: list[Any], broker: InMemoryBroker) -> None:
        """`functions`: `app.get_functions()` (which may be called once per app)."""
        self.broker = broker
        self.functions = {fn.get_function_name(): fn for fn in functions}
        self.by_entity: dict[str, Callable[..., Any]] = {}
        # Entities whose trigger takes the SDK type, with that type.
        self.sdk_types: dict[str, Any] = {}
        self.routes: dict[tuple[str, str], Callable[..., Any]] = {}
        for fn in self.functions.values():
            trigger = fn.get_trigger()
            settings = trigger.get_dict_repr()
            if settings["type"] == "serviceBusTrigger":
                entity = settings.get("queueName") or settings["topicName"]
                self.by_entity[entity] = fn.get_user_function()
                pytype = sdktype.annotations_of(fn.get_user_function()).get(settings["name"])
                if sdktype.is_sdk_type(pytype):
                    self.sdk_types[entity] = pytype
            elif settings["type"] == "httpTrigger":
                for method in settings["methods"]:
                    self.routes[(str(method.value), settings["route"])] = fn.get_user_function()
        self.poison = RecordingPoisonSettlement()
        self.deliveries: list[Delivery] = []
        self._previous: blueprint.PoisonSettlement | None = None

    def __enter__(self) -> FunctionHost:
        self._previous = blueprint.poison_settlement
        blueprint.poison_settlement = self.poison
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._previous is not None
        blueprint.poison_settlement = self._previous

    def deliver_one(self, entity: str) -> Delivery | None:
        receiver = self.broker.receiver(entity)
        received = receiver.receive_messages(max_message_count=1)
        if not received:
            return None
        message = received[0]
        if entity in self.sdk_types:
            return self._deliver_sdk_type(entity, message)
        lock_token = message.lock_token
        try:
            self.by_entity[entity](host_message(message))
        except Exception as error:
            log.info("abandoning %s on %s: %r", message.message_id, entity, error)
            receiver.abandon_message(message)
            delivery = Delivery(entity, message.message_id, message.delivery_count,
                                "abandoned", repr(error))
        else:
            poison = self.poison.requests.pop(str(lock_token), None)
            if poison is not None:
                receiver.dead_letter_message(message, reason=poison.reason,
                                             error_description=poison.description)
                delivery = Delivery(entity, message.message_id, message.delivery_count,
                                    "dead-lettered", poison.reason)
            else:
                receiver.complete_message(message)
                delivery = Delivery(entity, message.message_id, message.delivery_count,
                                    "completed")
        self.deliveries.append(delivery)
        return delivery

    def _deliver_sdk_type(self, entity: str, message: BrokerMessage) -> Delivery:
        actions = PumpMessageActions(self.broker, entity, message)
        delivery_count = message.delivery_count
        try:
            self.by_entity[entity](sdk_message(message, self.sdk_types[entity]), actions)
        except Exception as error:
            # The function threw without settling: the host abandons, as with auto-complete.
            log.info("abandoning %s on %s: %r", message.message_id, entity, error)
            if actions.settlement is None:
                self.broker.receiver(entity).abandon_message(message)
            delivery = Delivery(entity, message.message_id, delivery_count, "abandoned",
                                repr(error))
        else:
            # Unsettled after a clean return: the lock would run out; the pump says so.
            assert actions.settlement is not None, f"{entity}: the function left it unsettled"
            delivery = Delivery(entity, message.message_id, delivery_count, actions.settlement,
                                actions.reason)
        self.deliveries.append(delivery)
        return delivery

    def drain(self, *, limit: int = 5_000) -> list[Delivery]:
        """Deliver every due message on every triggered entity until none is due."""
        delivered: list[Delivery] = []
        while any(self.broker.due(entity) for entity in self.by_entity):
            for entity in self.by_entity:
                delivery = self.deliver_one(entity)
                if delivery is not None:
                    delivered.append(delivery)
                if len(delivered) >= limit:
                    raise RuntimeError(f"not drained within {limit} deliveries")
        return delivered

    def http(self, method: str, route: str, *, body: Any = None,
             headers: Mapping[str, str] | None = None,
             route_params: Mapping[str, str] | None = None) -> func.HttpResponse:
        raw = body if isinstance(body, bytes) else (
            b"" if body is None else json.dumps(body).encode())
        path = route
        for name, value in (route_params or {}).items():
            path = path.replace("{" + name + "}", value)
        request = func.HttpRequest(method, f"http://127.0.0.1/api/{path}", headers=headers or {},
                                   route_params=dict(route_params or {}), body=raw)
        response: func.HttpResponse = self.routes[(method, route)](request)
        return response


def body_of(response: func.HttpResponse) -> Any:
    return json.loads(response.get_body())
