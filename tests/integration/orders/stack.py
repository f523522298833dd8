"""An orders stack: Azurite tables (own prefix), the in-memory peek-lock broker, and the orders
Blueprint's functions over an agent built for the test, driven like the host drives them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import azure.functions as func
from azure.data.tables import TableServiceClient
from azure.servicebus import ServiceBusMessage

from agents.backbone import Envelope, Publisher
from agents.backbone.wire import CLOUDEVENTS_CONTENT_TYPE, application_properties, encode_body
from agents.contracts import fraud
from agents.orders import bootstrap, entities
from agents.orders.blueprint import blueprint
from agents.orders.handlers import OrdersAgent
from agents.orders.model import Service
from agents.orders.simulated import bootstrap as simulated_bootstrap
from agents.orders.simulated.blueprint import blueprint as simulated_blueprint
from agents.orders.simulated.handlers import SimulatedServices
from agents.orders.simulated.modes import Mode, Switch
from tests.integration.backbone.broker import BrokerPublisher, InMemoryBroker
from tests.integration.orders.pump import FunctionHost, body_of

STEP_TIMEOUT = timedelta(seconds=30)


def functions_over(agent: OrdersAgent, services: SimulatedServices) -> list[Any]:
    """The orders and simulated services' Blueprints over `agent` and `services`, registered
    as function_app.py registers them with the simulators enabled."""
    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
    app.register_functions(blueprint(lambda: agent))
    app.register_functions(simulated_blueprint(lambda: services))
    functions: list[Any] = app.get_functions()
    return functions


@dataclass
class OrdersStack:
    agent: OrdersAgent
    services: SimulatedServices
    host: FunctionHost
    broker: InMemoryBroker
    publisher: BrokerPublisher

    def __enter__(self) -> OrdersStack:
        self.host.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.host.__exit__(*exc)

    def with_agent(self, agent: OrdersAgent) -> OrdersStack:
        """The same tables and broker, with the functions over another agent (enter it)."""
        return OrdersStack(agent, self.services,
                           FunctionHost(functions_over(agent, self.services), self.broker),
                           self.broker, self.publisher)

    def place(self, body: dict[str, Any], key: str | None = None) -> dict[str, Any]:
        response = self.host.http("POST", "orders", body=body,
                                  headers={"Idempotency-Key": key or str(uuid.uuid4())})
        assert response.status_code == 201, response.get_body()
        return dict(body_of(response))

    def order(self, order_id: str) -> dict[str, Any]:
        response = self.host.http("GET", "orders/{order_id}",
                                  route_params={"order_id": order_id})
        assert response.status_code == 200
        return dict(body_of(response))

    def switch(self, service: Service, scope: str, mode: Mode, slow_seconds: float = 600.0
               ) -> None:
        self.services.switchboard.set(service, scope, Switch(mode, slow_seconds))

    def send(self, entity: str, event: Envelope) -> None:
        """Send a CloudEvent as another app would (structured mode, MessageId = event id)."""
        properties: dict[str | bytes, Any] = {
            name: value for name, value in application_properties(event).items()}
        self.broker.send(entity, ServiceBusMessage(
            encode_body(event), message_id=event.id, content_type=CLOUDEVENTS_CONTENT_TYPE,
            application_properties=properties))

    def raise_fraud_alert(self, order_id: str, reason: str) -> None:
        self.send(entities.FRAUD_ALERTS_TOPIC, Envelope.new(
            fraud.ALERT_RAISED, {"orderId": order_id, "reason": reason},
            source=fraud.SOURCE, subject=order_id))

    def snapshot(self) -> dict[tuple[str, str, str], dict[str, Any]]:
        """Every row of every orders table: compare two to prove nothing was written."""
        tables = [p.table for p in [*self.agent.processors, *self.services.processors]]
        return {(t.table_name, e["PartitionKey"], e["RowKey"]): dict(e)
                for t in tables for e in t.list_entities()}

    def movements(self, service: Service, ledger_key: str, kind: str) -> int:
        table = self.services.ledgers[service].table
        rows = table.query_entities("PartitionKey eq @pk and movement eq @kind",
                                    parameters={"pk": ledger_key, "kind": kind})
        return len(list(rows))


def order_body(card: str | None = None, sku: str = "sku-1") -> dict[str, Any]:
    return {"customerId": "c-1", "card": card or f"tok-{uuid.uuid4().hex[:8]}",
            "items": [{"sku": sku, "quantity": 2, "unitPriceCents": 1250}]}


def build_stack(connection_string: str, broker: InMemoryBroker,
                publisher: Publisher | None = None) -> OrdersStack:
    tables = TableServiceClient.from_connection_string(connection_string)
    to_broker = BrokerPublisher(broker)
    prefix = f"t{uuid.uuid4().hex[:10]}"
    agent = bootstrap.build(tables, publisher or to_broker, step_timeout=STEP_TIMEOUT,
                            compensation_backoff=timedelta(seconds=1), table_prefix=prefix,
                            now=broker.now)
    services = simulated_bootstrap.build(tables, publisher or to_broker, table_prefix=prefix,
                                         now=broker.now)
    return OrdersStack(agent, services, FunctionHost(functions_over(agent, services), broker),
                       broker, to_broker)
