"""Parking an Event Hubs poison event on a Service Bus queue before checkpointing, on
devstack's Service Bus (the `fraud-poison-events` queue of infra/entities/, duplicate
detection on)."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusReceivedMessage

from agents.backbone import InvalidEvent, SchemaRegistry, ServiceBusPublisher, parse_servicebus
from agents.backbone.parking import PARKED, PARKED_SCHEMA, park, parked_event
from devstack.server import DevStack
from tests.integration.backbone.servicebus_pump import receive_until

POISON = "fraud-poison-events"
SCHEMAS = {PARKED: PARKED_SCHEMA}


@pytest.fixture
def partition() -> str:
    """A partition id of this test's own, so events parked by other tests are told apart."""
    return f"p-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def bus(devstack: DevStack) -> Iterator[ServiceBusClient]:
    with ServiceBusClient.from_connection_string(devstack.connection_string) as client:
        yield client


@pytest.fixture
def publisher(devstack: DevStack) -> Iterator[ServiceBusPublisher]:
    with ServiceBusPublisher(
            ServiceBusClient.from_connection_string(devstack.connection_string)) as chosen:
        yield chosen


def poison(partition: str, sequence_number: int = 17,
           body: bytes = b'{"not": "a cloudevent"}'):
    return parked_event(
        source="/agents/fraud", hub="fraud-payments", consumer_group="fraud-scoring",
        partition_id=partition, offset="4096", sequence_number=sequence_number, body=body,
        properties={b"x-trace": b"abc"},
        error=InvalidEvent("not a CloudEvent", reason="NotACloudEvent"))


def parked_in(partition: str, messages: list[ServiceBusReceivedMessage]) -> list[dict]:
    schemas = SchemaRegistry(SCHEMAS)
    events = [parse_servicebus(b"".join(m.body), m.application_properties, registry=schemas)
              for m in messages]
    return [dict(e.data) for e in events
            if e.type == PARKED and e.data["partitionId"] == partition]


def test_a_parked_event_carries_position_error_and_original_body(
        bus: ServiceBusClient, publisher: ServiceBusPublisher, partition: str) -> None:
    park(publisher, POISON, poison(partition))
    received = receive_until(bus, POISON, lambda got: bool(parked_in(partition, got)))
    [data] = parked_in(partition, received)
    assert {k: data[k] for k in ("hub", "partitionId", "offset", "sequenceNumber",
                                 "reason", "body", "properties")} == {
        "hub": "fraud-payments", "partitionId": partition, "offset": "4096",
        "sequenceNumber": 17, "reason": "NotACloudEvent", "body": '{"not": "a cloudevent"}',
        "properties": {"x-trace": "abc"}}


def test_parking_the_same_event_again_after_a_crash_is_dropped_as_a_duplicate(
        bus: ServiceBusClient, publisher: ServiceBusPublisher, partition: str) -> None:
    park(publisher, POISON, poison(partition))
    park(publisher, POISON, poison(partition))
    park(publisher, POISON, poison(partition, sequence_number=18))
    # The broker's duplicate detection drops the second send: what arrives is 17, then 18.
    received = receive_until(bus, POISON, lambda got: len(parked_in(partition, got)) >= 2)
    with bus.get_queue_receiver(POISON) as receiver:
        for message in receiver.receive_messages(max_message_count=10, max_wait_time=0.5):
            if parked_in(partition, [message]):
                receiver.complete_message(message)
                received.append(message)
            else:  # another test's: leave it for that test
                receiver.abandon_message(message)
    assert [data["sequenceNumber"] for data in parked_in(partition, received)] == [17, 18]


def test_a_binary_body_is_kept_as_base64(partition: str) -> None:
    event = poison(partition, body=b"\xff\x00\x01")
    assert event.data["bodyEncoding"] == "base64"
    assert base64.b64decode(event.data["body"]) == b"\xff\x00\x01"
