"""The Event Hubs adapter with the official SDK against devstack's Event Hubs: batches per
hashed partition key, salted hot keys, events that parse back to the same envelopes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from azure.eventhub import EventHubProducerClient

from agents.backbone import (
    Envelope,
    EventHubsPublisher,
    OutboxRow,
    PartitionKeys,
    SchemaRegistry,
    parse_eventhub,
)
from agents.backbone.partitions import hashed
from devstack.server import DevStack
from tests.integration.support import read_hub

HUB = "fraud-payments"  # from infra/entities/eventhubs.json (4 partitions)
CONFIG = Path(__file__).resolve().parents[3] / "infra" / "entities" / "eventhubs.json"


@pytest.fixture(scope="module")
def devstack():
    with DevStack(configs=[json.loads(CONFIG.read_text())], port=0) as stack:
        yield stack


def payments(card: str, count: int) -> list[OutboxRow]:
    return [OutboxRow.new(card, Envelope.new("payments.authorised", {"n": n}, source="/pay",
                                             subject=card),
                          destination=HUB, scheduled_at=None, created_at=datetime.now(UTC))
            for n in range(count)]


def key_text(key: bytes | str | None) -> str | None:
    return key.decode() if isinstance(key, bytes) else key


@pytest.fixture(scope="module")
def hub(devstack):
    """Publish two calm cards and one hot card once; read back every event."""
    producer = EventHubProducerClient.from_connection_string(
        devstack.connection_string, eventhub_name=HUB)
    publisher = EventHubsPublisher({HUB: producer}, partition_keys=PartitionKeys({"hot": 4}))
    sent = {"4111": payments("4111", 6), "5555": payments("5555", 6), "hot": payments("hot", 40)}
    with producer:
        publisher.publish([row for rows in sent.values() for row in rows])
    received = read_hub(devstack.connection_string, HUB, expected=52)
    return sent, {event.message_id: (partition, event) for partition, event in received}


def test_every_row_arrives_once_with_its_message_id(hub):
    sent, by_id = hub
    assert set(by_id) == {row.message_id for rows in sent.values() for row in rows}


def test_one_card_keeps_one_hashed_key_one_partition_and_its_order(hub):
    sent, by_id = hub
    seen = sorted((by_id[row.message_id] for row in sent["4111"]),
                  key=lambda pe: pe[1].sequence_number)
    assert {key_text(event.partition_key) for _, event in seen} == {hashed("4111")}
    assert len({partition for partition, _ in seen}) == 1
    assert [json.loads(event.body_as_str())["data"]["n"] for _, event in seen] == list(range(6))


def test_a_salted_hot_card_spreads_over_its_sub_keys(hub):
    sent, by_id = hub
    assert len({key_text(by_id[row.message_id][1].partition_key) for row in sent["hot"]}) == 4


def test_events_parse_back_to_the_envelopes_sent(hub):
    sent, by_id = hub
    schemas = SchemaRegistry()
    schemas.register("payments.authorised", {"type": "object", "required": ["n"]})
    for row in sent["5555"]:
        event = by_id[row.message_id][1]
        assert parse_eventhub(event.body_as_str(), event.properties, registry=schemas) \
            == row.envelope
