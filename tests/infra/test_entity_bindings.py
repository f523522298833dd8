"""The function bindings name only entities from infra/entities/*.json and connection settings
that Bicep deploys, so what runs locally is what gets provisioned."""

from __future__ import annotations

import json
from pathlib import Path

import azure.functions as func
import pytest

from devstack.host.index import load_app
from tests.infra import templates
from tests.infra.bindings import (
    BindingRef,
    binding_problems,
    bindings_of,
    declared_entities,
)


@pytest.fixture(scope="module")
def deployed_settings() -> set[str]:
    return set(templates.app_settings())


def test_every_binding_of_the_app_names_declared_entities_and_deployed_connections(
    deployed_settings: set[str],
) -> None:
    # A fresh load: a FunctionApp allows get_functions() once, and other tests index the app too.
    app = load_app(Path(__file__).resolve().parents[2])

    problems = binding_problems(bindings_of(app), declared_entities(), deployed_settings)

    assert problems == []


def test_every_local_connection_has_an_identity_based_counterpart_in_bicep(
    deployed_settings: set[str],
) -> None:
    local = json.loads((templates.REPO / "local.settings.sample.json").read_text())["Values"]
    connections = [
        name
        for name, value in local.items()
        if isinstance(value, str)
        and ("Endpoint=sb://" in value or value.startswith("UseDevelopmentStorage"))
    ]

    missing = [
        name
        for name in connections
        if not any(setting.startswith(f"{name}__") for setting in deployed_settings)
    ]

    assert connections, "local.settings.sample.json names no connection"
    assert missing == []


def _sample_app() -> func.FunctionApp:
    """Bindings a correct app would declare, registered the way function_app.py does."""
    app = func.FunctionApp()

    @app.service_bus_queue_trigger(
        arg_name="message", queue_name="orders-saga", connection="ORDERS_SERVICEBUS"
    )
    @app.service_bus_topic_output(
        arg_name="alerts", topic_name="fraud-alerts", connection="FRAUD_SERVICEBUS"
    )
    def saga_step(message: func.ServiceBusMessage, alerts: func.Out[str]) -> None:
        """Sample only."""

    @app.event_hub_message_trigger(
        arg_name="events",
        event_hub_name="fraud-payments",
        consumer_group="fraud-scoring",
        connection="FRAUD_EVENTHUBS",
        cardinality="many",
    )
    def score(events: list[func.EventHubEvent]) -> None:
        """Sample only."""

    @app.event_grid_trigger(arg_name="event")
    def triage_ticket_received(event: func.EventGridEvent) -> None:
        """Sample only."""

    return app


def test_checker_accepts_bindings_that_match_the_entity_files_and_bicep(
    deployed_settings: set[str],
) -> None:
    bindings = bindings_of(_sample_app())

    assert {binding.type for binding in bindings} >= {
        "serviceBusTrigger",
        "serviceBus",
        "eventHubTrigger",
        "eventGridTrigger",
    }
    assert binding_problems(bindings, declared_entities(), deployed_settings) == []


def test_checker_reports_a_queue_the_entity_files_do_not_declare(
    deployed_settings: set[str],
) -> None:
    app = func.FunctionApp()

    @app.service_bus_queue_trigger(
        arg_name="message", queue_name="orders-typo", connection="ORDERS_SERVICEBUS"
    )
    def handle(message: func.ServiceBusMessage) -> None:
        """Sample only."""

    problems = binding_problems(bindings_of(app), declared_entities(), deployed_settings)

    assert problems == ["handle (serviceBusTrigger): queue 'orders-typo' is not in servicebus.json"]


def test_checker_reports_a_subscription_the_entity_files_do_not_declare(
    deployed_settings: set[str],
) -> None:
    app = func.FunctionApp()

    @app.service_bus_topic_trigger(
        arg_name="message",
        topic_name="triage-tickets",
        subscription_name="legal",
        connection="TRIAGE_SERVICEBUS",
    )
    def handle(message: func.ServiceBusMessage) -> None:
        """Sample only."""

    problems = binding_problems(bindings_of(app), declared_entities(), deployed_settings)

    assert problems == [
        "handle (serviceBusTrigger): subscription triage-tickets/legal is not in servicebus.json"
    ]


