"""Event Hubs for devstack: hubs, partitions and consumer groups served over AMQP 1.0.

`EventHubsNamespace` holds the state (protocol-free); the AMQP node handlers serve it to
the unmodified azure-eventhub SDK.
"""

from devstack.eventhubs.entities import ConfigError, EventHubSpec, hubs_from_config, load_hubs
from devstack.eventhubs.namespace import EventHubsError, EventHubsNamespace
from devstack.eventhubs.partition_key import partition_index_for_key

__all__ = [
    "ConfigError",
    "EventHubSpec",
    "EventHubsError",
    "EventHubsNamespace",
    "hubs_from_config",
    "load_hubs",
    "partition_index_for_key",
]
