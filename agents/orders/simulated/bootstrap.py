"""Composes the simulated services, like the agent's `bootstrap`: `bootstrap(env)` from the
app settings (called by their Blueprint on first invocation), owning the clients it opened
(`with bootstrap(env) as services:` closes them); `build(...)` on chosen adapters."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
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
from agents.backbone.settlement import ScheduledRetry
from agents.backbone.tables import RequestCounter, state_table
from agents.contracts import orders
from agents.orders import entities
from agents.orders.bootstrap import DEFAULT_STEP_TIMEOUT
from agents.orders.model import QUEUE_OF_SERVICE, Service, order_saga
from agents.orders.simulated.handlers import SimulatedServices
from agents.orders.simulated.modes import Switchboard

if TYPE_CHECKING:
    from azure.data.tables import TableServiceClient

LEDGER_TABLES = {Service.INVENTORY: "ordersinventory", Service.PAYMENTS: "orderspayments",
                 Service.SHIPPING: "ordersshipping"}
SWITCHES_TABLE = "orderssimulators"


def build(
    tables: TableServiceClient,
    publisher: Publisher,
    *,
    counter: RequestCounter | None = None,
    table_prefix: str = "",
    now: Callable[[], datetime] | None = None,
    retries: Mapping[Service, ScheduledRetry] | None = None,
) -> SimulatedServices:
    """`table_prefix` and `now` as for the agent's `build`; `retries`: the `ScheduledRetry`
    on each service's own queue that its trigger puts a flaky attempt back with."""
    schemas = SchemaRegistry(orders.SCHEMAS)
    # The saga's definition adds the command and reply types the services read and answer.
    SagaEngine(order_saga(DEFAULT_STEP_TIMEOUT), registry=schemas)

    def processor(name: str) -> MessageProcessor:
        table = state_table(tables, table_prefix + name)
        return MessageProcessor(table, OutboxRelay(table, publisher, now=now), registry=schemas,
                                counter=counter, now=now)

    return SimulatedServices(
        schemas=schemas,
        ledgers={service: processor(name) for service, name in LEDGER_TABLES.items()},
        switchboard=Switchboard(state_table(tables, table_prefix + SWITCHES_TABLE)),
        retries=dict(retries or {}),
    )


def bootstrap(env: Mapping[str, str]) -> SimulatedServices:
    """Replies go to the saga queue, charges onto the payment stream; a command put back for
    later goes to its own queue through the same Service Bus client."""
    client = settings.servicebus_client(entities.CONNECTION, env=env)
    orders_bus = ServiceBusPublisher(client)
    payments_stream = EventHubsPublisher({entities.PAYMENTS_HUB: settings.eventhub_producer(
        entities.FRAUD_EVENTHUBS, entities.PAYMENTS_HUB, env=env)})
    publisher = RoutingPublisher({**{queue: orders_bus for queue in entities.QUEUES},
                                  entities.PAYMENTS_HUB: payments_stream})
    # A sender connects on its first send, so composing them costs no connection.
    retries = {service: ScheduledRetry(client.get_queue_sender(queue))
               for service, queue in QUEUE_OF_SERVICE.items()}
    tables = settings.table_service(entities.STATE_STORAGE, env=env)
    services = build(tables, publisher, retries=retries)
    # The retry senders before the publisher, which closes their client.
    return replace(services, owned=(*(retry.sender for retry in retries.values()), publisher,
                                    tables))
