"""SDK clients for one ops command, built from connection setting names and closed together."""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any

from azure.data.tables import TableServiceClient
from azure.eventgrid import EventGridPublisherClient
from azure.eventhub import EventHubProducerClient
from azure.servicebus import ServiceBusClient
from azure.storage.blob import BlobServiceClient

from agents.backbone import settings
from agents.ops.config import blob_service


class Connections:
    """One client per setting (and hub), made on first use; `close()` closes them all."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self._servicebus: dict[str, ServiceBusClient] = {}
        self._producers: dict[tuple[str, str], EventHubProducerClient] = {}
        self._grids: dict[str, EventGridPublisherClient] = {}
        self._blobs: dict[str, BlobServiceClient] = {}
        self._tables: dict[str, TableServiceClient] = {}

    def servicebus(self, setting: str) -> ServiceBusClient:
        if setting not in self._servicebus:
            self._servicebus[setting] = settings.servicebus_client(setting, env=self.env)
        return self._servicebus[setting]

    def own_servicebus(self, setting: str) -> ServiceBusClient:
        """A client of its own (the caller closes it), for use on another thread: the SDK's
        sync clients are not thread-safe."""
        return settings.servicebus_client(setting, env=self.env)

    def producer(self, setting: str, hub: str) -> EventHubProducerClient:
        if (setting, hub) not in self._producers:
            self._producers[(setting, hub)] = settings.eventhub_producer(
                setting, hub, env=self.env)
        return self._producers[(setting, hub)]

    def eventgrid(self, setting: str) -> EventGridPublisherClient:
        if setting not in self._grids:
            self._grids[setting] = settings.eventgrid_publisher(setting, env=self.env)
        return self._grids[setting]

    def blobs(self, setting: str) -> BlobServiceClient:
        if setting not in self._blobs:
            self._blobs[setting] = blob_service(setting, self.env)
        return self._blobs[setting]

    def tables(self, setting: str) -> TableServiceClient:
        if setting not in self._tables:
            self._tables[setting] = settings.table_service(setting, env=self.env)
        return self._tables[setting]

    def close(self) -> None:
        clients: list[Any] = [*self._servicebus.values(), *self._producers.values(),
                              *self._grids.values(), *self._blobs.values(),
                              *self._tables.values()]
        for client in clients:
            client.close()
        for cache in (self._servicebus, self._producers, self._grids, self._blobs,
                      self._tables):
            cache.clear()

    def __enter__(self) -> Connections:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
