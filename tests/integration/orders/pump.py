"""Drives the app's registered functions the way the Functions host does, over the backbone's
in-memory peek-lock broker (test support, not product code).

Service Bus: each due message is turned into a `func.ServiceBusMessage` by the worker's own
converter (`ServiceBusMessageInConverter.decode` with the trigger metadata the host sends),
the registered user function is called, and the message is settled as the host does with
`autoCompleteMessages`: returned -> complete, raised -> abandon (redelivery; the broker
dead-letters after MaxDeliveryCount). A poison message is dead-lettered with its reason
through the Blueprint's `poison_settlement` port, standing in for message actions.
HTTP: `func.HttpRequest` objects go to the route's user function.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import azure.functions as func
from azure.functions.meta import Datum
from azure.functions.servicebus import ServiceBusMessageInConverter

from agents.backbone.errors import PoisonMessage
from agents.orders import blueprint
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
        self.routes: dict[tuple[str, str], Callable[..., Any]] = {}
        for fn in self.functions.values():
            trigger = fn.get_trigger()
            settings = trigger.get_dict_repr()
            if settings["type"] == "serviceBusTrigger":
                entity = settings.get("queueName") or settings["topicName"]
                self.by_entity[entity] = fn.get_user_function()
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
