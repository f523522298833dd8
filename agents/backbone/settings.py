"""SDK clients built from one connection setting name, as the Functions host reads them.

`<NAME>` set: a connection string (local stack, Azurite, emulator). Otherwise identity-based:
`<NAME>__fullyQualifiedNamespace` (Service Bus / Event Hubs), `<NAME>__tableServiceUri`
(tables), `<NAME>__topicEndpointUri` (Event Grid, or `<NAME>__topicKey` for a key), with
`<NAME>__credential=managedidentity` + `<NAME>__clientId` choosing a user-assigned identity.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from agents.backbone.errors import ConfigurationError

# Each SDK loads when its first client is built, not at import (cold start).
if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.data.tables import TableServiceClient
    from azure.eventgrid import EventGridPublisherClient
    from azure.eventhub import EventHubProducerClient
    from azure.servicebus import ServiceBusClient


def _env(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def credential(name: str, env: Mapping[str, str] | None = None) -> TokenCredential:
    """ManagedIdentityCredential when `<NAME>__credential=managedidentity`, else
    DefaultAzureCredential; both honour `<NAME>__clientId` (user-assigned identity)."""
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    values = _env(env)
    client_id = values.get(f"{name}__clientId")
    if values.get(f"{name}__credential", "").lower() == "managedidentity":
        return ManagedIdentityCredential(client_id=client_id)
    return DefaultAzureCredential(managed_identity_client_id=client_id)


def _required(name: str, suffix: str, env: Mapping[str, str]) -> str:
    value = env.get(f"{name}__{suffix}")
    if not value:
        raise ConfigurationError(
            f"set {name} (connection string) or {name}__{suffix} (identity-based)"
        )
    return value


def servicebus_client(name: str, *, env: Mapping[str, str] | None = None, **kwargs: Any
                      ) -> ServiceBusClient:
    from azure.servicebus import ServiceBusClient

    values = _env(env)
    if connection := values.get(name):
        return ServiceBusClient.from_connection_string(connection, **kwargs)
    namespace = _required(name, "fullyQualifiedNamespace", values)
    return ServiceBusClient(namespace, credential(name, values), **kwargs)


def eventhub_producer(name: str, eventhub_name: str, *, env: Mapping[str, str] | None = None,
                      **kwargs: Any) -> EventHubProducerClient:
    from azure.eventhub import EventHubProducerClient

    values = _env(env)
    if connection := values.get(name):
        return EventHubProducerClient.from_connection_string(
            connection, eventhub_name=eventhub_name, **kwargs)
    namespace = _required(name, "fullyQualifiedNamespace", values)
    return EventHubProducerClient(namespace, eventhub_name, credential(name, values), **kwargs)


def table_service(name: str = "STATE_STORAGE", *, env: Mapping[str, str] | None = None,
                  **kwargs: Any) -> TableServiceClient:
    """Pass `raw_request_hook=RequestCounter().hook` or `transport=` through `kwargs`."""
    from azure.data.tables import TableServiceClient

    values = _env(env)
    if connection := values.get(name):
        return TableServiceClient.from_connection_string(connection, **kwargs)
    endpoint = _required(name, "tableServiceUri", values)
    return TableServiceClient(endpoint, credential=credential(name, values), **kwargs)


def eventgrid_publisher(name: str, *, env: Mapping[str, str] | None = None, **kwargs: Any
                        ) -> EventGridPublisherClient:
    from azure.core.credentials import AzureKeyCredential
    from azure.eventgrid import EventGridPublisherClient

    values = _env(env)
    endpoint = _required(name, "topicEndpointUri", values)
    if key := values.get(f"{name}__topicKey"):
        return EventGridPublisherClient(endpoint, AzureKeyCredential(key), **kwargs)
    return EventGridPublisherClient(endpoint, credential(name, values), **kwargs)
