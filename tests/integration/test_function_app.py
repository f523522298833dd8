"""The composition root's registrations: what the Functions host reads from the app."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest

from agents.backbone import ConfigurationError
from agents.orders import entities, simulated

ROOT = Path(__file__).resolve().parents[2]


def registered_functions(*, simulators: bool = True) -> list[Any]:
    """`app.get_functions()` of a fresh load of function_app.py (an app allows that call
    once, and other tests call it on the imported `function_app` module), loaded with
    `ORDERS_SIMULATORS_ENABLED` set as asked."""
    saved = os.environ.get(simulated.SETTING)
    os.environ[simulated.SETTING] = str(simulators).lower()
    try:
        return _fresh_load()
    finally:
        if saved is None:
            os.environ.pop(simulated.SETTING)
        else:
            os.environ[simulated.SETTING] = saved


def _fresh_load() -> list[Any]:
    spec = importlib.util.spec_from_file_location("function_app_under_test",
                                                  ROOT / "function_app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    functions: list[Any] = module.app.get_functions()
    return functions


FUNCTIONS = registered_functions()


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
    # Every one settles itself (SDK-type binding), the simulated services' too.
    expected = {"orders_saga": entities.SAGA_QUEUE,
                "orders_inventory": entities.INVENTORY_QUEUE,
                "orders_payments": entities.PAYMENTS_QUEUE,
                "orders_shipping": entities.SHIPPING_QUEUE}
    for name, queue in expected.items():
        trigger = _trigger(name)
        assert (trigger["type"], trigger["queueName"], trigger["connection"]) == (
            "serviceBusTrigger", queue, "ORDERS_SERVICEBUS")
        assert trigger["autoCompleteMessages"] is False, name


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


def test_loading_the_app_composes_no_agent_until_a_function_is_invoked(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for setting in (entities.STATE_STORAGE, entities.CONNECTION, entities.FRAUD_CONNECTION,
                    entities.FRAUD_EVENTHUBS):
        monkeypatch.delenv(setting, raising=False)
    by_name = {fn.get_function_name(): fn for fn in registered_functions()}  # no settings: fine
    get_order = by_name["orders_get"].get_user_function()
    request = func.HttpRequest("GET", "http://127.0.0.1/api/orders/o1", body=b"",
                               route_params={"order_id": "o1"})
    with pytest.raises(ConfigurationError, match=entities.CONNECTION):
        get_order(request)  # the first invocation composes the agent from the settings


# Loaded on first use, never at indexing: each agent's handlers and bootstrap, the machinery
# they run on (unit of work, outbox, saga engine, Table adapter, rate limiter) and every SDK
# but the SDK-type Service Bus binding's (azure-servicebus, uamqp, grpc: its annotation types
# must resolve when the worker indexes the app).
FIRST_USE = ("agents.orders.handlers", "agents.orders.bootstrap", "agents.fraud.handlers",
             "agents.fraud.bootstrap", "agents.triage.handlers", "agents.triage.bootstrap",
             "agents.reasoning", "agents.backbone.processing", "agents.backbone.unit_of_work",
             "agents.backbone.outbox", "agents.backbone.saga", "agents.backbone.tables",
             "agents.backbone.ratelimit", "azure.data", "azure.identity", "azure.eventhub",
             "azure.eventgrid", "azure.storage", "azure.monitor", "jsonschema", "tenacity",
             "openai", "pyrate_limiter", "opentelemetry")


def test_loading_the_app_as_deployed_loads_no_handler_no_store_and_no_other_sdk() -> None:
    probe = ("import sys, function_app; print(sorted({m for m in sys.modules"
             f" if m.startswith({FIRST_USE!r})}}))")
    env = {name: value for name, value in os.environ.items() if name != simulated.SETTING}
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True, cwd=ROOT, env=env).stdout.strip()
    assert loaded == "[]"


SIMULATED = {"orders_inventory", "orders_payments", "orders_shipping", "orders_simulator_mode",
             "orders_simulators_outbox_sweeper", "orders_simulators_retention"}


def test_the_simulated_services_are_registered_only_when_the_setting_enables_them() -> None:
    names = {fn.get_function_name() for fn in FUNCTIONS}
    off = {fn.get_function_name() for fn in registered_functions(simulators=False)}
    assert names >= SIMULATED
    assert off == names - SIMULATED
    assert {"orders_place", "orders_get", "orders_saga", "orders_fraud_alert"} <= off
