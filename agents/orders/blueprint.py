"""The orders agent's functions: triggers translate Azure messages into handler calls.

Nothing here decides anything about orders; it parses, calls one handler, and maps the
outcome (or the error) onto an HTTP response or a Service Bus settlement.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import azure.functions as func

from agents.backbone.envelope import Envelope
from agents.backbone.errors import PoisonMessage
from agents.backbone.wire import parse_servicebus
from agents.orders import bootstrap, entities, handlers
from agents.orders.edge import IDEMPOTENCY_HEADER, BadRequest, place_order_request, validated
from agents.orders.simulators import Mode, Service, Switch

log = logging.getLogger(__name__)
bp = func.Blueprint()  # type: ignore[no-untyped-call]

SWEEP_SCHEDULE = "*/30 * * * * *"
RETENTION_SCHEDULE = "0 15 3 * * *"
SWEEP_AFTER = timedelta(seconds=30)
# Longer than any redelivery window (lock 1 min x 5 deliveries, TTL 1 h), so inbox markers
# still recognise a late duplicate.
RETENTION = timedelta(days=2)


def _json(body: Any, status: int, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body), status_code=status, headers=headers,
                             mimetype="application/json")


def _problem(status: int, detail: str) -> func.HttpResponse:
    return _json({"status": status, "detail": detail}, status)


def order_view(state: dict[str, Any]) -> dict[str, Any]:
    """What GET /api/orders/{id} shows: the state and the step timeline."""
    return {
        "orderId": state["orderId"], "status": state["status"], "reason": state["reason"],
        "amountCents": sum(i["quantity"] * i["unit_price_cents"] for i in state["items"]),
        "timeline": state["timeline"],
    }


@bp.function_name("orders_place")
@bp.route(route="orders", methods=[func.HttpMethod.POST])
def place_order(req: func.HttpRequest) -> func.HttpResponse:
    try:
        request = place_order_request(req.headers.get(IDEMPOTENCY_HEADER), req.get_body())
    except BadRequest as error:
        return _problem(400, str(error))
    outcome = handlers.place_order(request, bootstrap.current())
    placement = outcome.result
    assert placement is not None, "placing an order always decides"
    if placement.conflict:
        return _problem(409, f"{IDEMPOTENCY_HEADER} was already used with a different body")
    status = 201 if placement.created else 200
    return _json(order_view(placement.order), status,
                 {"Location": f"/api/orders/{request.order_id}"})


@bp.function_name("orders_get")
@bp.route(route="orders/{order_id}", methods=[func.HttpMethod.GET])
def get_order(req: func.HttpRequest) -> func.HttpResponse:
    state = handlers.get_order(req.route_params["order_id"], bootstrap.current())
    if state is None:
        return _problem(404, "no such order")
    return _json(order_view(state), 200)


@bp.function_name("orders_simulator_mode")
@bp.route(route="simulators/{service}/mode", methods=[func.HttpMethod.POST])
def set_simulator_mode(req: func.HttpRequest) -> func.HttpResponse:
    try:
        service = Service(req.route_params["service"])
    except ValueError:
        return _problem(404, f"no simulated service {req.route_params['service']!r}")
    try:
        body = validated("simulator-mode", req.get_body())
        switch = Switch(Mode(body["mode"]), float(body.get("slowSeconds", 60.0)))
        scope = str(body.get("scope", "*"))
        bootstrap.current().switchboard.set(service, scope, switch)
    except (BadRequest, ValueError) as error:
        return _problem(400, str(error))
    return _json({"service": service.value, "scope": scope, "mode": switch.mode.value}, 200)


def _consume(message: func.ServiceBusMessage, handle: Callable[[Envelope], object]) -> None:
    """Parse and handle; returning lets the host complete the message (after dispatch),
    raising makes it abandon the message for redelivery."""
    try:
        event = parse_servicebus(message.get_body(), message.application_properties)
        handle(event)
    except PoisonMessage as error:
        log.error("poison message %s: %s: %s", message.message_id, error.reason,
                  error.description)
        raise


@bp.function_name("orders_saga")
@bp.service_bus_queue_trigger(arg_name="message", queue_name=entities.SAGA_QUEUE,
                              connection=entities.CONNECTION, auto_complete_messages=True)
def on_saga_message(message: func.ServiceBusMessage) -> None:
    _consume(message, lambda event: handlers.handle_saga_event(event, bootstrap.current()))


@bp.function_name("orders_fraud_alert")
@bp.service_bus_topic_trigger(arg_name="message", topic_name=entities.FRAUD_ALERTS_TOPIC,
                              subscription_name=entities.FRAUD_ALERTS_SUBSCRIPTION,
                              connection=entities.FRAUD_CONNECTION, auto_complete_messages=True)
def on_fraud_alert(message: func.ServiceBusMessage) -> None:
    _consume(message, lambda event: handlers.handle_saga_event(event, bootstrap.current()))


def _service_command(message: func.ServiceBusMessage) -> None:
    delivery_count = message.delivery_count or 1
    _consume(message, lambda event: handlers.handle_service_command(
        event, delivery_count, bootstrap.current()))


@bp.function_name("orders_inventory")
@bp.service_bus_queue_trigger(arg_name="message", queue_name=entities.INVENTORY_QUEUE,
                              connection=entities.CONNECTION, auto_complete_messages=True)
def on_inventory_command(message: func.ServiceBusMessage) -> None:
    _service_command(message)


@bp.function_name("orders_payments")
@bp.service_bus_queue_trigger(arg_name="message", queue_name=entities.PAYMENTS_QUEUE,
                              connection=entities.CONNECTION, auto_complete_messages=True)
def on_payment_command(message: func.ServiceBusMessage) -> None:
    _service_command(message)


@bp.function_name("orders_shipping")
@bp.service_bus_queue_trigger(arg_name="message", queue_name=entities.SHIPPING_QUEUE,
                              connection=entities.CONNECTION, auto_complete_messages=True)
def on_shipping_command(message: func.ServiceBusMessage) -> None:
    _service_command(message)


@bp.function_name("orders_outbox_sweeper")
@bp.timer_trigger(arg_name="timer", schedule=SWEEP_SCHEDULE)
def sweep_outboxes(timer: func.TimerRequest) -> None:
    context = bootstrap.current()
    for processor in (context.sagas, *context.ledgers.values()):
        swept = processor.relay.sweep(older_than=SWEEP_AFTER)
        if swept:
            log.warning("sweeper published %d stale outbox rows from %s", len(swept),
                        processor.table.table_name)


@bp.function_name("orders_retention")
@bp.timer_trigger(arg_name="timer", schedule=RETENTION_SCHEDULE)
def purge_old_rows(timer: func.TimerRequest) -> None:
    context = bootstrap.current()
    for processor in (context.sagas, *context.ledgers.values()):
        report = processor.relay.purge(older_than=RETENTION)
        log.info("retention on %s: %s", processor.table.table_name, report)
