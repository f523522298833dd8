"""Wires the orders agent's adapters from app settings, once per process.

Tests and the demo call `configure(...)` with their own adapters (an in-process broker, a
counting table client); the Functions host path calls `current()`, which reads settings.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from azure.data.tables import TableServiceClient
from azure.identity import DefaultAzureCredential
from azure.servicebus import ServiceBusClient

from agents.backbone.outbox import OutboxRelay
from agents.backbone.processing import MessageProcessor
from agents.backbone.publishers import Publisher, RoutingPublisher, ServiceBusPublisher
from agents.backbone.schemas import registry
from agents.backbone.tables import RequestCounter, state_table
from agents.orders import entities, messages
from agents.orders.handlers import OrdersContext
from agents.orders.simulators import Service, Switchboard

SAGAS_TABLE = "orders"
LEDGER_TABLES = {Service.INVENTORY: "ordersinventory", Service.PAYMENTS: "orderspayments",
                 Service.SHIPPING: "ordersshipping"}
SWITCHES_TABLE = "orderssimulators"
STEP_TIMEOUT_SETTING = "ORDERS_STEP_TIMEOUT_SECONDS"
DEFAULT_STEP_TIMEOUT = timedelta(seconds=30)

messages.register(registry)


def build(
    tables: TableServiceClient,
    publisher: Publisher,
    *,
    step_timeout: timedelta = DEFAULT_STEP_TIMEOUT,
    counter: RequestCounter | None = None,
) -> OrdersContext:
    def processor(name: str) -> MessageProcessor:
        table = state_table(tables, name)
        return MessageProcessor(table, OutboxRelay(table, publisher), counter=counter)

    return OrdersContext(
        sagas=processor(SAGAS_TABLE),
        ledgers={service: processor(name) for service, name in LEDGER_TABLES.items()},
        switchboard=Switchboard(state_table(tables, SWITCHES_TABLE)),
        step_timeout=step_timeout,
    )


def table_service(settings: Mapping[str, str], **client_options: Any) -> TableServiceClient:
    """`STATE_STORAGE` as a connection string locally, or identity-based on Azure."""
    connection = settings.get(entities.STATE_STORAGE)
    if connection:
        return TableServiceClient.from_connection_string(connection, **client_options)
    endpoint = settings[f"{entities.STATE_STORAGE}__tableServiceUri"]
    return TableServiceClient(endpoint, credential=DefaultAzureCredential(), **client_options)


def servicebus_client(settings: Mapping[str, str], name: str) -> ServiceBusClient:
    """A Service Bus connection setting as a connection string, or identity-based."""
    connection = settings.get(name)
    if connection:
        return ServiceBusClient.from_connection_string(connection)
    namespace = settings[f"{name}__fullyQualifiedNamespace"]
    return ServiceBusClient(namespace, credential=DefaultAzureCredential())


def from_settings(settings: Mapping[str, str]) -> OrdersContext:
    orders_bus = ServiceBusPublisher(servicebus_client(settings, entities.CONNECTION))
    publisher = RoutingPublisher({queue: orders_bus for queue in entities.QUEUES})
    timeout = float(settings.get(STEP_TIMEOUT_SETTING) or DEFAULT_STEP_TIMEOUT.total_seconds())
    return build(table_service(settings), publisher, step_timeout=timedelta(seconds=timeout))


_lock = threading.Lock()
_current: OrdersContext | None = None


def configure(orders: OrdersContext | None) -> None:
    """Use these adapters from now on (None: go back to reading settings on next use)."""
    global _current
    with _lock:
        _current = orders


def current() -> OrdersContext:
    global _current
    with _lock:
        if _current is None:
            _current = from_settings(os.environ)
        return _current
