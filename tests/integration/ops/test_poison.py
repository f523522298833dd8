"""`python -m agents.ops poison`: parked Event Hubs poison events, listed and replayed."""

from __future__ import annotations

import json

from azure.eventhub import EventData, EventHubProducerClient
from azure.servicebus import ServiceBusMessage

from agents.backbone import InvalidEvent, ServiceBusPublisher, park, parked_event
from agents.ops.cli import SKIPPED
from tests.integration.ops.bus import peek, send
from tests.integration.support import read_hub

HUB = "fraud-payments"
PARKING = "fraud-poison-events"
BODY = b'{"card": "4242", "amount": "not a number"}'


def parked_payment(stack, bus) -> tuple[str, int]:
    """Publish a payment with a partition key, read it back as the fraud agent would, and
    park it as poison with the backbone. Returns (partition id, event sequence number)."""
    with EventHubProducerClient.from_connection_string(
            stack.connection_string, eventhub_name=HUB) as producer:
        event = EventData(BODY)
        event.properties = {"gateway": "sim"}
        producer.send_batch([event], partition_key="card-4242")
    [(partition, read)] = read_hub(stack.connection_string, HUB, expected=1)
    park(ServiceBusPublisher(bus), PARKING, parked_event(
        source="/agents/fraud", hub=HUB, consumer_group="fraud-scoring",
        partition_id=partition, offset=str(read.offset), sequence_number=read.sequence_number,
        body=b"".join(read.body), properties=read.properties,
        error=InvalidEvent("amount is not a number", reason="InvalidEvent")))
    return partition, read.sequence_number


def test_list_shows_where_the_event_was_read_and_why_it_failed(stack, bus, ops):
    partition, sequence = parked_payment(stack, bus)
    result = ops("poison", "list", "--json")
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.output)
    assert {k: row[k] for k in ("queue", "hub", "consumerGroup", "partitionId",
                                "eventSequenceNumber", "reason", "description")} == {
        "queue": PARKING, "hub": HUB, "consumerGroup": "fraud-scoring",
        "partitionId": partition, "eventSequenceNumber": sequence, "reason": "InvalidEvent",
        "description": "amount is not a number"}


def test_show_prints_the_original_body_and_properties(stack, bus, ops):
    parked_payment(stack, bus)
    [message] = peek(bus, PARKING)
    result = ops("poison", "show", str(message.sequence_number))
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["body"] == json.loads(BODY)
    assert shown["properties"] == {"gateway": "sim"}


def test_replay_republishes_to_the_same_partition_and_completes_the_parked_message(
        stack, bus, ops):
    partition, _ = parked_payment(stack, bus)
    result = ops("poison", "replay", "--all", "--json")
    assert result.exit_code == 0, result.output
    assert [r["outcome"] for r in json.loads(result.output)] == ["replayed"]
    events = read_hub(stack.connection_string, HUB, expected=2)
    assert [p for p, _ in events] == [partition, partition]
    replayed = events[1][1]
    assert b"".join(replayed.body) == BODY
    assert {k.decode() if isinstance(k, bytes) else k: v
            for k, v in replayed.properties.items()}["replayCount"] == 1
    assert peek(bus, PARKING) == []


def test_a_second_replay_skips_what_was_already_replayed(stack, bus, ops):
    parked_payment(stack, bus)
    [message] = peek(bus, PARKING)
    first = ops("poison", "replay", "--seq", str(message.sequence_number))
    second = ops("poison", "replay", "--seq", str(message.sequence_number), "--json")
    assert first.exit_code == 0, first.output
    assert second.exit_code == SKIPPED
    assert "not parked" in json.loads(second.output)[0]["detail"]
    assert len(read_hub(stack.connection_string, HUB, expected=2)) == 2


def test_dry_run_leaves_the_event_parked_and_the_hub_alone(stack, bus, ops):
    partition, _ = parked_payment(stack, bus)
    result = ops("poison", "replay", "--all", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)[0]["detail"] == f"to {HUB} partition {partition}"
    assert len(peek(bus, PARKING)) == 1
    assert len(read_hub(stack.connection_string, HUB, expected=1)) == 1


def test_a_stray_message_is_listed_as_such_and_never_replayed(stack, bus, ops):
    send(bus, PARKING, ServiceBusMessage(b"hello", message_id="stray-1"))
    parked_payment(stack, bus)
    listed = ops("poison", "list", "--json")
    assert listed.exit_code == 0, listed.output
    assert [row["reason"] for row in json.loads(listed.output)] == [
        "NotAParkedEvent", "InvalidEvent"]
    replayed = ops("poison", "replay", "--all", "--json")
    assert replayed.exit_code == SKIPPED
    assert [row["outcome"] for row in json.loads(replayed.output)] == ["skipped", "replayed"]
    assert [m.message_id for m in peek(bus, PARKING)] == ["stray-1"]
