"""Event Hubs for devstack: hubs, partitions and consumer groups served over AMQP 1.0.

`EventHubsNamespace` holds the state (protocol-free); `EventHubsNode` serves it to the
unmodified azure-eventhub SDK; `create_node` is what `devstack.server.DevStack` calls with
the Event Hubs emulator Config.json documents it loaded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from devstack.eventhubs.amqp_node import EventHubsNode, SendFaults
from devstack.eventhubs.entities import ConfigError, EventHubSpec, hubs_from_config, load_hubs
from devstack.eventhubs.namespace import EventHubsError, EventHubsNamespace
from devstack.eventhubs.partition_key import partition_index_for_key


def create_node(
    user_configs: Sequence[Mapping[str, Any]],
    *,
    data_dir: Path | None = None,
    faults: SendFaults | None = None,
) -> EventHubsNode:
    """The AMQP node serving every hub declared in `user_configs` (Config.json documents).

    With `data_dir`, partition logs are journaled under `<data_dir>/eventhubs/` and
    reloaded from there on the next start. With `faults` (DevStack's `Faults`), armed
    server-busy faults refuse sends to the hub (entity path = hub name, lower case).
    """
    hubs: list[EventHubSpec] = []
    for config in user_configs:
        for hub in hubs_from_config(config):
            if any(existing.name == hub.name for existing in hubs):
                raise ConfigError(f"event hub {hub.name!r} is declared in two config files")
            hubs.append(hub)
    journal_dir = None if data_dir is None else data_dir / "eventhubs"
    return EventHubsNode(EventHubsNamespace(hubs, journal_dir), faults)


__all__ = [
    "ConfigError",
    "EventHubSpec",
    "EventHubsError",
    "EventHubsNamespace",
    "EventHubsNode",
    "SendFaults",
    "create_node",
    "hubs_from_config",
    "load_hubs",
    "partition_index_for_key",
]
