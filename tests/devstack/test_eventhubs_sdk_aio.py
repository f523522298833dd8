"""Event Hubs in devstack, spoken to by the unmodified azure-eventhub SDK (aio clients),
including the aio Blob checkpoint store on Azurite."""

from __future__ import annotations

import asyncio
import datetime
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from azure.eventhub import EventData
from azure.eventhub.aio import EventHubConsumerClient, EventHubProducerClient
from azure.eventhub.exceptions import ConnectionLostError, EventHubError
from azure.eventhub.extensions.checkpointstoreblobaio import BlobCheckpointStore
from azure.storage.blob.aio import BlobServiceClient

from devstack.eventhubs import partition_index_for_key
from tests.devstack.test_eventhubs_sdk import EventHubsServer, eventhubs

__all__ = ["eventhubs"]  # the server fixture, shared with the sync conformance tests

DEADLINE = 30.0
PARTITIONS = {"0", "1", "2", "3"}
GROUP = "fraud-scoring"


async def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def producer(server: EventHubsServer, hub: str = "eh1") -> EventHubProducerClient:
    return EventHubProducerClient.from_connection_string(
        server.connection_string, eventhub_name=hub
    )


async def send(server: EventHubsServer, bodies: list[str], **kwargs: Any) -> None:
    async with producer(server, kwargs.pop("hub", "eh1")) as client:
        await client.send_batch([EventData(body) for body in bodies], **kwargs)


class AsyncReceiver:
    """`EventHubConsumerClient.receive` as a task, collecting events, errors, ownership."""

    def __init__(self, server: EventHubsServer, hub: str = "eh1", **kwargs: Any) -> None:
        self.events: list[tuple[str, EventData]] = []
        self.errors: list[Exception] = []
        self.owned: set[str] = set()
        self.namespace = ""  # as the SDK names it in checkpoint records
        self._checkpoint = kwargs.pop("checkpoint", False)
        self.client = EventHubConsumerClient.from_connection_string(
            server.connection_string,
            consumer_group=kwargs.pop("consumer_group", "$default"),
            eventhub_name=hub,
            # receive() only returns after its load-balancing sleep; keep that short.
            **{"load_balancing_interval": 0.5, **kwargs.pop("client_kwargs", {})},
        )
        self._task = asyncio.ensure_future(
            self.client.receive(
                on_event=self._on_event,
                on_error=self._on_error,
                on_partition_initialize=self._on_initialize,
                on_partition_close=self._on_close,
                **kwargs,
            )
        )

    async def _on_event(self, context: Any, event: EventData | None) -> None:
        if event is not None:
            self.events.append((context.partition_id, event))
            if self._checkpoint:
                await context.update_checkpoint(event)

    async def _on_error(self, context: Any, error: Exception) -> None:
        self.errors.append(error)

    async def _on_initialize(self, context: Any) -> None:
        self.namespace = context.fully_qualified_namespace
        self.owned.add(context.partition_id)

    async def _on_close(self, context: Any, reason: Any) -> None:
        self.owned.discard(context.partition_id)

    async def wait_for(self, count: int) -> list[str]:
        await wait_until(lambda: len(self.events) >= count, f"{count} events")
        return [event.body_as_str() for _, event in self.events]

    async def close(self) -> None:
        await self.client.close()
        await asyncio.wait_for(self._task, DEADLINE)


async def test_hub_and_partition_properties(eventhubs: EventHubsServer) -> None:
    async with producer(eventhubs) as client:
        await client.send_batch([EventData("a")], partition_id="1")
        hub = await client.get_eventhub_properties()
        partition = await client.get_partition_properties("1")
    assert hub["partition_ids"] == ["0", "1"]
    assert partition["last_enqueued_sequence_number"] == 0
    assert partition["is_empty"] is False


async def test_partition_key_routes_like_azure(eventhubs: EventHubsServer) -> None:
    async with producer(eventhubs, "fraud-payments") as client:
        for key in ("card-1", "card-2", "card-3"):
            await client.send_batch([EventData(key)], partition_key=key)
    receiver = AsyncReceiver(eventhubs, "fraud-payments", starting_position="-1")
    try:
        await receiver.wait_for(3)
    finally:
        await receiver.close()
    assert {e.body_as_str(): pid for pid, e in receiver.events} == {
        key: str(partition_index_for_key(key, 4)) for key in ("card-1", "card-2", "card-3")
    }


