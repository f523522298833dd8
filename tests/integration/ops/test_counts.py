"""`python -m agents.ops counts`: message counts from the administration API's runtime
properties, against devstack's administration endpoint."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.servicebus import ServiceBusMessage

from agents.ops.counts import admin_client
from devstack.server import DevStack
from tests.integration.ops.bus import dead_letter, send

QUEUE = "orders-saga"


@pytest.fixture
def stack(entities_dir: Path) -> Iterator[DevStack]:
    configs = [entities_dir / "servicebus.json", entities_dir / "eventhubs.json"]
    with DevStack(configs, port=0, management_port=0) as server:
        yield server


def admin_settings(stack: DevStack) -> dict[str, str]:
    admin = str(stack.management_connection_string)
    return {f"{domain}_SERVICEBUS_ADMIN": admin for domain in ("ORDERS", "FRAUD", "TRIAGE")}


def test_counts_show_active_and_dead_lettered_messages_without_receiving(ops, bus, stack):
    send(bus, QUEUE, *(ServiceBusMessage(f"m{i}", message_id=f"m{i}") for i in range(3)))
    dead_letter(bus, QUEUE, 1)

    result = ops("counts", "--entity", QUEUE, "--json", extra=admin_settings(stack))

    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)
    assert row == {"entity": QUEUE, "active": 2, "deadLetter": 1, "scheduled": 0,
                   "transfer": 0, "transferDeadLetter": 0, "total": 3}
    with bus.get_queue_receiver(QUEUE) as receiver:
        assert len(receiver.peek_messages(max_message_count=10)) == 2  # nothing consumed


def test_counts_list_every_queue_and_subscription(ops, stack):
    result = ops("counts", "--json", extra=admin_settings(stack))
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert QUEUE in [row["entity"] for row in rows]
    assert any("/" in row["entity"] and row["scheduled"] is None for row in rows)


def test_an_emulator_connection_uses_the_administration_port_5300():
    setting = ("Endpoint=sb://localhost:6000;SharedAccessKeyName=k;SharedAccessKey=v;"
               "UseDevelopmentEmulator=true;")
    with admin_client("ORDERS_SERVICEBUS", {"ORDERS_SERVICEBUS": setting}) as client:
        assert client.fully_qualified_namespace == "localhost:5300"
