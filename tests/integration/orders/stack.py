"""An orders stack for tests that order the deliveries themselves: the agent and the simulated
services composed by their `build` on Azurite tables (own prefix), publishing into the test's
`Deliveries` (its clock is theirs), and the Blueprints' HTTP routes. A test moves messages
with `deliver` / `run` (to the same handlers the triggers call) and time with
`deliveries.advance`; what runs in real time over devstack's Service Bus and Functions host
is in `test_on_devstack.py`."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import azure.functions as func
from azure.data.tables import TableServiceClient

from agents.backbone import Envelope, Outcome, Publisher
from agents.backbone.saga import ALERT
from agents.backbone.settlement import ScheduledRetry
from agents.backbone.wire import application_properties, encode_body, parse_servicebus
from agents.contracts import fraud
from agents.orders import bootstrap, entities, handlers
from agents.orders.blueprint import blueprint
from agents.orders.handlers import OrdersAgent
from agents.orders.model import QUEUE_OF_SERVICE, Service
from agents.orders.simulated import bootstrap as simulated_bootstrap
from agents.orders.simulated.blueprint import attempt_of
from agents.orders.simulated.blueprint import blueprint as simulated_blueprint
from agents.orders.simulated.handlers import SimulatedServices, handle_service_command
from agents.orders.simulated.modes import Mode, Switch
from tests.integration.backbone.deliveries import Deliveries, Delivery, Message

STEP_TIMEOUT = timedelta(seconds=30)
SERVICEBUS_ENTITIES = Path(__file__).resolve().parents[3] / "infra" / "entities" / "servicebus.json"


def max_delivery_count(queue: str) -> int:
    """What infra/entities gives `queue`: devstack and Bicep read the same file."""
    config = json.loads(SERVICEBUS_ENTITIES.read_text())
    (namespace,) = config["UserConfig"]["Namespaces"]
    (entry,) = [entry for entry in namespace["Queues"] if entry["Name"] == queue]
    return int(entry["Properties"]["MaxDeliveryCount"])


# Every orders queue has the same; the tests' deliveries dead-letter after as many.
MAX_DELIVERY_COUNT = max_delivery_count(entities.SAGA_QUEUE)
SERVICE_QUEUES = (entities.INVENTORY_QUEUE, entities.PAYMENTS_QUEUE, entities.SHIPPING_QUEUE)
Route = Callable[[func.HttpRequest], func.HttpResponse]


def routes_over(agent: OrdersAgent, services: SimulatedServices) -> dict[tuple[str, str], Route]:
    """The HTTP functions of the orders and simulated services' Blueprints over `agent` and
    `services`, registered as function_app.py registers them, by (method, route)."""
    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
    app.register_functions(blueprint(lambda: agent))
    app.register_functions(simulated_blueprint(lambda: services))
    found: dict[tuple[str, str], Route] = {}
    for function in app.get_functions():
        settings = function.get_trigger().get_dict_repr()
        if settings["type"] == "httpTrigger":
            for method in settings["methods"]:
                found[(str(method.value), settings["route"])] = function.get_user_function()
    return found


def body_of(response: func.HttpResponse) -> Any:
    return json.loads(response.get_body())


@dataclass
class OrdersStack:
    agent: OrdersAgent
    services: SimulatedServices
    deliveries: Deliveries
    routes: dict[tuple[str, str], Route] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.routes = self.routes or routes_over(self.agent, self.services)

    def with_agent(self, agent: OrdersAgent) -> OrdersStack:
        """The same tables and deliveries, with the routes over another agent."""
        return OrdersStack(agent, self.services, self.deliveries)

    def http(self, method: str, route: str, *, body: Any = None,
             headers: Mapping[str, str] | None = None,
             route_params: Mapping[str, str] | None = None) -> func.HttpResponse:
        raw = b"" if body is None else json.dumps(body).encode()
        path = route
        for name, value in (route_params or {}).items():
            path = path.replace("{" + name + "}", value)
        request = func.HttpRequest(method, f"http://127.0.0.1/api/{path}", headers=headers or {},
                                   route_params=dict(route_params or {}), body=raw)
        return self.routes[(method, route)](request)

    def place(self, body: dict[str, Any], key: str | None = None) -> dict[str, Any]:
        response = self.http("POST", "orders", body=body,
                             headers={"Idempotency-Key": key or str(uuid.uuid4())})
        assert response.status_code == 201, response.get_body()
        return dict(body_of(response))

    def order(self, order_id: str) -> dict[str, Any]:
        response = self.http("GET", "orders/{order_id}", route_params={"order_id": order_id})
        assert response.status_code == 200
        return dict(body_of(response))

    def consumers(self) -> dict[str, Callable[[Message], Outcome[Any] | None]]:
        """What each triggered entity's function calls: the saga (replies, deadlines, fraud
        alerts) and the three simulated services."""
        consumers: dict[str, Callable[[Message], Outcome[Any] | None]] = {
            entities.SAGA_QUEUE: self._saga, entities.FRAUD_ALERTS_TOPIC: self._saga}
        for queue in SERVICE_QUEUES:
            consumers[queue] = self._service
        return consumers

    def deliver(self, entity: str) -> Delivery | None:
        return self.deliveries.deliver(entity, self.consumers()[entity])

    def run(self) -> list[Delivery]:
        """Deliver everything due, everywhere, until nothing is."""
        return self.deliveries.run(self.consumers())

    def switch(self, service: Service, scope: str, mode: Mode, slow_seconds: float = 600.0
               ) -> None:
        self.services.switchboard.set(service, scope, Switch(mode, slow_seconds))

    def send(self, entity: str, event: Envelope) -> None:
        """Send a CloudEvent as another app would (structured mode, MessageId = event id)."""
        self.deliveries.send(entity, encode_body(event), event.id, application_properties(event))

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

    def _saga(self, message: Message) -> Outcome[Any] | None:
        event = parse_servicebus(message.body, message.application_properties,
                                 registry=self.agent.schemas)
        if event.type == ALERT:
            return None
        return handlers.handle_saga_event(event, self.agent)

    def _service(self, message: Message) -> Outcome[Any] | None:
        """As the services' trigger: poison raises (dead-lettered with its reason), a flaky
        attempt raises `RetryLater` (put back through `deliveries.retries`)."""
        command = parse_servicebus(message.body, message.application_properties,
                                   registry=self.services.schemas)
        retry = self.deliveries.retries.get(message.destination)
        return handle_service_command(command, attempt_of(message, retry), self.services)


def order_body(card: str | None = None, sku: str = "sku-1") -> dict[str, Any]:
    return {"customerId": "c-1", "card": card or f"tok-{uuid.uuid4().hex[:8]}",
            "items": [{"sku": sku, "quantity": 2, "unitPriceCents": 1250}]}


def build_stack(connection_string: str, deliveries: Deliveries,
                publisher: Publisher | None = None, *, max_retries: int = 10) -> OrdersStack:
    """`publisher` (default: `deliveries`) is what both the agent and the services publish to;
    `max_retries`: how often a simulated service puts a flaky attempt back."""
    tables = TableServiceClient.from_connection_string(connection_string)
    prefix = f"t{uuid.uuid4().hex[:10]}"
    agent = bootstrap.build(tables, publisher or deliveries, step_timeout=STEP_TIMEOUT,
                            compensation_backoff=timedelta(seconds=1), table_prefix=prefix,
                            now=deliveries.now)
    retries = {service: ScheduledRetry(deliveries.sender(queue),
                                       max_retries=max_retries, clock=deliveries.now)
               for service, queue in QUEUE_OF_SERVICE.items()}
    deliveries.retries.update({retry.sender.entity_name: retry for retry in retries.values()})
    services = simulated_bootstrap.build(tables, publisher or deliveries, table_prefix=prefix,
                                         now=deliveries.now, retries=retries)
    return OrdersStack(agent, services, deliveries)

