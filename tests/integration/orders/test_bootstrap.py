"""Composition: each `build` returns its own agent (or services) with its own schema registry,
knowing what it consumes and publishes; the agent `bootstrap` composes closes what it opened."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from azure.data.tables import TableServiceClient

from agents.backbone.outbox import OutboxRelay
from agents.backbone.publishers import RoutingPublisher
from agents.backbone.saga import REPLY
from agents.contracts import fraud, orders
from agents.orders import bootstrap, entities
from agents.orders.edge import place_order_request
from agents.orders.handlers import OrdersAgent, place_order
from agents.orders.model import ACTION_OF_TYPE
from agents.orders.simulated import bootstrap as simulated_bootstrap
from devstack.azurite import Azurite
from devstack.server import DevStack

ENTITIES = Path(__file__).resolve().parents[3] / "infra" / "entities"
SETTLED = 30.0  # bound on the wait for the server to see the client's connection close


def _tables(storage_connection_string: str) -> TableServiceClient:
    return TableServiceClient.from_connection_string(storage_connection_string)


def _agent(storage_connection_string: str) -> OrdersAgent:
    return bootstrap.build(_tables(storage_connection_string),
                           RoutingPublisher({}), table_prefix="tboot")


def test_the_agent_knows_the_fraud_alert_and_its_sagas_commands_and_replies(
        storage_connection_string: str) -> None:
    known = set(_agent(storage_connection_string).schemas.types())
    assert {fraud.ALERT_RAISED, REPLY} | set(ACTION_OF_TYPE) <= known


def test_the_simulated_services_know_the_commands_and_the_charge_they_publish(
        storage_connection_string: str) -> None:
    services = simulated_bootstrap.build(_tables(storage_connection_string),
                                         RoutingPublisher({}), table_prefix="tboot")
    assert {orders.PAYMENT_CHARGED, REPLY} | set(ACTION_OF_TYPE) <= set(services.schemas.types())


def test_two_agents_share_no_registry(storage_connection_string: str) -> None:
    first, second = _agent(storage_connection_string), _agent(storage_connection_string)
    first.schemas.register("test.only.first", {"type": "object"})
    assert "test.only.first" not in second.schemas.types()


def _open_connections(devstack: DevStack) -> int:
    return devstack.call(lambda: len(devstack.amqp.connections))


def test_leaving_the_bootstrapped_agent_writes_its_marks_and_closes_its_connections() -> None:
    body = (b'{"customerId": "c-1", "card": "tok-1", '
            b'"items": [{"sku": "sku-1", "quantity": 2, "unitPriceCents": 1250}]}')
    order = place_order_request(str(uuid.uuid4()), body)
    # Its own servers: bootstrap's entities and tables have no prefix, and the host tests on
    # the shared ones would find this order's command (and saga) and run it in their trace.
    with DevStack([ENTITIES / "servicebus.json"], port=0) as devstack, Azurite() as storage:
        env = {entities.CONNECTION: devstack.connection_string,
               entities.STATE_STORAGE: storage.connection_string}
        before = _open_connections(devstack)
        with bootstrap.bootstrap(env) as agent:
            place_order(order, agent)  # the first command goes out over AMQP
            assert _open_connections(devstack) > before
            assert agent.sagas.relay.pending(order.order_id), "marks wait for the next write"
        with pytest.raises(ValueError, match="already been closed"):  # the Table client
            agent.sagas.relay.pending(order.order_id)
        reader = OutboxRelay(_tables(storage.connection_string).get_table_client(
            bootstrap.SAGAS_TABLE), RoutingPublisher({}))
        assert reader.pending(order.order_id) == [], "the marks were written on the way out"
        deadline = time.monotonic() + SETTLED
        while _open_connections(devstack) != before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _open_connections(devstack) == before
