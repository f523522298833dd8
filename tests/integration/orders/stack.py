"""An orders stack: Azurite tables (own prefix), the in-memory peek-lock broker, and the app's
functions driven like the host drives them. Used by the tests, the demo and the benchmark."""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from azure.data.tables import TableServiceClient
from azure.servicebus import ServiceBusMessage

from agents.backbone import Envelope, Publisher
from agents.backbone.wire import CLOUDEVENTS_CONTENT_TYPE, application_properties, encode_body
from agents.contracts import fraud
from agents.orders import bootstrap, entities
from agents.orders.handlers import OrdersContext
from agents.orders.model import Service
from agents.orders.simulators import Mode, Switch
from tests.integration.backbone.broker import BrokerPublisher, InMemoryBroker
from tests.integration.orders.pump import FunctionHost, body_of

ROOT = Path(__file__).resolve().parents[3]
STEP_TIMEOUT = timedelta(seconds=30)


def registered_functions() -> list[Any]:
    """`app.get_functions()` of a fresh load of function_app.py: an app allows that call
    once, and other tests call it on the imported `function_app` module."""
    spec = importlib.util.spec_from_file_location("function_app_under_orders_tests",
                                                  ROOT / "function_app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    functions: list[Any] = module.app.get_functions()
    return functions


FUNCTIONS = registered_functions()


@dataclass
class OrdersStack:
    context: OrdersContext
    host: FunctionHost
    broker: InMemoryBroker
    publisher: BrokerPublisher

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
        self.context.switchboard.set(service, scope, Switch(mode, slow_seconds))

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
        tables = [p.table for p in self.context.processors]
        return {(t.table_name, e["PartitionKey"], e["RowKey"]): dict(e)
                for t in tables for e in t.list_entities()}

    def movements(self, service: Service, ledger_key: str, kind: str) -> int:
        table = self.context.ledgers[service].table
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
    context = bootstrap.build(tables, publisher or to_broker, step_timeout=STEP_TIMEOUT,
                              compensation_backoff=timedelta(seconds=1),
                              table_prefix=f"t{uuid.uuid4().hex[:10]}", now=broker.now)
    return OrdersStack(context, FunctionHost(FUNCTIONS, broker), broker, to_broker)


@contextmanager
def running(built: OrdersStack) -> Iterator[OrdersStack]:
    """Make `built` the app's adapters while the block runs."""
    bootstrap.configure(built.context)
    try:
        with built.host:
            yield built
    finally:
        bootstrap.configure(None)
