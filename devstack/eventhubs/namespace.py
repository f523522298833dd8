"""An Event Hubs namespace in memory: hubs, partition logs, consumer groups, owner levels.

Protocol-free: the AMQP node handlers translate links and management requests into calls
on `EventHubsNamespace`, and its errors into AMQP error conditions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from devstack.eventhubs.entities import EventHubSpec
from devstack.eventhubs.partition_key import partition_index_for_key
from devstack.eventhubs.partition_log import PartitionLog, PartitionProperties

# Error conditions the SDKs map to named exceptions.
NOT_FOUND = "amqp:not-found"
LINK_STOLEN = "amqp:link:stolen"  # azure-eventhub raises ConnectionLostError (consumer kicked)
RESOURCE_LIMIT = "amqp:resource-limit-exceeded"
MAX_READERS_PER_PARTITION = 5  # the service's limit per partition and consumer group


class EventHubsError(Exception):
    """A request the service refuses, with the AMQP error condition it answers with."""

    def __init__(self, condition: str, description: str) -> None:
        super().__init__(description)
        self.condition = condition
        self.description = description


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class EventHubProperties:
    """What `$management` READ of an event hub reports."""

    name: str
    created_at_ms: int
    partition_ids: list[str]


class EventHub:
    """One hub: a log per partition, its consumer groups, a round-robin cursor."""

    def __init__(self, spec: EventHubSpec, data_dir: Path | None) -> None:
        self.spec = spec
        self.created_at_ms = _now_ms()
        self.partitions = {
            partition_id: PartitionLog(
                spec.name,
                partition_id,
                None if data_dir is None else data_dir / spec.name / f"{partition_id}.log",
            )
            for partition_id in spec.partition_ids
        }
        self._next_round_robin = 0

    def partition(self, partition_id: str) -> PartitionLog:
        log = self.partitions.get(partition_id)
        if log is None:
            raise EventHubsError(
                NOT_FOUND,
                f"partition {partition_id!r} does not exist in event hub {self.spec.name!r} "
                f"(partitions: {', '.join(self.partitions)})",
            )
        return log

    def route(self, partition_key: str | None) -> PartitionLog:
        """The partition a send without a partition id goes to."""
        ids = self.spec.partition_ids
        if partition_key is not None:
            return self.partitions[ids[partition_index_for_key(partition_key, len(ids))]]
        chosen = ids[self._next_round_robin % len(ids)]
        self._next_round_robin += 1
        return self.partitions[chosen]


@dataclass(eq=False)
class PartitionReader:
    """An open receiver on one partition of one consumer group."""

    hub: str
    consumer_group: str
    partition_id: str
    owner_level: int | None
    on_stolen: Callable[[str], None] = field(repr=False)


class EventHubsNamespace:
    """Every hub of the namespace, and who is reading which partition.

    Hub and consumer-group names are case-insensitive, as in Azure.
    """

    def __init__(self, hubs: Iterable[EventHubSpec], data_dir: Path | None = None) -> None:
        self.hubs = {spec.name.lower(): EventHub(spec, data_dir) for spec in hubs}
        self._readers: dict[tuple[str, str, str], list[PartitionReader]] = {}

    def hub(self, name: str) -> EventHub:
        hub = self.hubs.get(name.lower())
        if hub is None:
            configured = ", ".join(hub.spec.name for hub in self.hubs.values()) or "none"
            raise EventHubsError(
                NOT_FOUND, f"event hub {name!r} does not exist (configured: {configured})"
            )
        return hub

    def _reader_key(
        self, hub_name: str, consumer_group: str, partition_id: str
    ) -> tuple[str, str, str]:
        return (hub_name.lower(), consumer_group.lower(), partition_id)

    def publish(
        self,
        hub_name: str,
        partition_id: str | None,
        messages: Sequence[bytes],
        partition_key: str | None,
    ) -> str:
        """Append encoded messages to one partition; returns the partition id chosen."""
        hub = self.hub(hub_name)
        log = hub.partition(partition_id) if partition_id is not None else hub.route(partition_key)
        log.append(messages, partition_key, _now_ms())
        return log.partition_id

    def open_reader(
        self,
        hub_name: str,
        consumer_group: str,
        partition_id: str,
        owner_level: int | None,
        on_stolen: Callable[[str], None],
    ) -> PartitionReader:
        """Register a receiver, applying the service's owner-level (epoch) rules.

        A receiver with an owner level disconnects every receiver of the same partition
        and consumer group with no or a lower-or-equal level; one with a lower level than
        an active receiver, or none while a receiver with a level is active, is refused.
        Without owner levels, at most five receivers may share a partition.
        """
        hub = self.hub(hub_name)
        hub.partition(partition_id)
        if consumer_group.lower() not in (group.lower() for group in hub.spec.consumer_groups):
            raise EventHubsError(
                NOT_FOUND,
                f"consumer group {consumer_group!r} does not exist in event hub {hub_name!r}",
            )
        active = self._readers.setdefault(
            self._reader_key(hub_name, consumer_group, partition_id), []
        )
        levels = [reader.owner_level for reader in active if reader.owner_level is not None]
        highest = max(levels) if levels else None
        if highest is not None and (owner_level is None or owner_level < highest):
            raise EventHubsError(
                LINK_STOLEN,
                f"a receiver with owner level {highest} is active on partition {partition_id} "
                f"of {hub_name}/{consumer_group}; a receiver with owner level "
                f"{owner_level} cannot be created",
            )
        if owner_level is None and len(active) >= MAX_READERS_PER_PARTITION:
            raise EventHubsError(
                RESOURCE_LIMIT,
                f"at most {MAX_READERS_PER_PARTITION} receivers may read partition "
                f"{partition_id} of {hub_name}/{consumer_group} at once",
            )
        reader = PartitionReader(hub_name, consumer_group, partition_id, owner_level, on_stolen)
        if owner_level is not None:
            displaced, active[:] = list(active), []
            for loser in displaced:
                loser.on_stolen(
                    f"a receiver with owner level {owner_level} took over partition "
                    f"{partition_id} of {hub_name}/{consumer_group}; this receiver "
                    f"(owner level {loser.owner_level}) is disconnected"
                )
        active.append(reader)
        return reader

    def close_reader(self, reader: PartitionReader) -> None:
        active = self._readers.get(
            self._reader_key(reader.hub, reader.consumer_group, reader.partition_id), []
        )
        if reader in active:
            active.remove(reader)

    def reader_count(self, hub_name: str, consumer_group: str, partition_id: str) -> int:
        """How many receivers are open on one partition of one consumer group."""
        return len(self._readers.get(self._reader_key(hub_name, consumer_group, partition_id), []))

    def eventhub_properties(self, hub_name: str) -> EventHubProperties:
        hub = self.hub(hub_name)
        return EventHubProperties(hub.spec.name, hub.created_at_ms, hub.spec.partition_ids)

    def partition_properties(self, hub_name: str, partition_id: str) -> PartitionProperties:
        return self.hub(hub_name).partition(partition_id).properties()

    def close(self) -> None:
        for hub in self.hubs.values():
            for log in hub.partitions.values():
                log.close()
