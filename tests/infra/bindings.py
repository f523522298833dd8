"""Checks a function app's bindings against the entity files and the settings Bicep deploys.

Written by hand because nothing else knows both sides: the Functions SDK only records binding
attributes, and Bicep only sees the entity files.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tests.infra import templates

SERVICE_BUS_TYPES = frozenset({"serviceBusTrigger", "serviceBus"})
EVENT_HUBS_TYPES = frozenset({"eventHubTrigger", "eventHub"})
EVENT_GRID_TRIGGER = "eventGridTrigger"


@dataclass(frozen=True)
class BindingRef:
    """What a binding names: its function, type, entities and connection setting."""

    function: str
    type: str
    queue_name: str | None = None
    topic_name: str | None = None
    subscription_name: str | None = None
    event_hub_name: str | None = None
    consumer_group: str | None = None
    connection: str | None = None


@dataclass(frozen=True)
class DeclaredEntities:
    queues: frozenset[str]
    topics: frozenset[str]
    subscriptions: frozenset[tuple[str, str]]
    event_hubs: frozenset[str]
    consumer_groups: frozenset[tuple[str, str]]
    event_grid_functions: frozenset[str]


def declared_entities() -> DeclaredEntities:
    namespace = templates.service_bus_namespace()
    topics = namespace.get("Topics", [])
    hubs = templates.event_hubs()
    return DeclaredEntities(
        queues=frozenset(queue["Name"] for queue in namespace.get("Queues", [])),
        topics=frozenset(topic["Name"] for topic in topics),
        subscriptions=frozenset(
            (topic["Name"], subscription["Name"])
            for topic in topics
            for subscription in topic.get("Subscriptions", [])
        ),
        event_hubs=frozenset(hub["Name"] for hub in hubs),
        consumer_groups=frozenset(
            (hub["Name"], group["Name"].lower())
            for hub in hubs
            for group in hub.get("ConsumerGroups", [])
        )
        | frozenset((hub["Name"], "$default") for hub in hubs),
        event_grid_functions=frozenset(
            subscription["Destination"]["FunctionName"]
            for topic in templates.event_grid_topics()
            for subscription in topic["Subscriptions"]
        ),
    )


def bindings_of(app: Any) -> list[BindingRef]:
    """The bindings of every function registered on a FunctionApp (app.get_functions())."""
    found = []
    for function in app.get_functions():
        for binding in function.get_bindings():
            found.append(
                BindingRef(
                    function=function.get_function_name(),
                    type=binding.type,
                    queue_name=getattr(binding, "queue_name", None),
                    topic_name=getattr(binding, "topic_name", None),
                    subscription_name=getattr(binding, "subscription_name", None),
                    event_hub_name=getattr(binding, "event_hub_name", None),
                    consumer_group=getattr(binding, "consumer_group", None),
                    connection=getattr(binding, "connection", None),
                )
            )
    return found


def _domain(entity_name: str) -> str:
    return entity_name.split("-", 1)[0]


def _connection_domain(connection: str) -> str:
    return connection.split("_", 1)[0].lower()


def _entity_problems(binding: BindingRef, entities: DeclaredEntities) -> list[str]:
    where = f"{binding.function} ({binding.type})"
    names = [
        n for n in (binding.queue_name, binding.topic_name, binding.event_hub_name) if n is not None
    ]
    if any(name.startswith("%") for name in names):
        return [f"{where}: entity named through an app setting ({names}); name it literally"]
    problems = []
    if binding.type in SERVICE_BUS_TYPES:
        if binding.queue_name is not None and binding.queue_name not in entities.queues:
            problems.append(f"{where}: queue {binding.queue_name!r} is not in servicebus.json")
        if binding.topic_name is not None:
            if binding.topic_name not in entities.topics:
                problems.append(f"{where}: topic {binding.topic_name!r} is not in servicebus.json")
            elif (
                binding.subscription_name is not None
                and (binding.topic_name, binding.subscription_name) not in entities.subscriptions
            ):
                problems.append(
                    f"{where}: subscription {binding.topic_name}/{binding.subscription_name}"
                    " is not in servicebus.json"
                )
        if binding.queue_name is None and binding.topic_name is None:
            problems.append(f"{where}: names no queue or topic")
    if binding.type in EVENT_HUBS_TYPES:
        hub = binding.event_hub_name
        if hub is None or hub not in entities.event_hubs:
            problems.append(f"{where}: event hub {hub!r} is not in eventhubs.json")
        elif (
            binding.consumer_group is not None
            and (hub, binding.consumer_group.lower()) not in entities.consumer_groups
        ):
            problems.append(
                f"{where}: consumer group {hub}/{binding.consumer_group} is not in eventhubs.json"
            )
    if binding.type == EVENT_GRID_TRIGGER and binding.function not in entities.event_grid_functions:
        problems.append(f"{where}: no subscription in eventgrid.json delivers to this function")
    return problems


def _connection_problems(binding: BindingRef, settings: Iterable[str]) -> list[str]:
    where = f"{binding.function} ({binding.type})"
    names = set(settings)
    connection = binding.connection
    messaging = binding.type in SERVICE_BUS_TYPES | EVENT_HUBS_TYPES
    if connection is None:
        return [f"{where}: no connection setting named"] if messaging else []
    if messaging:
        if f"{connection}__fullyQualifiedNamespace" not in names:
            return [f"{where}: Bicep sets no {connection}__fullyQualifiedNamespace"]
        # Federated topology: each domain's entities live in that domain's namespace only.
        entity = binding.queue_name or binding.topic_name or binding.event_hub_name or ""
        if entity and _domain(entity) != _connection_domain(connection):
            return [
                f"{where}: {entity!r} lives in the {_domain(entity)} namespace, "
                f"but {connection} points at the {_connection_domain(connection)} one"
            ]
        return []
    if connection not in names and not any(name.startswith(f"{connection}__") for name in names):
        return [f"{where}: Bicep sets no {connection} or {connection}__* setting"]
    return []


def binding_problems(
    bindings: Iterable[BindingRef], entities: DeclaredEntities, settings: Iterable[str]
) -> list[str]:
    """One line per binding that names an undeclared entity or a connection Bicep doesn't set."""
    setting_names = list(settings)
    problems = []
    for binding in bindings:
        problems += _entity_problems(binding, entities)
        problems += _connection_problems(binding, setting_names)
    return problems
