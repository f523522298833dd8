"""Wires the orders agent's adapters from app settings, once per process.

Tests, the demo and the benchmark call `configure(build(...))` with their own publisher
(e.g. an in-process broker) and a counting table client; the Functions host path calls
`current()`, which reads the connection settings.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from azure.data.tables import TableServiceClient

from agents.backbone import settings
from agents.backbone.outbox import OutboxRelay
from agents.backbone.processing import MessageProcessor
from agents.backbone.publishers import (
    EventHubsPublisher,
    Publisher,
    RoutingPublisher,
    ServiceBusPublisher,
)
from agents.backbone.saga import SagaEngine
from agents.backbone.schemas import SchemaRegistry
from agents.backbone.tables import RequestCounter, state_table
from agents.contracts import fraud, orders
from agents.orders import entities
from agents.orders.handlers import OrdersContext
from agents.orders.model import Service, order_saga
from agents.orders.simulators import Switchboard

SAGAS_TABLE = "orders"
LEDGER_TABLES = {Service.INVENTORY: "ordersinventory", Service.PAYMENTS: "orderspayments",
                 Service.SHIPPING: "ordersshipping"}
SWITCHES_TABLE = "orderssimulators"
STEP_TIMEOUT_SETTING = "ORDERS_STEP_TIMEOUT_SECONDS"
DEFAULT_STEP_TIMEOUT = timedelta(seconds=30)


def build(
    tables: TableServiceClient,
    publisher: Publisher,
    *,
    step_timeout: timedelta = DEFAULT_STEP_TIMEOUT,
    compensation_backoff: timedelta = timedelta(seconds=2),
    counter: RequestCounter | None = None,
    table_prefix: str = "",
    now: Callable[[], datetime] | None = None,
) -> OrdersContext:
    """`table_prefix` keeps several stacks (tests, the demo) apart in one storage account;
    `now` is the clock deadlines are scheduled by (a test broker's clock it can advance)."""

    # What orders publishes and consumes; the saga engine adds its commands and replies.
    schemas = SchemaRegistry({**orders.SCHEMAS, **fraud.SCHEMAS})

    def processor(name: str) -> MessageProcessor:
        table = state_table(tables, table_prefix + name)
        return MessageProcessor(table, OutboxRelay(table, publisher, now=now), registry=schemas,
                                counter=counter, now=now)

    return OrdersContext(
        schemas=schemas,
        sagas=processor(SAGAS_TABLE),
        engine=SagaEngine(order_saga(step_timeout, compensation_backoff=compensation_backoff),
                          registry=schemas),
        ledgers={service: processor(name) for service, name in LEDGER_TABLES.items()},
        switchboard=Switchboard(state_table(tables, table_prefix + SWITCHES_TABLE)),
    )


def from_settings(env: Mapping[str, str]) -> OrdersContext:
    orders_bus = ServiceBusPublisher(settings.servicebus_client(entities.CONNECTION, env=env))
    payments_stream = EventHubsPublisher({entities.PAYMENTS_HUB: settings.eventhub_producer(
        entities.FRAUD_EVENTHUBS, entities.PAYMENTS_HUB, env=env)})
    publisher = RoutingPublisher({**{queue: orders_bus for queue in entities.QUEUES},
                                  entities.PAYMENTS_HUB: payments_stream})
    timeout = float(env.get(STEP_TIMEOUT_SETTING) or DEFAULT_STEP_TIMEOUT.total_seconds())
    return build(settings.table_service(entities.STATE_STORAGE, env=env), publisher,
                 step_timeout=timedelta(seconds=timeout))


_lock = threading.Lock()
_current: OrdersContext | None = None


def configure(context: OrdersContext | None) -> None:
    """Use these adapters from now on (None: read the settings again on next use)."""
    global _current
    with _lock:
        _current = context


def current() -> OrdersContext:
    global _current
    with _lock:
        if _current is None:
            _current = from_settings(os.environ)
        return _current
