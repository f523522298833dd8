"""Output bindings: what a function set on its `func.Out` parameters, sent to the service."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from azure.data.tables.aio import TableServiceClient
from azure.eventhub import EventData
from azure.eventhub.aio import EventHubProducerClient
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient
from azure.storage.blob.aio import BlobServiceClient

from devstack.host.settings import AppSettings


class UnsupportedBinding(RuntimeError):
    """An output binding type devstack does not send."""


def _items(value: Any) -> list[Any]:
    # A list set on an output means one message per element, as the host's collectors do.
    return list(value) if isinstance(value, list | tuple) else [value]


def _payload(value: Any) -> str | bytes:
    if isinstance(value, str | bytes):
        return value
    if hasattr(value, "get_body"):
        body: bytes = value.get_body()
        return body
    return json.dumps(value)


class OutputSenders:
    """Sends output values with the official SDK clients; one client per connection, reused."""

    def __init__(self, settings: AppSettings) -> None:
        self._settings = settings
        self._service_bus: dict[str, ServiceBusClient] = {}

    async def send(self, binding: Mapping[str, Any], value: Any) -> None:
        kind = binding["type"]
        if kind == "serviceBus":
            await self._service_bus_send(binding, value)
        elif kind == "eventHub":
            await self._event_hub_send(binding, value)
        elif kind == "blob":
            await self._blob_send(binding, value)
        elif kind == "table":
            await self._table_send(binding, value)
        else:
            raise UnsupportedBinding(f"devstack does not send {kind!r} output bindings")

    async def close(self) -> None:
        for client in self._service_bus.values():
            await client.close()
        self._service_bus.clear()

    def _resolve(self, binding: Mapping[str, Any], key: str) -> str:
        return self._settings.resolve(str(binding[key]))

    async def _service_bus_send(self, binding: Mapping[str, Any], value: Any) -> None:
        connection = self._settings.connection(str(binding["connection"]))
        client = self._service_bus.get(connection)
        if client is None:
            client = self._service_bus[connection] = ServiceBusClient.from_connection_string(
                connection)
        entity = binding.get("queueName") or binding.get("topicName")
        if not entity:
            raise UnsupportedBinding("serviceBus output needs queueName or topicName")
        name = self._settings.resolve(str(entity))
        sender = (client.get_queue_sender(name) if binding.get("queueName")
                  else client.get_topic_sender(name))
        async with sender:
            await sender.send_messages([ServiceBusMessage(_payload(v)) for v in _items(value)])

    async def _event_hub_send(self, binding: Mapping[str, Any], value: Any) -> None:
        connection = self._settings.connection(str(binding["connection"]))
        producer = EventHubProducerClient.from_connection_string(
            connection, eventhub_name=self._resolve(binding, "eventHubName"))
        async with producer:
            batch = await producer.create_batch()
            for item in _items(value):
                batch.add(EventData(_payload(item)))
            await producer.send_batch(batch)

    async def _blob_send(self, binding: Mapping[str, Any], value: Any) -> None:
        connection = self._settings.connection(str(binding.get("connection")
                                                   or "AzureWebJobsStorage"))
        path = self._resolve(binding, "path").replace("{rand-guid}", str(uuid.uuid4()))
        container, _, blob = path.partition("/")
        async with BlobServiceClient.from_connection_string(connection) as service:
            container_client = service.get_container_client(container)
            if not await container_client.exists():
                await container_client.create_container()
            await container_client.upload_blob(blob, _payload(value), overwrite=True)

    async def _table_send(self, binding: Mapping[str, Any], value: Any) -> None:
        connection = self._settings.connection(str(binding.get("connection")
                                                   or "AzureWebJobsStorage"))
        async with TableServiceClient.from_connection_string(connection) as service:
            table = await service.create_table_if_not_exists(self._resolve(binding, "tableName"))
            for item in _items(value):
                entity = json.loads(item) if isinstance(item, str | bytes) else dict(item)
                await table.create_entity(entity)
