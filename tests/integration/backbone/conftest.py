"""Fixtures for backbone tests on Azurite (the table and counter are tests/integration's):
a schema registry and the test's deliveries each."""

from __future__ import annotations

import pytest
from azure.data.tables import TableClient

from agents.backbone import (
    MessageProcessor,
    OutboxRelay,
    RequestCounter,
    SchemaRegistry,
)
from tests.integration.backbone.counter import register_counter_events
from tests.integration.backbone.deliveries import Deliveries


@pytest.fixture
def schemas() -> SchemaRegistry:
    chosen = SchemaRegistry()
    register_counter_events(chosen)
    return chosen


@pytest.fixture
def deliveries() -> Deliveries:
    return Deliveries(max_deliveries=5)


@pytest.fixture
def processor(table: TableClient, deliveries: Deliveries, schemas: SchemaRegistry,
              counter: RequestCounter) -> MessageProcessor:
    return make_processor(table, deliveries, schemas, counter)


def make_processor(table: TableClient, deliveries: Deliveries, schemas: SchemaRegistry,
                   counter: RequestCounter | None = None) -> MessageProcessor:
    """A processor publishing into `deliveries` and reading time from their clock, so
    scheduled deadlines fall due when a test advances it."""
    relay = OutboxRelay(table, deliveries, now=deliveries.now)
    return MessageProcessor(table, relay, registry=schemas, counter=counter, now=deliveries.now)


def rows(table: TableClient) -> dict[tuple[str, str], dict[str, object]]:
    """Every entity in the table, keyed by (PartitionKey, RowKey): a snapshot to compare."""
    return {(e["PartitionKey"], e["RowKey"]): dict(e) for e in table.list_entities()}