def test_checker_reports_an_event_hub_or_consumer_group_the_entity_files_do_not_declare(
    deployed_settings: set[str],
) -> None:
    entities = declared_entities()
    unknown_hub = BindingRef(
        function="score",
        type="eventHubTrigger",
        event_hub_name="fraud-clicks",
        connection="FRAUD_EVENTHUBS",
    )
    unknown_group = BindingRef(
        function="score",
        type="eventHubTrigger",
        event_hub_name="fraud-payments",
        consumer_group="analytics",
        connection="FRAUD_EVENTHUBS",
    )

    assert binding_problems([unknown_hub], entities, deployed_settings) == [
        "score (eventHubTrigger): event hub 'fraud-clicks' is not in eventhubs.json"
    ]
    assert binding_problems([unknown_group], entities, deployed_settings) == [
        "score (eventHubTrigger): consumer group fraud-payments/analytics is not in eventhubs.json"
    ]


def test_checker_reports_a_connection_setting_bicep_does_not_set(
    deployed_settings: set[str],
) -> None:
    app = func.FunctionApp()

    @app.service_bus_queue_trigger(
        arg_name="message", queue_name="orders-saga", connection="ORDERS_SB"
    )
    def handle(message: func.ServiceBusMessage) -> None:
        """Sample only."""

    problems = binding_problems(bindings_of(app), declared_entities(), deployed_settings)

    assert problems == [
        "handle (serviceBusTrigger): Bicep sets no ORDERS_SB__fullyQualifiedNamespace"
    ]


def test_checker_reports_an_entity_reached_through_another_domains_connection(
    deployed_settings: set[str],
) -> None:
    app = func.FunctionApp()

    @app.service_bus_topic_trigger(
        arg_name="message",
        topic_name="fraud-alerts",
        subscription_name="orders",
        connection="ORDERS_SERVICEBUS",
    )
    def on_fraud_alert(message: func.ServiceBusMessage) -> None:
        """Sample only."""

    problems = binding_problems(bindings_of(app), declared_entities(), deployed_settings)

    assert problems == [
        "on_fraud_alert (serviceBusTrigger): 'fraud-alerts' lives in the fraud namespace, "
        "but ORDERS_SERVICEBUS points at the orders one"
    ]


def test_checker_reports_an_event_grid_trigger_no_subscription_delivers_to(
    deployed_settings: set[str],
) -> None:
    app = func.FunctionApp()

    @app.event_grid_trigger(arg_name="event")
    def on_unsubscribed_event(event: func.EventGridEvent) -> None:
        """Sample only."""

    problems = binding_problems(bindings_of(app), declared_entities(), deployed_settings)

    assert problems == [
        "on_unsubscribed_event (eventGridTrigger): no subscription in eventgrid.json delivers"
        " to this function"
    ]


def test_every_service_bus_trigger_states_how_its_messages_are_settled() -> None:
    """SDK-type triggers settle themselves (autoCompleteMessages off, a message-actions
    parameter); classic ones say autoCompleteMessages on, since host.json's default is off."""
    from devstack.host import sdktype

    host_json = json.loads((templates.REPO / "host.json").read_text())
    assert host_json["extensions"]["serviceBus"]["autoCompleteMessages"] is False
    app = load_app(Path(__file__).resolve().parents[2])
    seen = {}
    for function in app.get_functions():
        trigger = json.loads(json.dumps(function.get_trigger().get_dict_repr(), default=str))
        if trigger["type"] != "serviceBusTrigger":
            continue
        hints = sdktype.annotations_of(function.get_user_function())
        sdk_type = sdktype.is_sdk_type(hints.get(trigger["name"]))
        settles_itself = any(sdktype.is_settlement_client(hint) for hint in hints.values())
        seen[function.get_function_name()] = (
            trigger.get("autoCompleteMessages"), sdk_type, settles_itself)
    explicit = {name: how for name, how in seen.items() if how != (True, False, False)}
    assert explicit == {"orders_saga": (False, True, True),
                        "orders_fraud_alert": (False, True, True)}
