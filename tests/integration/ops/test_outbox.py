"""`python -m agents.ops outbox`: rows a handler committed but could not dispatch (the broker
was unreachable), listed from Azurite and swept to devstack with the backbone's sweeper."""

from __future__ import annotations

import json
import uuid

import pytest
from azure.data.tables import TableServiceClient

from agents.backbone import (
    Envelope,
    MessageProcessor,
    OutboxRelay,
    OutboxRow,
    PublishFailed,
    SchemaRegistry,
    state_table,
)
from tests.integration.ops.bus import receive_all

DESTINATION = "orders-inventory"


class UnreachableBroker:
    def publish(self, rows: list[OutboxRow]) -> None:
        raise PublishFailed("Service Bus is unreachable")


@pytest.fixture
def table_name() -> str:
    """A table of its own: Azurite lives for the whole session."""
    return f"opsoutbox{uuid.uuid4().hex[:10]}"


def committed_but_not_dispatched(azurite, table_name: str, order_id: str = "o-17") -> str:
    """Handle an order whose outbox row cannot be published; the event id of that row."""
    with TableServiceClient.from_connection_string(azurite.connection_string) as tables:
        table = state_table(tables, table_name)
        schemas = SchemaRegistry()
        schemas.register("orders.stock.reserve", {"type": "object", "required": ["orderId"]})
        processor = MessageProcessor(table, OutboxRelay(table, UnreachableBroker()),
                                     registry=schemas)
        command = Envelope.new("orders.stock.reserve", {"orderId": order_id},
                               source="/agents/orders", subject=order_id)
        with pytest.raises(PublishFailed):
            processor.run(order_id, lambda uow: uow.emit(command, destination=DESTINATION),
                          inbox_id=f"message-{order_id}")
    return command.id


def test_pending_lists_rows_from_every_state_table(azurite, table_name, ops):
    event_id = committed_but_not_dispatched(azurite, table_name)
    result = ops("outbox", "pending", "--json")
    assert result.exit_code == 0, result.output
    [row] = [r for r in json.loads(result.output) if r["table"] == table_name]
    assert {k: row[k] for k in ("partitionKey", "eventId", "type", "destination")} == {
        "partitionKey": "o-17", "eventId": event_id, "type": "orders.stock.reserve",
        "destination": DESTINATION}


def test_older_than_leaves_out_rows_younger_than_the_age(azurite, table_name, ops):
    committed_but_not_dispatched(azurite, table_name)
    result = ops("outbox", "pending", "--older-than", "1h", "--table", table_name, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == []


def test_sweep_dispatches_pending_rows_through_the_backbone_sweeper(azurite, table_name, ops,
                                                                    bus):
    event_id = committed_but_not_dispatched(azurite, table_name)
    result = ops("outbox", "sweep", "--table", table_name, "--json")
    assert result.exit_code == 0, result.output
    assert [r["eventId"] for r in json.loads(result.output)] == [event_id]
    [message] = receive_all(bus, DESTINATION)
    assert message.message_id == event_id
    after = ops("outbox", "pending", "--table", table_name, "--json")
    assert json.loads(after.output) == []


def test_a_malformed_age_is_a_usage_error(ops):
    result = ops("outbox", "pending", "--older-than", "soon")
    assert result.exit_code == 2
    assert "not a duration" in result.output
