"""Composition: each `build` returns its own agent (or services) with its own schema registry,
knowing what it consumes and publishes."""

from __future__ import annotations

from azure.data.tables import TableServiceClient

from agents.backbone.saga import REPLY
from agents.contracts import fraud, orders
from agents.orders import bootstrap
from agents.orders.handlers import OrdersAgent
from agents.orders.model import ACTION_OF_TYPE
from agents.orders.simulated import bootstrap as simulated_bootstrap
from tests.integration.backbone.broker import BrokerPublisher, InMemoryBroker


def _tables(storage_connection_string: str) -> TableServiceClient:
    return TableServiceClient.from_connection_string(storage_connection_string)


def _agent(storage_connection_string: str) -> OrdersAgent:
    return bootstrap.build(_tables(storage_connection_string),
                           BrokerPublisher(InMemoryBroker()), table_prefix="tboot")


def test_the_agent_knows_the_fraud_alert_and_its_sagas_commands_and_replies(
        storage_connection_string: str) -> None:
    known = set(_agent(storage_connection_string).schemas.types())
    assert {fraud.ALERT_RAISED, REPLY} | set(ACTION_OF_TYPE) <= known


def test_the_simulated_services_know_the_commands_and_the_charge_they_publish(
        storage_connection_string: str) -> None:
    services = simulated_bootstrap.build(_tables(storage_connection_string),
                                         BrokerPublisher(InMemoryBroker()), table_prefix="tboot")
    assert {orders.PAYMENT_CHARGED, REPLY} | set(ACTION_OF_TYPE) <= set(services.schemas.types())


def test_two_agents_share_no_registry(storage_connection_string: str) -> None:
    first, second = _agent(storage_connection_string), _agent(storage_connection_string)
    first.schemas.register("test.only.first", {"type": "object"})
    assert "test.only.first" not in second.schemas.types()
