"""Fixtures for backbone tests on Azurite (the table and counter are tests/integration's):
a schema registry and broker each."""

from __future__ import annotations

import pytest
from azure.data.tables import TableClient

from agents.backbone import (
    MessageProcessor,
    OutboxRelay,
    RequestCounter,
    SchemaRegistry,
)
from tests.integration.backbone.broker import BrokerPublisher, InMemoryBroker
from tests.integration.backbone.counter import register_counter_events


@pytest.fixture
def schemas() -> SchemaRegistry:
    chosen = SchemaRegistry()
    register_counter_events(chosen)
    return chosen


@pytest.fixture
def broker() -> InMemoryBroker:
    return InMemoryBroker(max_delivery_count=5)


@pytest.fixture
def publisher(processor: MessageProcessor) -> BrokerPublisher:
    """The processor's publisher (records every row it was asked to publish)."""
    chosen = processor.relay.publisher
    assert isinstance(chosen, BrokerPublisher)
    return chosen


@pytest.fixture
def processor(table: TableClient, broker: InMemoryBroker, schemas: SchemaRegistry,
              counter: RequestCounter) -> MessageProcessor:
    return make_processor(table, broker, schemas, counter)


def make_processor(table: TableClient, broker: InMemoryBroker, schemas: SchemaRegistry,
                   counter: RequestCounter | None = None) -> MessageProcessor:
    """A processor publishing to `broker` and reading time from the broker's clock, so
    scheduled deadlines and the broker agree when a test advances time."""
    relay = OutboxRelay(table, BrokerPublisher(broker), now=broker.now)
    return MessageProcessor(table, relay, registry=schemas, counter=counter, now=broker.now)


def rows(table: TableClient) -> dict[tuple[str, str], dict[str, object]]:
    """Every entity in the table, keyed by (PartitionKey, RowKey): a snapshot to compare."""
    return {(e["PartitionKey"], e["RowKey"]): dict(e) for e in table.list_entities()}
