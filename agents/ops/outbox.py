"""Outbox status: pending rows in every state table, and a sweep through the backbone's
`OutboxRelay.sweep` (the same code the timer trigger runs).

Tables are discovered (every table of the STATE_STORAGE account), not named here: an outbox
row is recognisable by its RowKey prefix wherever it lives.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.data.tables import TableClient

from agents.backbone import (
    EventGridPublisher,
    EventHubsPublisher,
    OutboxRelay,
    OutboxRow,
    Publisher,
    RoutingPublisher,
    ServiceBusPublisher,
)
from agents.backbone.outbox import PENDING
from agents.backbone.tables import OUTBOX_PREFIX, prefix_filter
from agents.ops.config import Catalogue, OpsError, setting_for
from agents.ops.connections import Connections

STATE_STORAGE = "STATE_STORAGE"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_age(text: str) -> timedelta:
    """`30s`, `5m`, `2h`, `1d` (a four-unit regex; no library needed for that)."""
    match = _DURATION.match(text)
    if match is None:
        raise OpsError(f"not a duration: {text!r} (use e.g. 30s, 5m, 2h, 1d)")
    return timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})


@dataclass(frozen=True)
class PendingRow:
    table: str
    row: OutboxRow

    def age(self, now: datetime) -> timedelta:
        return now - self.row.created_at

    def summary(self, now: datetime) -> dict[str, Any]:
        row = self.row
        return {"table": self.table, "partitionKey": row.partition_key,
                "eventId": row.envelope.id, "type": row.envelope.type,
                "destination": row.destination, "createdAt": row.created_at.isoformat(),
                "scheduledAt": row.scheduled_at.isoformat() if row.scheduled_at else None,
                "ageSeconds": round(self.age(now).total_seconds(), 1)}


def state_tables(connections: Connections, table: str | None) -> list[TableClient]:
    service = connections.tables(STATE_STORAGE)
    names = [table] if table else sorted(t.name for t in service.list_tables())
    return [service.get_table_client(name) for name in names]


def pending_rows(connections: Connections, *, older_than: timedelta = timedelta(0),
                 table: str | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> list[PendingRow]:
    """Outbox rows still pending and at least `older_than` old, oldest first."""
    cutoff = now() - older_than
    query = f"{prefix_filter(OUTBOX_PREFIX)} and Status eq '{PENDING}' and CreatedAt le @cutoff"
    rows = [PendingRow(client.table_name, OutboxRow.from_entity(entity))
            for client in state_tables(connections, table)
            for entity in client.query_entities(query, parameters={"cutoff": cutoff})]
    return sorted(rows, key=lambda pending: pending.row.created_at)


def sweep(connections: Connections, catalogue: Catalogue, *,
          older_than: timedelta = timedelta(0), table: str | None = None
          ) -> list[PendingRow]:
    """Dispatch pending rows now with the backbone's sweeper, table by table."""
    swept: list[PendingRow] = []
    for client in state_tables(connections, table):
        waiting = pending_rows(connections, older_than=older_than, table=client.table_name)
        if not waiting:
            continue
        publisher = routing_publisher(connections, catalogue,
                                      [pending.row.destination for pending in waiting])
        swept.extend(PendingRow(client.table_name, row) for row in
                     OutboxRelay(client, publisher).sweep(older_than=older_than))
    return swept


def routing_publisher(connections: Connections, catalogue: Catalogue,
                      destinations: Sequence[str]) -> Publisher:
    """A publisher for exactly these destinations, each through its domain's setting."""
    routes: dict[str, Publisher] = {}
    for destination in set(destinations):
        routes[destination] = _route(connections, catalogue, destination)
    return RoutingPublisher(routes)


def _route(connections: Connections, catalogue: Catalogue, destination: str) -> Publisher:
    lowered = destination.lower()
    if lowered in {hub.lower() for hub in catalogue.hubs}:
        setting = setting_for(destination, "EVENTHUBS")
        return EventHubsPublisher(lambda hub: connections.producer(setting, hub))
    grid_topics = {s.topic for s in catalogue.eventgrid}
    if destination in grid_topics:
        setting = setting_for(destination, "EVENTGRID")
        return EventGridPublisher({destination: connections.eventgrid(setting)})
    queues = {e.name for e in catalogue.servicebus if e.topic is None}
    if destination in queues or destination in catalogue.topics:
        setting = setting_for(destination, "SERVICEBUS")
        return ServiceBusPublisher(connections.servicebus(setting), topics=catalogue.topics)
    raise OpsError(f"outbox destination {destination!r} is not in the entity catalogue")
