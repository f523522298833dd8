"""The reliability kit: envelope, schemas, Table unit of work, outbox, publishers, sagas.

Imports no `azure.functions`: triggers live in each agent's Blueprint and call in here.

Usage sketch (an agent's trigger and handler)::

    from agents.backbone import (
        Envelope, MessageProcessor, OutboxRelay, RequestCounter, SchemaRegistry,
        ServiceBusPublisher, UnitOfWork, dead_letter, parse_servicebus, settings, state_table,
    )

    # built by the agent's bootstrap() on first use, never at import
    schemas = SchemaRegistry({"orders.order.placed": {"type": "object", "required": ["orderId"]}})

    counter = RequestCounter()
    tables = settings.table_service("STATE_STORAGE", raw_request_hook=counter.hook)
    table = state_table(tables, "orders")
    publisher = ServiceBusPublisher(settings.servicebus_client("ORDERS_SERVICEBUS"))
    processor = MessageProcessor(table, OutboxRelay(table, publisher), registry=schemas,
                                 counter=counter)

    def place_order(event: Envelope, uow: UnitOfWork) -> None:   # a plain handler
        order = uow.load() or {"status": "new"}                   # remembers the ETag
        order["status"] = "placed"
        uow.save(order)                                           # If-Match on commit
        uow.emit(event.follow("orders.stock.reserve", {...}, source="/agents/orders"),
                 destination="orders-commands")                   # outbox row

    # in the Service Bus trigger (message actions or an SDK receiver):
    try:
        event = parse_servicebus(msg.get_body(), msg.application_properties, registry=schemas)
        outcome = processor.handle(event, place_order)   # commit, publish (marked later)
    except PoisonMessage as error:                       # InvalidEvent, TransactionTooLarge
        dead_letter(actions, msg, error.reason, error.description)
        return
    # return normally -> the message completes; any other exception -> redelivery.
    # outcome.dead_letter set (saga compensation exhausted) -> dead-letter instead.

Sagas: define `SagaDefinition(name, source, reply_to, alert_destination, steps=(SagaStep(...),))`,
each step with its `kind=StepKind.COMPENSABLE | PIVOT | RETRIABLE` (agents/backbone/README.md);
`engine = SagaEngine(definition, registry=schemas)` (adds the saga's types); start with
`processor.run(saga_id, lambda uow: engine.start(uow, data, cause=event), inbox_id=event.id)`;
replies and timeouts arriving on `reply_to` go to `processor.handle(event, engine.handle)`.
Participants answer with `reply_for(command, succeeded=..., source=...)` sent to
`reply_destination(command)`. A timer trigger calls `relay.sweep()` and `relay.purge(...)`.

Event Hubs poison: `park(publisher, "fraud-poison-events", parked_event(...))` before the
batch is checkpointed (Event Hubs has no dead-letter queue).

Handlers must only stage effects on the unit of work (`save`, `emit`, `append`): a handler
runs again after a 412 and also for a duplicate delivery (whose commit is then rejected).
"""

import importlib
from typing import TYPE_CHECKING, Any

