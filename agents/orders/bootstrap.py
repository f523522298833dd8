"""Composes the orders agent. `bootstrap(env)` returns the `OrdersAgent` wired from app settings
(what `function_app.py` gives the Blueprint, which calls it on first invocation, never at
import); `build(tables, publisher, ...)` wires the same agent onto adapters a test, the demo or
the benchmark chose. Each call returns a new agent with its own schema registry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

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
from agents.orders.handlers import OrdersAgent
from agents.orders.model import Service, order_saga
from agents.orders.simulators import Switchboard

if TYPE_CHECKING:
    from azure.data.tables import TableServiceClient

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
) -> OrdersAgent:
    """`table_prefix` keeps several stacks (tests, the demo) apart in one storage account;
    `now` is the clock deadlines are scheduled by (a test broker's clock it can advance)."""
    # What orders publishes and consumes; the saga engine adds its commands and replies.
    schemas = SchemaRegistry({**orders.SCHEMAS, **fraud.SCHEMAS})

    def processor(name: str) -> MessageProcessor:
        table = state_table(tables, table_prefix + name)
        return MessageProcessor(table, OutboxRelay(table, publisher, now=now), registry=schemas,
                                counter=counter, now=now)

    return OrdersAgent(
        schemas=schemas,
        sagas=processor(SAGAS_TABLE),
        engine=SagaEngine(order_saga(step_timeout, compensation_backoff=compensation_backoff),
                          registry=schemas),
        ledgers={service: processor(name) for service, name in LEDGER_TABLES.items()},
        switchboard=Switchboard(state_table(tables, table_prefix + SWITCHES_TABLE)),
    )


def bootstrap(env: Mapping[str, str]) -> OrdersAgent:
    """The agent on the services the app settings name (`entities` lists the settings)."""
    orders_bus = ServiceBusPublisher(settings.servicebus_client(entities.CONNECTION, env=env))
    payments_stream = EventHubsPublisher({entities.PAYMENTS_HUB: settings.eventhub_producer(
        entities.FRAUD_EVENTHUBS, entities.PAYMENTS_HUB, env=env)})
    publisher = RoutingPublisher({**{queue: orders_bus for queue in entities.QUEUES},
                                  entities.PAYMENTS_HUB: payments_stream})
    timeout = float(env.get(STEP_TIMEOUT_SETTING) or DEFAULT_STEP_TIMEOUT.total_seconds())
    return build(settings.table_service(entities.STATE_STORAGE, env=env), publisher,
                 step_timeout=timedelta(seconds=timeout))
