"""The simulated services' functions: the three service queues, the failure-mode route and
their ledgers' outbox timers. `function_app.py` registers `blueprint(compose)` only when
`ORDERS_SIMULATORS_ENABLED` is true; the services are composed on the first invocation.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import azure.functions as func

from agents.backbone.lazy import Lazy
from agents.orders import entities
from agents.orders.blueprint import (
    RETENTION_SCHEDULE,
    SWEEP_SCHEDULE,
    consume,
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


def on_command(message: func.ServiceBusMessage, services: SimulatedServices) -> None:
    delivery_count = message.delivery_count or 1
    consume(message, services.schemas, lambda event: handlers.handle_service_command(
        event, delivery_count, services))


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
                                  connection=entities.CONNECTION, auto_complete_messages=True)
    def orders_inventory(message: func.ServiceBusMessage) -> None:
        on_command(message, services.get())

    @bp.function_name("orders_payments")
    @bp.service_bus_queue_trigger(arg_name="message", queue_name=entities.PAYMENTS_QUEUE,
                                  connection=entities.CONNECTION, auto_complete_messages=True)
    def orders_payments(message: func.ServiceBusMessage) -> None:
        on_command(message, services.get())

    @bp.function_name("orders_shipping")
    @bp.service_bus_queue_trigger(arg_name="message", queue_name=entities.SHIPPING_QUEUE,
                                  connection=entities.CONNECTION, auto_complete_messages=True)
    def orders_shipping(message: func.ServiceBusMessage) -> None:
        on_command(message, services.get())

    @bp.function_name("orders_simulators_outbox_sweeper")
    @bp.timer_trigger(arg_name="timer", schedule=SWEEP_SCHEDULE)
    def orders_simulators_outbox_sweeper(timer: func.TimerRequest) -> None:
        sweep_outboxes(services.get().processors)

    @bp.function_name("orders_simulators_retention")
    @bp.timer_trigger(arg_name="timer", schedule=RETENTION_SCHEDULE)
    def orders_simulators_retention(timer: func.TimerRequest) -> None:
        purge_old_rows(services.get().processors)

    return bp
