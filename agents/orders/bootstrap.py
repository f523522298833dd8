"""Composes the orders agent. `bootstrap(env)` returns the `OrdersAgent` wired from app settings
(what `function_app.py` gives the Blueprint, which calls it on first invocation, never at
import), owning the clients it opened: `with bootstrap(env) as agent:` closes them.
`build(tables, publisher, ...)` wires the same agent onto adapters a test, the demo or the
benchmark chose (and still owns). Each call returns a new agent with its own schema registry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from agents.backbone import settings
from agents.backbone.outbox import OutboxRelay
from agents.backbone.processing import MessageProcessor
from agents.backbone.publishers import Publisher, ServiceBusPublisher
from agents.backbone.ratelimit import RateLimiter, RatePolicy
from agents.backbone.saga import SagaEngine
from agents.backbone.schemas import SchemaRegistry
from agents.backbone.tables import RequestCounter, state_table
from agents.contracts import fraud
from agents.orders import entities
from agents.orders.handlers import OrdersAgent
from agents.orders.model import order_saga

if TYPE_CHECKING:
    from azure.data.tables import TableServiceClient

SAGAS_TABLE = "orders"
RATE_LIMITS_TABLE = "ordersratelimits"
STEP_TIMEOUT_SETTING = "ORDERS_STEP_TIMEOUT_SECONDS"
RATE_LIMIT_SETTING = "ORDERS_RATE_LIMIT"
# Per caller (its function key) at POST /api/orders; `off` turns it off.
DEFAULT_RATE_LIMIT = "50/s burst=100 caller=function-key"
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
    rate_limit: RatePolicy | None = None,
) -> OrdersAgent:
    """`table_prefix` keeps several stacks (tests, the demo) apart in one storage account;
    `now` is the clock deadlines are scheduled by (a test's clock it can advance)."""
    # What the saga consumes from other agents; the engine adds its commands and replies.
    schemas = SchemaRegistry(fraud.SCHEMAS)

    table = state_table(tables, table_prefix + SAGAS_TABLE)
    return OrdersAgent(
        schemas=schemas,
        sagas=MessageProcessor(table, OutboxRelay(table, publisher, now=now), registry=schemas,
                               counter=counter, now=now),
        engine=SagaEngine(order_saga(step_timeout, compensation_backoff=compensation_backoff),
                          registry=schemas),
        limiter=None if rate_limit is None else RateLimiter(
            state_table(tables, table_prefix + RATE_LIMITS_TABLE), rate_limit),
    )


def bootstrap(env: Mapping[str, str]) -> OrdersAgent:
    """The agent on the services the app settings name (`entities` lists the settings):
    commands go to the services' queues, step deadlines to the saga queue."""
    timeout = float(env.get(STEP_TIMEOUT_SETTING) or DEFAULT_STEP_TIMEOUT.total_seconds())
    rate_limit = RatePolicy.from_setting("orders", env, RATE_LIMIT_SETTING, DEFAULT_RATE_LIMIT)
    publisher = ServiceBusPublisher(settings.servicebus_client(entities.CONNECTION, env=env))
    tables = settings.table_service(entities.STATE_STORAGE, env=env)
    agent = build(tables, publisher, step_timeout=timedelta(seconds=timeout),
                  rate_limit=rate_limit)
    return replace(agent, owned=(publisher, tables))
