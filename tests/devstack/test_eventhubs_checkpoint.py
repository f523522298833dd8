"""The Blob checkpoint store (on Azurite) balances devstack Event Hubs partitions (sync SDK)."""

from __future__ import annotations

import uuid

from azure.eventhub import EventData
from azure.eventhub.extensions.checkpointstoreblob import BlobCheckpointStore
from azure.storage.blob import BlobServiceClient

from tests.devstack.test_eventhubs_sdk import (
    EventHubsServer,
    Receiver,
    bodies,
    eventhubs,
    producer,
    send,
    wait_until,
)

__all__ = ["eventhubs"]  # the server fixture, shared with the sync conformance tests

HUB = "fraud-payments"
GROUP = "fraud-scoring"
PARTITIONS = {"0", "1", "2", "3"}
BALANCING = {"load_balancing_interval": 0.5, "partition_ownership_expiration_interval": 15}


def checkpoint_store(storage_connection_string: str) -> BlobCheckpointStore:
    container = f"checkpoints-{uuid.uuid4().hex[:12]}"
    BlobServiceClient.from_connection_string(storage_connection_string).create_container(container)
    return BlobCheckpointStore.from_connection_string(storage_connection_string, container)


def balanced_consumer(
    server: EventHubsServer, store: BlobCheckpointStore, *, checkpoint: bool = False
) -> Receiver:
    return Receiver(
        server,
        HUB,
        checkpoint=checkpoint,
        consumer_group=GROUP,
        client_kwargs={"checkpoint_store": store, **BALANCING},
        starting_position="-1",
    )


def test_two_consumers_split_the_partitions_disjointly(
    eventhubs: EventHubsServer, storage_connection_string: str
) -> None:
    store = checkpoint_store(storage_connection_string)
    first = balanced_consumer(eventhubs, store)
    second = None
    try:
        wait_until(lambda: first.owned == PARTITIONS, "the first consumer to own everything")
        second = balanced_consumer(eventhubs, store)
        joined = second

        def balanced() -> bool:
            return (
                len(first.owned) == 2
                and len(joined.owned) == 2
                and first.owned | joined.owned == PARTITIONS
                and all(eventhubs.readers(HUB, pid, GROUP) == 1 for pid in PARTITIONS)
            )

        wait_until(balanced, "two consumers to own two partitions each")
        assert first.owned.isdisjoint(second.owned)
        with producer(eventhubs, HUB) as client:
            for pid in sorted(PARTITIONS):
                client.send_batch([EventData(f"to {pid}")], partition_id=pid)
        wait_until(
            lambda: len(first.events) + len(joined.events) == len(PARTITIONS),
            "one event from every partition",
        )
        assert {pid for pid, _ in first.events} == first.owned
        assert {pid for pid, _ in second.events} == second.owned
    finally:
        first.close()
        if second is not None:
            second.close()


def test_a_restarted_consumer_resumes_after_its_checkpoint(
    eventhubs: EventHubsServer, storage_connection_string: str
) -> None:
    store = checkpoint_store(storage_connection_string)
    send(eventhubs, [EventData(f"old {n}") for n in range(3)], HUB, partition_id="2")
    before = balanced_consumer(eventhubs, store, checkpoint=True)
    try:
        assert bodies(before.wait_for(3)) == ["old 0", "old 1", "old 2"]
        wait_until(
            lambda: any(
                checkpoint["sequence_number"] == 2
                for checkpoint in store.list_checkpoints(before.namespace, HUB, GROUP)
            ),
            "the checkpoint to be stored",
        )
    finally:
        before.close()
    send(eventhubs, [EventData("new 0"), EventData("new 1")], HUB, partition_id="2")
    after = balanced_consumer(eventhubs, store)
    try:
        assert bodies(after.wait_for(2)) == ["new 0", "new 1"]
    finally:
        after.close()
