"""Message counts per Service Bus entity from the administration API's runtime properties:
nothing is peeked, locked or received.

The administration client reaches the namespace's HTTP endpoint. On Azure that is the same
connection (string or identity) as the entity's; on the emulator (Microsoft's or devstack)
it is HTTP on port 5300 unless `<SETTING>_ADMIN` names another connection string.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from azure.core.pipeline.transport import HttpRequest, RequestsTransport
from azure.servicebus.management import ServiceBusAdministrationClient

from agents.backbone import settings
from agents.backbone.errors import ConfigurationError
from agents.ops.config import Catalogue

ADMIN_SUFFIX = "_ADMIN"
EMULATOR_ADMIN_PORT = 5300
_EMULATOR = "usedevelopmentemulator=true"
_ENDPOINT = re.compile(r"(Endpoint=sb://)([^;/:]+)(:\d+)?", re.IGNORECASE)


class _PlainHttp(RequestsTransport):  # type: ignore[misc]  # azure-core exports it untyped
    """azure-servicebus 7.15 reads UseDevelopmentEmulator=true but still sends https://;
    the emulator's administration endpoint speaks plain HTTP."""

    def send(self, request: HttpRequest, **kwargs: Any) -> Any:
        request.url = request.url.replace("https://", "http://", 1)
        return super().send(request, **kwargs)


def admin_client(setting: str, env: Mapping[str, str]) -> ServiceBusAdministrationClient:
    """The administration client for the namespace behind a Service Bus setting."""
    connection = env.get(setting + ADMIN_SUFFIX) or env.get(setting)
    if connection:
        if _EMULATOR not in connection.lower().replace(" ", ""):
            return ServiceBusAdministrationClient.from_connection_string(connection)
        if not env.get(setting + ADMIN_SUFFIX):
            connection = _ENDPOINT.sub(rf"\g<1>\g<2>:{EMULATOR_ADMIN_PORT}", connection)
        return ServiceBusAdministrationClient.from_connection_string(
            connection, transport=_PlainHttp())
    namespace = env.get(f"{setting}__fullyQualifiedNamespace")
    if not namespace:
        raise ConfigurationError(
            f"set {setting} (connection string) or {setting}__fullyQualifiedNamespace")
    return ServiceBusAdministrationClient(namespace, settings.credential(setting, env))


@dataclass(frozen=True)
class EntityCounts:
    entity: str
    active: int
    dead_letter: int
    scheduled: int | None
    """None for a subscription: its runtime properties have no scheduled count (scheduled
    messages wait on the topic)."""
    transfer: int
    transfer_dead_letter: int
    total: int

    def summary(self) -> dict[str, Any]:
        return {"entity": self.entity, "active": self.active, "deadLetter": self.dead_letter,
                "scheduled": self.scheduled, "transfer": self.transfer,
                "transferDeadLetter": self.transfer_dead_letter, "total": self.total}


def entity_counts(env: Mapping[str, str], catalogue: Catalogue,
                  entity: str | None = None) -> list[EntityCounts]:
    """Runtime counts of every catalogued queue and subscription (or of one)."""
    chosen = [catalogue.entity(entity)] if entity else list(catalogue.servicebus)
    clients: dict[str, ServiceBusAdministrationClient] = {}
    try:
        out = []
        for target in chosen:
            client = clients.get(target.setting)
            if client is None:
                client = clients[target.setting] = admin_client(target.setting, env)
            runtime: Any = (
                client.get_subscription_runtime_properties(target.topic, target.name)
                if target.topic else client.get_queue_runtime_properties(target.name))
            out.append(EntityCounts(
                target.path, runtime.active_message_count, runtime.dead_letter_message_count,
                getattr(runtime, "scheduled_message_count", None),
                runtime.transfer_message_count, runtime.transfer_dead_letter_message_count,
                runtime.total_message_count))
        return out
    finally:
        for client in clients.values():
            client.close()