async def test_batch_properties_round_trip_and_start_at_a_sequence_number(
    eventhubs: EventHubsServer,
) -> None:
    async with producer(eventhubs) as client:
        batch = await client.create_batch(partition_id="0")
        for n in range(4):
            event = EventData(f"e{n}")
            event.properties = {"n": n, "label": f"event {n}"}
            batch.add(event)
        await client.send_batch(batch)
    receiver = AsyncReceiver(
        eventhubs, partition_id="0", starting_position=2, starting_position_inclusive=True
    )
    try:
        assert await receiver.wait_for(2) == ["e2", "e3"]
    finally:
        await receiver.close()
    _, third = receiver.events[0]
    assert third.properties == {b"n": 2, b"label": b"event 2"}
    assert (third.sequence_number, isinstance(third.offset, str)) == (2, True)


async def test_higher_owner_level_disconnects_the_lower_receiver(
    eventhubs: EventHubsServer,
) -> None:
    low = AsyncReceiver(eventhubs, partition_id="0", owner_level=0, starting_position="-1")
    await wait_until(lambda: eventhubs.readers("eh1", "0") == 1, "the first receiver")
    high = AsyncReceiver(eventhubs, partition_id="0", owner_level=1, starting_position="-1")
    try:
        await wait_until(lambda: bool(low.errors), "the lower receiver to be disconnected")
        assert isinstance(low.errors[0], ConnectionLostError)
        async with producer(eventhubs) as client:
            await client.send_batch([EventData("owner")], partition_id="0")
        assert await high.wait_for(1) == ["owner"]
    finally:
        await low.close()
        await high.close()


async def checkpoint_store(storage_connection_string: str) -> BlobCheckpointStore:
    container = f"checkpoints-{uuid.uuid4().hex[:12]}"
    async with BlobServiceClient.from_connection_string(storage_connection_string) as service:
        await service.create_container(container)
    return BlobCheckpointStore.from_connection_string(storage_connection_string, container)


def balanced(server: EventHubsServer, store: BlobCheckpointStore, **kwargs: Any) -> AsyncReceiver:
    return AsyncReceiver(
        server,
        "fraud-payments",
        consumer_group=GROUP,
        client_kwargs={
            "checkpoint_store": store,
            "load_balancing_interval": 0.5,
            "partition_ownership_expiration_interval": 15,
        },
        starting_position="-1",
        **kwargs,
    )


async def test_two_consumers_split_partitions_and_a_restart_resumes_at_the_checkpoint(
    eventhubs: EventHubsServer, storage_connection_string: str
) -> None:
    async with await checkpoint_store(storage_connection_string) as store:
        await split_then_resume(eventhubs, store)


async def split_then_resume(eventhubs: EventHubsServer, store: BlobCheckpointStore) -> None:
    first = balanced(eventhubs, store, checkpoint=True)
    second = balanced(eventhubs, store, checkpoint=True)
    try:
        await wait_until(
            lambda: (
                len(first.owned) == 2
                and len(second.owned) == 2
                and first.owned | second.owned == PARTITIONS
            ),
            "two consumers to own two partitions each",
        )
        async with producer(eventhubs, "fraud-payments") as client:
            for pid in sorted(PARTITIONS):
                await client.send_batch([EventData(f"old {pid}")], partition_id=pid)
        await wait_until(lambda: len(first.events) + len(second.events) == 4, "four events")
        assert {pid for pid, _ in first.events} == first.owned
        assert {pid for pid, _ in second.events} == second.owned
        deadline = time.monotonic() + DEADLINE
        while len(await store.list_checkpoints(first.namespace, "fraud-payments", GROUP)) < 4:
            assert time.monotonic() < deadline, "timed out waiting for four checkpoints"
            await asyncio.sleep(0.05)
    finally:
        await first.close()
        await second.close()
    async with producer(eventhubs, "fraud-payments") as client:
        for pid in sorted(PARTITIONS):
            await client.send_batch([EventData(f"new {pid}")], partition_id=pid)
    restarted = balanced(eventhubs, store)
    try:
        received = await restarted.wait_for(4)
    finally:
        await restarted.close()
    assert sorted(received) == [f"new {pid}" for pid in sorted(PARTITIONS)]


