"""Composes the fraud agent. `bootstrap(env)` returns the `FraudAgent` wired from app settings
(the Blueprint calls it on first invocation, never at import); `build(store, publisher, ...)`
wires the same agent onto adapters a test, the demo or the benchmark chose.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from agents.backbone import settings
from agents.backbone.outbox import OutboxRelay
from agents.backbone.publishers import Publisher, ServiceBusPublisher
from agents.backbone.schemas import SchemaRegistry
from agents.backbone.store import Store
from agents.backbone.tables import as_store, state_table
from agents.contracts import fraud, orders
from agents.fraud import entities
from agents.fraud.handlers import FraudAgent
from agents.fraud.model import Rules
from agents.reasoning import Reasoner, RecordedAnswers, load_task, reasoner_from_settings

if TYPE_CHECKING:
    from azure.data.tables import TableClient

STATE_TABLE = "fraud"
BREAKERS_TABLE = "breakers"
PROMPTS = Path(__file__).parent / "prompts"
EXPLAIN_TASK = "explain-risk"


def build(
    store: Store | TableClient,
    publisher: Publisher,
    *,
    reasoner: Reasoner | None = None,
    rules: Rules | None = None,
    now: Callable[[], datetime] | None = None,
) -> FraudAgent:
    """`publisher` sends alerts (to `fraud-alerts`) and parked events (to
    `fraud-poison-events`); `reasoner` None means rules-only explanations."""
    schemas = SchemaRegistry({**orders.SCHEMAS, **fraud.SCHEMAS})
    state = as_store(store)
    return FraudAgent(
        schemas=schemas, store=state, relay=OutboxRelay(state, publisher, now=now),
        parking=publisher, answers=RecordedAnswers(state, reasoner),
        task=load_task(PROMPTS, EXPLAIN_TASK), rules=rules or Rules(),
    )


def bootstrap(env: Mapping[str, str]) -> FraudAgent:
    """The agent on the services the app settings name (`entities` lists the settings); the
    LLM breaker is shared through the `breakers` table."""
    tables = settings.table_service(entities.STATE_STORAGE, env=env)
    publisher = ServiceBusPublisher(
        settings.servicebus_client(entities.SERVICEBUS_CONNECTION, env=env),
        topics=(entities.ALERTS_TOPIC,))
    reasoner = reasoner_from_settings(env, breaker_table=state_table(tables, BREAKERS_TABLE))
    return build(state_table(tables, STATE_TABLE), publisher, reasoner=reasoner,
                 rules=Rules.from_settings(env))


def parking(env: Mapping[str, str]) -> Publisher:
    """What parks a batch when `bootstrap(env)` keeps failing: the Service Bus client alone
    (no storage, no rules, no model), so a bad setting elsewhere cannot stop it."""
    return ServiceBusPublisher(settings.servicebus_client(entities.SERVICEBUS_CONNECTION,
                                                          env=env))
