"""Parking an Event Hubs poison event on a Service Bus queue before checkpointing."""

from __future__ import annotations

import base64
import json

from agents.backbone import InvalidEvent, SchemaRegistry, parse_servicebus
from agents.backbone.parking import PARKED, park, parked_event, register_parking
from tests.integration.backbone.broker import BrokerPublisher, InMemoryBroker

POISON = "fraud-poison-events"


def poison(sequence_number: int = 17, body: bytes = b'{"not": "a cloudevent"}'):
    return parked_event(
        source="/agents/fraud", hub="fraud-payments", consumer_group="fraud-scoring",
        partition_id="2", offset="4096", sequence_number=sequence_number, body=body,
        properties={b"x-trace": b"abc"},
        error=InvalidEvent("not a CloudEvent", reason="NotACloudEvent"))


def test_a_parked_event_carries_position_error_and_original_body():
    broker = InMemoryBroker()
    park(BrokerPublisher(broker), POISON, poison())
    [message] = broker.available(POISON)
    schemas = SchemaRegistry()
    register_parking(schemas)
    parked = parse_servicebus(message.body, message.application_properties, registry=schemas)
    assert parked.type == PARKED
    assert {k: parked.data[k] for k in ("hub", "partitionId", "offset", "sequenceNumber",
                                        "reason", "body", "properties")} == {
        "hub": "fraud-payments", "partitionId": "2", "offset": "4096", "sequenceNumber": 17,
        "reason": "NotACloudEvent", "body": '{"not": "a cloudevent"}',
        "properties": {"x-trace": "abc"}}


def test_parking_the_same_event_again_after_a_crash_is_dropped_as_a_duplicate():
    broker = InMemoryBroker()
    publisher = BrokerPublisher(broker)
    park(publisher, POISON, poison())
    park(publisher, POISON, poison())
    park(publisher, POISON, poison(sequence_number=18))
    assert [json.loads(m.body)["data"]["sequenceNumber"] for m in broker.available(POISON)] == [
        17, 18]


def test_a_binary_body_is_kept_as_base64():
    event = poison(body=b"\xff\x00\x01")
    assert event.data["bodyEncoding"] == "base64"
    assert base64.b64decode(event.data["body"]) == b"\xff\x00\x01"
