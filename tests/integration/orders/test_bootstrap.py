"""Composition: each `bootstrap.build` returns its own agent with its own schema registry."""

from __future__ import annotations

from azure.data.tables import TableServiceClient

from agents.backbone.saga import REPLY
from agents.contracts import fraud, orders
from agents.orders import bootstrap
from agents.orders.handlers import OrdersAgent
from agents.orders.model import ACTION_OF_TYPE
from tests.integration.backbone.broker import BrokerPublisher, InMemoryBroker


def _agent(storage_connection_string: str) -> OrdersAgent:
    tables = TableServiceClient.from_connection_string(storage_connection_string)
    return bootstrap.build(tables, BrokerPublisher(InMemoryBroker()), table_prefix="tboot")


def test_an_agent_knows_the_contracts_it_uses_and_its_sagas_types(
        storage_connection_string: str) -> None:
    known = set(_agent(storage_connection_string).schemas.types())
    assert {orders.PAYMENT_CHARGED, fraud.ALERT_RAISED, REPLY} | set(ACTION_OF_TYPE) <= known


def test_two_agents_share_no_registry(storage_connection_string: str) -> None:
    first, second = _agent(storage_connection_string), _agent(storage_connection_string)
    first.schemas.register("test.only.first", {"type": "object"})
    assert "test.only.first" not in second.schemas.types()
