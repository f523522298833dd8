"""Event Hubs triggers through the official SDK against devstack's Event Hubs, with the
Blob checkpoint store on Azurite."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from azure.eventhub import EventData
from azure.eventhub.aio import EventHubConsumerClient, EventHubProducerClient
from azure.storage.blob.aio import ContainerClient

from devstack.azurite import Azurite
from devstack.host.eventhubs import CHECKPOINT_CONTAINER
from tests.devstack_host.helpers import eventually, read_json_blobs


@pytest.fixture
def host_storage() -> Iterator[Azurite]:
    """A fresh storage account per test: checkpoints from another test's hub would leak in."""
    with Azurite() as storage:
        yield storage


async def publish(connection: str, hub: str, *bodies: str, partition_key: str = "card-1"):
    async with EventHubProducerClient.from_connection_string(
            connection, eventhub_name=hub) as producer:
        batch = await producer.create_batch(partition_key=partition_key)
        for body in bodies:
            batch.add(EventData(body))
        await producer.send_batch(batch)


async def checkpoints(storage: str, hub: str) -> dict[str, int]:
    """Partition id -> checkpointed sequence number, read from the checkpoint blobs."""
    found = {}
    async with ContainerClient.from_connection_string(storage, CHECKPOINT_CONTAINER) as c:
        if not await c.exists():
            return {}
        async for blob in c.list_blobs(include=["metadata"]):
            parts = blob.name.split("/")
            if parts[1] == hub and parts[3] == "checkpoint":
                found[parts[4]] = int(blob.metadata["sequencenumber"])
    return found


async def test_batch_reaches_the_function_with_partition_metadata_and_is_checkpointed(
        servicebus, start_host, host_storage):
    connection = servicebus.connection_string
    await start_host("eh_payments_received", SAMPLE_EVENTHUBS=connection)
    await publish(connection, "sample-payments", "p1", "p2", "p3")
    seen = await eventually(lambda: read_json_blobs(host_storage.connection_string, "observations",
                                                    "payments/"))
    events = [e for batch in seen for e in batch]
    assert [e["body"] for e in events] == ["p1", "p2", "p3"]
    assert {e["partition_key"] for e in events} == {"card-1"}
    assert len({e["partition"] for e in events}) == 1
    assert all(e["enqueued"] and e["offset"] is not None for e in events)
    last = events[-1]["sequence_number"]
    await eventually(lambda: _checkpointed_at(host_storage.connection_string, last))


async def _checkpointed_at(storage: str, sequence_number: int) -> bool:
    return sequence_number in (await checkpoints(storage, "sample-payments")).values()


async def test_failing_batch_is_retried_by_policy_then_checkpointed_anyway(
        servicebus, start_host, host_storage):
    connection = servicebus.connection_string
    host = await start_host("eh_payments_received", SAMPLE_EVENTHUBS=connection)
    await publish(connection, "sample-payments", "poison")
    await eventually(lambda: len(host.invoker.records) >= 3)
    assert [(r.retry_count, r.succeeded) for r in host.invoker.records] == [
        (0, False), (1, False), (2, False)]
    await eventually(lambda: checkpoints(host_storage.connection_string, "sample-payments"))
    await host.stop()

    restarted = await start_host("eh_payments_received", SAMPLE_EVENTHUBS=connection)
    await publish(connection, "sample-payments", "healthy")
    seen = await eventually(lambda: read_json_blobs(host_storage.connection_string, "observations",
                                                    "payments/"))
    assert [e["body"] for batch in seen for e in batch] == ["healthy"]
    assert all(r.succeeded for r in restarted.invoker.records)


async def test_cardinality_one_gets_single_events_and_event_hub_output_sends(
        servicebus, start_host, host_storage):
    connection = servicebus.connection_string
    host = await start_host("eh_alert_received", SAMPLE_EVENTHUBS=connection)
    await publish(connection, "sample-alerts", "a1", "a2")
    await eventually(lambda: len(host.invoker.records) >= 2)
    received: list[str] = []

    async def on_event(partition_context, event):
        if event is not None:
            received.append(event.body_as_str())

    consumer = EventHubConsumerClient.from_connection_string(
        connection, consumer_group="$default", eventhub_name="sample-payments")
    async with consumer:
        task = asyncio.create_task(consumer.receive(
            on_event=on_event, starting_position="-1", max_wait_time=0.5))
        await eventually(lambda: len(received) >= 2)
        task.cancel()
    assert sorted(received) == ["from-alert:a1", "from-alert:a2"]
    assert all(r.succeeded for r in host.invoker.records)
