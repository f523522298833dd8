"""What the ops tool reads: the app's settings and the entity catalogue in `infra/entities/`.

Settings come from `local.settings.json` Values overlaid by the environment (the process
environment wins, as with `func start`). Entities come from the emulator-shaped config
files, never from names in code; an entity's domain is its name prefix (`orders-saga` ->
`orders`), which picks its connection setting (`ORDERS_SERVICEBUS`, `FRAUD_EVENTHUBS`, ...).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import isodate
from azure.storage.blob import BlobServiceClient

from agents.backbone import settings as backbone_settings
from agents.backbone.errors import ConfigurationError

ENTITIES_DIR = Path(__file__).resolve().parents[2] / "infra" / "entities"
# Parking queues for Event Hubs poison events are named `<domain>-poison-events`.
POISON_SUFFIX = "-poison-events"


class OpsError(Exception):
    """A request the tool cannot serve (unknown entity, missing file, bad argument)."""


def load_settings(path: Path | None = None, env: Mapping[str, str] | None = None
                  ) -> dict[str, str]:
    """`local.settings.json` Values (if the file exists) overlaid by the environment."""
    values: dict[str, str] = {}
    file = path or Path("local.settings.json")
    if file.exists():
        try:
            document = json.loads(file.read_text(encoding="utf-8"))
        except ValueError as error:
            raise OpsError(f"{file}: not JSON: {error}") from None
        values.update({k: str(v) for k, v in document.get("Values", {}).items()})
    elif path is not None:
        raise OpsError(f"settings file {path} does not exist")
    values.update(os.environ if env is None else env)
    return values


def domain_of(name: str) -> str:
    return name.split("-", 1)[0]


def setting_for(name: str, service: str) -> str:
    """The connection setting of an entity: its domain prefix + the service suffix."""
    return f"{domain_of(name).upper()}_{service}"


@dataclass(frozen=True)
class ServiceBusEntity:
    """A queue, or a topic subscription (`topic/subscription`), that has a dead-letter queue."""

    topic: str | None
    name: str
    requires_duplicate_detection: bool
    duplicate_window: timedelta

    @property
    def path(self) -> str:
        return f"{self.topic}/{self.name}" if self.topic else self.name

    @property
    def send_to(self) -> str:
        """Where a replay is sent: the queue, or the subscription's topic."""
        return self.topic or self.name

    @property
    def setting(self) -> str:
        return setting_for(self.send_to, "SERVICEBUS")


@dataclass(frozen=True)
class EventGridSubscription:
    topic: str
    name: str
    input_schema: str
    dead_letter_container: str | None

    @property
    def setting(self) -> str:
        return setting_for(self.topic, "EVENTGRID")


@dataclass(frozen=True)
class Catalogue:
    """The app's entities, read from the emulator-shaped files in `infra/entities/`."""

    servicebus: tuple[ServiceBusEntity, ...]
    topics: frozenset[str]
    hubs: frozenset[str]
    eventgrid: tuple[EventGridSubscription, ...]

    @classmethod
    def load(cls, directory: Path | None = None) -> Catalogue:
        folder = directory or ENTITIES_DIR
        servicebus = _read(folder / "servicebus.json")
        entities: list[ServiceBusEntity] = []
        topics: set[str] = set()
        for namespace in servicebus.get("UserConfig", {}).get("Namespaces", []):
            for queue in namespace.get("Queues", []):
                entities.append(_entity(None, queue["Name"], queue.get("Properties", {})))
            for topic in namespace.get("Topics", []):
                topics.add(topic["Name"])
                properties = topic.get("Properties", {})
                entities.extend(_entity(topic["Name"], sub["Name"], properties)
                                for sub in topic.get("Subscriptions", []))
        hubs = {entity["Name"]
                for namespace in _read(folder / "eventhubs.json", optional=True)
                .get("UserConfig", {}).get("NamespaceConfig", [])
                for entity in namespace.get("Entities", [])}
        grid = [EventGridSubscription(topic["Name"], sub["Name"],
                                      topic.get("InputSchema", "CloudEventSchemaV1_0"),
                                      sub.get("DeadLetterDestination", {})
                                      .get("BlobContainerName"))
                for topic in _read(folder / "eventgrid.json", optional=True)
                .get("UserConfig", {}).get("Topics", [])
                for sub in topic.get("Subscriptions", [])]
        return cls(tuple(entities), frozenset(topics), frozenset(hubs), tuple(grid))

    def entity(self, path: str) -> ServiceBusEntity:
        """A queue by name or a subscription as `topic/subscription` (or Azure's
        `topic/subscriptions/subscription`); names are case-insensitive as in Azure."""
        wanted = path.lower().replace("/subscriptions/", "/")
        for entity in self.servicebus:
            if entity.path.lower() == wanted:
                return entity
        known = ", ".join(e.path for e in self.servicebus)
        raise OpsError(f"unknown Service Bus entity {path!r}; known: {known}")

    def poison_queues(self) -> list[ServiceBusEntity]:
        return [e for e in self.servicebus if e.topic is None and e.name.endswith(POISON_SUFFIX)]

    def hub(self, name: str) -> str:
        for hub in self.hubs:
            if hub.lower() == name.lower():
                return hub
        raise OpsError(f"unknown event hub {name!r}; known: {', '.join(sorted(self.hubs))}")

    def grid_subscription(self, name: str) -> EventGridSubscription:
        for subscription in self.eventgrid:
            if subscription.name.lower() == name.lower():
                return subscription
        known = ", ".join(s.name for s in self.eventgrid)
        raise OpsError(f"unknown Event Grid subscription {name!r}; known: {known}")

    def dead_letter_containers(self) -> list[str]:
        return sorted({s.dead_letter_container for s in self.eventgrid
                       if s.dead_letter_container})


def blob_service(name: str, env: Mapping[str, str]) -> BlobServiceClient:
    """A blob client from a connection setting, as the Functions host reads it:
    `<NAME>` (connection string) or `<NAME>__blobServiceUri` / `<NAME>__accountName`."""
    if connection := env.get(name):
        return BlobServiceClient.from_connection_string(connection)
    endpoint = env.get(f"{name}__blobServiceUri")
    if not endpoint and (account := env.get(f"{name}__accountName")):
        endpoint = f"https://{account}.blob.core.windows.net"
    if not endpoint:
        raise ConfigurationError(f"set {name} (connection string) or {name}__blobServiceUri "
                                 "(identity-based)")
    return BlobServiceClient(endpoint, credential=backbone_settings.credential(name, env))


def _entity(topic: str | None, name: str, properties: Mapping[str, Any]) -> ServiceBusEntity:
    window = properties.get("DuplicateDetectionHistoryTimeWindow")
    return ServiceBusEntity(
        topic, name, bool(properties.get("RequiresDuplicateDetection", False)),
        isodate.parse_duration(window) if window else timedelta(minutes=10))


def _read(path: Path, *, optional: bool = False) -> dict[str, Any]:
    if not path.exists():
        if optional:
            return {}
        raise OpsError(f"entity file {path} does not exist (pass --entities DIR)")
    try:
        document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise OpsError(f"{path}: not JSON: {error}") from None
    return document
