"""The composition root's registrations: what the Functions host reads from the app."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agents.orders import entities
from tests.integration.orders.stack import FUNCTIONS

ROOT = Path(__file__).resolve().parents[2]


def _trigger(name: str) -> dict[str, Any]:
    by_name = {fn.get_function_name(): fn for fn in FUNCTIONS}
    return dict(by_name[name].get_trigger().get_dict_repr())


def _servicebus_entities() -> set[str]:
    namespace = json.loads((ROOT / "infra/entities/servicebus.json").read_text())
    namespace = namespace["UserConfig"]["Namespaces"][0]
    names = {queue["Name"] for queue in namespace["Queues"]}
    for topic in namespace["Topics"]:
        names |= {f"{topic['Name']}/{s['Name']}" for s in topic["Subscriptions"]}
    return names


def test_each_orders_queue_triggers_its_function_on_the_orders_connection() -> None:
    expected = {"orders_saga": entities.SAGA_QUEUE, "orders_inventory": entities.INVENTORY_QUEUE,
                "orders_payments": entities.PAYMENTS_QUEUE,
                "orders_shipping": entities.SHIPPING_QUEUE}
    for name, queue in expected.items():
        trigger = _trigger(name)
        assert (trigger["type"], trigger["queueName"], trigger["connection"]) == (
            "serviceBusTrigger", queue, "ORDERS_SERVICEBUS")
        assert trigger["autoCompleteMessages"] is True


def test_fraud_alerts_reach_the_saga_through_the_orders_subscription() -> None:
    trigger = _trigger("orders_fraud_alert")
    assert (trigger["topicName"], trigger["subscriptionName"], trigger["connection"]) == (
        "fraud-alerts", "orders", "FRAUD_SERVICEBUS")


def test_every_service_bus_trigger_names_an_entity_declared_in_infra() -> None:
    declared = _servicebus_entities()
    for fn in FUNCTIONS:
        trigger = fn.get_trigger().get_dict_repr()
        if trigger["type"] == "serviceBusTrigger":
            entity = trigger.get("queueName") or (
                f"{trigger['topicName']}/{trigger['subscriptionName']}")
            assert entity in declared, fn.get_function_name()


def test_http_routes_and_methods() -> None:
    routes = {(t["route"], tuple(str(m.value) for m in t["methods"]))
              for t in map(lambda fn: fn.get_trigger().get_dict_repr(), FUNCTIONS)
              if t["type"] == "httpTrigger"}
    assert routes >= {("orders", ("POST",)), ("orders/{order_id}", ("GET",)),
                      ("simulators/{service}/mode", ("POST",))}


def test_timers_sweep_the_outbox_and_purge_old_rows() -> None:
    assert _trigger("orders_outbox_sweeper")["schedule"] == "*/30 * * * * *"
    assert _trigger("orders_retention")["type"] == "timerTrigger"