# Names load from their module on first use, so importing one module of the kit (a
# Blueprint at cold start) does not load them all, nor the SDKs behind them.
if TYPE_CHECKING:
    from agents.backbone import settings
    from agents.backbone.envelope import Envelope
    from agents.backbone.errors import (
        BackboneError,
        ConcurrencyConflict,
        ConfigurationError,
        Disposition,
        InvalidEvent,
        PoisonMessage,
        PublishFailed,
        StorageError,
        StorageUnavailable,
        TransactionTooLarge,
        TransientError,
        classify,
    )
    from agents.backbone.memory import MemoryStore
    from agents.backbone.outbox import OutboxRelay, OutboxRow, PurgeReport
    from agents.backbone.parking import park, parked_event
    from agents.backbone.partitions import HotKeyDetector, PartitionKeys
    from agents.backbone.processing import MessageProcessor, Outcome
    from agents.backbone.publishers import (
        EventGridPublisher,
        EventHubsPublisher,
        Publisher,
        RoutingPublisher,
        ServiceBusPublisher,
    )
    from agents.backbone.saga import (
        SagaDefinition,
        SagaEngine,
        SagaStatus,
        SagaStep,
        SagaView,
        StepKind,
        StepStatus,
        reply_destination,
        reply_for,
    )
    from agents.backbone.schemas import SchemaRegistry
    from agents.backbone.settlement import Settlement, dead_letter, settle
    from agents.backbone.store import Store
    from agents.backbone.tables import RequestCounter, TableStore, state_table
    from agents.backbone.unit_of_work import Committed, UnitOfWork, run_unit_of_work
    from agents.backbone.wire import (
        parse_eventgrid,
        parse_eventhub,
        parse_servicebus,
        to_cloudevent,
    )

_HOMES: dict[str, str] = {name: module for module, names in (
    ("envelope", "Envelope"),
    ("errors", "BackboneError ConcurrencyConflict ConfigurationError Disposition InvalidEvent"
               " PoisonMessage PublishFailed StorageError StorageUnavailable TransactionTooLarge"
               " TransientError classify"),
    ("memory", "MemoryStore"),
    ("outbox", "OutboxRelay OutboxRow PurgeReport"),
    ("parking", "park parked_event"),
    ("partitions", "HotKeyDetector PartitionKeys"),
    ("processing", "MessageProcessor Outcome"),
    ("publishers", "EventGridPublisher EventHubsPublisher Publisher RoutingPublisher"
                   " ServiceBusPublisher"),
    ("saga", "SagaDefinition SagaEngine SagaStatus SagaStep SagaView StepKind StepStatus"
             " reply_destination reply_for"),
    ("schemas", "SchemaRegistry"),
    ("settlement", "Settlement dead_letter settle"),
    ("store", "Store"),
    ("tables", "RequestCounter TableStore state_table"),
    ("unit_of_work", "Committed UnitOfWork run_unit_of_work"),
    ("wire", "parse_eventgrid parse_eventhub parse_servicebus to_cloudevent"),
) for name in names.split()}

__all__ = [
    "BackboneError",
    "Committed",
    "ConcurrencyConflict",
    "ConfigurationError",
    "Disposition",
    "Envelope",
    "EventGridPublisher",
    "EventHubsPublisher",
    "HotKeyDetector",
    "InvalidEvent",
    "MemoryStore",
    "MessageProcessor",
    "OutboxRelay",
    "OutboxRow",
    "Outcome",
    "PartitionKeys",
    "PoisonMessage",
    "PublishFailed",
    "Publisher",
    "PurgeReport",
    "RequestCounter",
    "RoutingPublisher",
    "SagaDefinition",
    "SagaEngine",
    "SagaStatus",
    "SagaStep",
    "SagaView",
    "SchemaRegistry",
    "ServiceBusPublisher",
    "Settlement",
    "StepKind",
    "StepStatus",
    "StorageError",
    "StorageUnavailable",
    "Store",
    "TableStore",
    "TransactionTooLarge",
    "TransientError",
    "UnitOfWork",
    "classify",
    "dead_letter",
    "park",
    "parked_event",
    "parse_eventgrid",
    "parse_eventhub",
    "parse_servicebus",
    "reply_destination",
    "reply_for",
    "run_unit_of_work",
    "settings",
    "settle",
    "state_table",
    "to_cloudevent",
]


def __getattr__(name: str) -> Any:
    if name == "settings":
        return importlib.import_module("agents.backbone.settings")
    if name not in _HOMES:
        raise AttributeError(f"module 'agents.backbone' has no attribute {name!r}")
    return getattr(importlib.import_module(f"agents.backbone.{_HOMES[name]}"), name)