async def test_unknown_hub_is_reported(eventhubs: EventHubsServer) -> None:
    client = EventHubProducerClient.from_connection_string(
        eventhubs.connection_string, eventhub_name="no-such-hub", retry_total=0
    )
    async with client:
        with pytest.raises(EventHubError, match="no-such-hub"):
            await client.get_eventhub_properties()


async def test_batches_without_partition_rotate_over_all_partitions(
    eventhubs: EventHubsServer,
) -> None:
    for n in range(4):
        await send(eventhubs, [f"batch {n}"], hub="fraud-payments")
    receiver = AsyncReceiver(eventhubs, "fraud-payments", starting_position="-1")
    try:
        await receiver.wait_for(4)
    finally:
        await receiver.close()
    assert sorted(pid for pid, _ in receiver.events) == ["0", "1", "2", "3"]


async def test_events_carry_offset_sequence_number_enqueued_time(
    eventhubs: EventHubsServer,
) -> None:
    await send(eventhubs, ["x", "y", "z"], partition_id="1")
    receiver = AsyncReceiver(eventhubs, partition_id="1", starting_position="-1")
    try:
        await receiver.wait_for(3)
    finally:
        await receiver.close()
    events = [event for _, event in receiver.events]
    assert [event.sequence_number for event in events] == [0, 1, 2]
    assert all(isinstance(event.offset, str) for event in events)
    assert events[0].offset == "0" and int(events[1].offset or 0) > 0
    assert all(event.enqueued_time is not None for event in events)


async def test_receive_starts_after_an_offset(eventhubs: EventHubsServer) -> None:
    await send(eventhubs, ["e0", "e1", "e2"], partition_id="0")
    first = AsyncReceiver(eventhubs, partition_id="0", starting_position="-1")
    try:
        await first.wait_for(3)
    finally:
        await first.close()
    second_offset = first.events[1][1].offset
    after = AsyncReceiver(eventhubs, partition_id="0", starting_position=second_offset)
    try:
        assert await after.wait_for(1) == ["e2"]
    finally:
        await after.close()


async def test_receive_from_an_enqueued_time_skips_older_events(
    eventhubs: EventHubsServer,
) -> None:
    await send(eventhubs, ["old"], partition_id="0")
    async with producer(eventhubs) as client:
        old_time = (await client.get_partition_properties("0"))["last_enqueued_time_utc"]
    # Enqueued times have millisecond resolution: let the clock move past the old one's.
    later = old_time + datetime.timedelta(milliseconds=2)
    await wait_until(lambda: datetime.datetime.now(datetime.UTC) > later, "the clock")
    await send(eventhubs, ["new"], partition_id="0")
    receiver = AsyncReceiver(eventhubs, partition_id="0", starting_position=old_time)
    try:
        assert await receiver.wait_for(1) == ["new"]
    finally:
        await receiver.close()


async def test_receive_from_latest_gets_only_new_events(eventhubs: EventHubsServer) -> None:
    await send(eventhubs, ["before"], partition_id="0")
    receiver = AsyncReceiver(eventhubs, partition_id="0", starting_position="@latest")
    try:
        await wait_until(lambda: eventhubs.readers("eh1", "0") == 1, "the receiver to attach")
        await send(eventhubs, ["after"], partition_id="0")
        assert await receiver.wait_for(1) == ["after"]
    finally:
        await receiver.close()


async def test_lower_owner_level_is_refused(eventhubs: EventHubsServer) -> None:
    high = AsyncReceiver(eventhubs, partition_id="0", owner_level=5, starting_position="-1")
    await wait_until(lambda: eventhubs.readers("eh1", "0") == 1, "the exclusive receiver")
    low = AsyncReceiver(eventhubs, partition_id="0", owner_level=4, starting_position="-1")
    try:
        await wait_until(lambda: bool(low.errors), "the lower receiver to be refused")
        assert isinstance(low.errors[0], ConnectionLostError)
        assert "owner level 5 is active" in str(low.errors[0])
        assert high.errors == []
    finally:
        await low.close()
        await high.close()
