"""The simulated services' functions: the three service queues, the failure-mode route and
their ledgers' outbox timers. `function_app.py` registers `blueprint(compose)` only when
`ORDERS_SIMULATORS_ENABLED` is true; the services are composed on the first invocation.

The queue triggers settle each command themselves, as the saga's do (SDK-type binding):
poison is dead-lettered at once with its reason, a flaky attempt is put back for later.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import azure.functions as func
import azurefunctions.extensions.bindings.servicebus as servicebus

from agents.backbone.lazy import Lazy
from agents.backbone.wire import parse_servicebus
from agents.orders import entities
from agents.orders.blueprint import (
    RETENTION_SCHEDULE,
    SWEEP_SCHEDULE,
    json_response,
    problem,
    purge_old_rows,
    sweep_outboxes,
)
from agents.orders.edge import BadRequest, validated
from agents.orders.model import Service
from agents.orders.simulated import handlers
from agents.orders.simulated.handlers import SimulatedServices
from agents.orders.simulated.modes import Mode, Switch

if TYPE_CHECKING:
    from agents.backbone.processing import Outcome
    from agents.backbone.settlement import ScheduledRetry, Settlement, Settler

log = logging.getLogger(__name__)

MODE_SCHEMA = Path(__file__).with_name("simulator-mode.json")


def set_mode(req: func.HttpRequest, services: SimulatedServices) -> func.HttpResponse:
    try:
        service = Service(req.route_params["service"])
    except ValueError:
        return problem(404, f"no simulated service {req.route_params['service']!r}")
    try:
        body = validated(MODE_SCHEMA, req.get_body())
        switch = Switch(Mode(body["mode"]), float(body.get("slowSeconds", 60.0)))
        scope = str(body.get("scope", "*"))
        services.switchboard.set(service, scope, switch)
    except (BadRequest, ValueError) as error:
        return problem(400, str(error))
    return json_response({"service": service.value, "scope": scope, "mode": switch.mode.value}, 200)


def attempt_of(message: Any, retry: ScheduledRetry | None) -> int:
    """1 for a command as sent, n + 1 for the copy `retry` put back n times."""
    return 1 + (retry.retries(message) if retry is not None else 0)


def on_command(message: servicebus.ServiceBusReceivedMessage, actions: Settler,
               services: SimulatedServices, service: Service) -> Settlement:
    """A command on `service`'s queue, settled explicitly: poison dead-lettered with our
    reason, a flaky attempt (`RetryLater`) put back on the queue for later, a handled
    command completed after dispatch, any other failure abandoned for redelivery.

    The attempt is counted on the message (the copies `ScheduledRetry` made of it): the
    SDK-type message carries no delivery count, and redeliveries do not reset it."""
    from agents.backbone.settlement import Settlement, settle

    retry = services.retries.get(service)

    def work() -> Outcome[None]:
        event = parse_servicebus(message.body, message.application_properties,
                                 registry=services.schemas)
        return handlers.handle_service_command(event, attempt_of(message, retry), services)

    settlement = settle(actions, message, work, retry=retry)
    if settlement is Settlement.DEAD_LETTERED:
        log.error("dead-lettered command %s on %s", message.message_id, service.value)
    return settlement


def blueprint(compose: Callable[[], SimulatedServices]) -> func.Blueprint:
    """The simulated services' functions over `compose()`, called on the first invocation."""
    services = Lazy(compose)
    bp = func.Blueprint()  # type: ignore[no-untyped-call]

    @bp.function_name("orders_simulator_mode")
    @bp.route(route="simulators/{service}/mode", methods=[func.HttpMethod.POST])
    def orders_simulator_mode(req: func.HttpRequest) -> func.HttpResponse:
        return set_mode(req, services.get())

    @bp.function_name("orders_inventory")
    @bp.service_bus_queue_trigger(arg_name="message", queue_name=entities.INVENTORY_QUEUE,
                                  connection=entities.CONNECTION, auto_complete_messages=False)
    def orders_inventory(message: servicebus.ServiceBusReceivedMessage,
                     actions: servicebus.ServiceBusMessageActions) -> None:
        on_command(message, actions, services.get(), Service.INVENTORY)

    @bp.function_name("orders_payments")
    @bp.service_bus_queue_trigger(arg_name="message", queue_name=entities.PAYMENTS_QUEUE,
                                  connection=entities.CONNECTION, auto_complete_messages=False)
    def orders_payments(message: servicebus.ServiceBusReceivedMessage,
                     actions: servicebus.ServiceBusMessageActions) -> None:
        on_command(message, actions, services.get(), Service.PAYMENTS)

    @bp.function_name("orders_shipping")
    @bp.service_bus_queue_trigger(arg_name="message", queue_name=entities.SHIPPING_QUEUE,
                                  connection=entities.CONNECTION, auto_complete_messages=False)
    def orders_shipping(message: servicebus.ServiceBusReceivedMessage,
                     actions: servicebus.ServiceBusMessageActions) -> None:
        on_command(message, actions, services.get(), Service.SHIPPING)

    @bp.function_name("orders_simulators_outbox_sweeper")
    @bp.timer_trigger(arg_name="timer", schedule=SWEEP_SCHEDULE)
    def orders_simulators_outbox_sweeper(timer: func.TimerRequest) -> None:
        sweep_outboxes(services.get().processors)

    @bp.function_name("orders_simulators_retention")
    @bp.timer_trigger(arg_name="timer", schedule=RETENTION_SCHEDULE)
    def orders_simulators_retention(timer: func.TimerRequest) -> None:
        purge_old_rows(services.get().processors)

    return bp
