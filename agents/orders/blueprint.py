"""The orders agent's functions: triggers translate Azure messages into handler calls.

Nothing here decides anything about orders; it parses, calls one handler, and maps the
outcome (or the error) onto an HTTP response or a Service Bus settlement. `blueprint(compose)`
registers them, each a one-line trigger over a plain function that takes the agent; the agent
is what `compose` returns, called on the first invocation (never at import) and kept.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import azure.functions as func

# The SDK-type binding's types must resolve when the worker indexes the app (it reads the
# annotations), so this import (azure-servicebus, uamqp, grpc) cannot be deferred.
import azurefunctions.extensions.bindings.servicebus as servicebus

from agents.backbone.lazy import Lazy
from agents.backbone.wire import parse_servicebus
from agents.orders import entities

if TYPE_CHECKING:  # the handlers, the saga engine and the unit of work load on first use
    from agents.backbone.processing import MessageProcessor, Outcome
    from agents.backbone.saga import LogEntry, SagaView
    from agents.orders.handlers import OrdersAgent

log = logging.getLogger(__name__)

SWEEP_SCHEDULE = "*/30 * * * * *"
RETENTION_SCHEDULE = "0 15 3 * * *"
SWEEP_AFTER = timedelta(seconds=30)
# Longer than any redelivery window (lock 1 min x 10 deliveries, TTL 1 h), so inbox markers
# still recognise a late duplicate.
RETENTION = timedelta(days=2)


def json_response(body: Any, status: int, headers: dict[str, str] | None = None
                  ) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body), status_code=status, headers=headers,
                             mimetype="application/json")


def problem(status: int, detail: str, headers: dict[str, str] | None = None
            ) -> func.HttpResponse:
    return json_response({"status": status, "detail": detail}, status, headers)


def order_view(view: SagaView) -> dict[str, Any]:
    """What GET /api/orders/{id} shows: the saga's state and its step timeline, each entry
    the log's structured fields plus a `detail` sentence formatted from them."""
    from agents.backbone.saga import IN_FLIGHT, LogEvent

    in_flight = [name for name, step in view.steps.items() if step["status"] in IN_FLIGHT]

    def detail(entry: LogEntry) -> str:
        attempt = "" if entry.attempt is None else f"attempt {entry.attempt}"
        reason = entry.reason or ""
        if entry.event is LogEvent.IN_DOUBT:
            return f"{attempt} missed its deadline: the same command goes again"
        if entry.event in (LogEvent.LATE_SUCCESS, LogEvent.LATE_FAILURE):
            answer = f"failed ({reason})" if reason else "succeeded"
            return f"{attempt} {answer} after the saga stopped waiting: recorded only"
        if entry.event is LogEvent.GAVE_UP:
            return f"after {entry.attempt} attempts: {reason}"
        if entry.event is LogEvent.ABORT_REFUSED:
            return f"{reason}: past the point of no return, the order goes ahead"
        return ": ".join(part for part in (attempt, reason) if part)

    timeline = [{"step": entry.step, "phase": entry.phase.value, "status": entry.event.value,
                 "attempt": entry.attempt, "reason": entry.reason,
                 "at": entry.at.isoformat() if entry.at else None, "detail": detail(entry)}
                for entry in view.log]
    return {
        "orderId": view.saga_id, "status": view.status.value,
        "step": in_flight[0] if in_flight else None,
        "amountCents": view.data["amountCents"], "failure": view.failure,
        "timeline": timeline,
    }


def place_order(req: func.HttpRequest, agent: OrdersAgent) -> func.HttpResponse:
    """Rate-limited per caller: a refusal is a 429 with `Retry-After`; every answer carries
    the `RateLimit` / `RateLimit-Policy` headers."""
    if agent.limiter is None:
        return _place_order(req, agent)
    admission = agent.limiter.admit_request(req.headers, req.params)
    if not admission.allowed:
        return problem(429, f"rate limit {admission.policy.name}: retry after "
                        f"{admission.retry_after_seconds} s", admission.headers())
    response = _place_order(req, agent)
    response.headers.update(admission.headers())
    return response


def _place_order(req: func.HttpRequest, agent: OrdersAgent) -> func.HttpResponse:
    from agents.orders import handlers
    from agents.orders.edge import IDEMPOTENCY_HEADER, BadRequest, place_order_request

    try:
        order = place_order_request(req.headers.get(IDEMPOTENCY_HEADER), req.get_body())
    except BadRequest as error:
        return problem(400, str(error))
    placement = handlers.place_order(order, agent)
    if placement.conflict:
        return problem(409, f"{IDEMPOTENCY_HEADER} was already used with a different body")
    view = handlers.get_order(order.order_id, agent)
    assert view is not None, "the order was just found or created"
    return json_response(order_view(view), 201 if placement.created else 200,
                 {"Location": f"/api/orders/{order.order_id}"})


def get_order(req: func.HttpRequest, agent: OrdersAgent) -> func.HttpResponse:
    from agents.orders import handlers

    view = handlers.get_order(req.route_params["order_id"], agent)
    if view is None:
        return problem(404, "no such order")
    return json_response(order_view(view), 200)


def on_saga_message(message: servicebus.ServiceBusReceivedMessage,
                    actions: servicebus.ServiceBusMessageActions, agent: OrdersAgent) -> None:
    """A reply, a step deadline or a fraud alert for an order's saga, settled explicitly:
    poison dead-lettered at once with our reason, success completed after dispatch, a
    transient failure abandoned (SDK-type binding, on Azure as on devstack)."""
    from agents.backbone.saga import ALERT
    from agents.backbone.settlement import Settlement, settle
    from agents.orders import handlers

    def work() -> Outcome[Any] | None:
        event = parse_servicebus(message.body, message.application_properties,
                                 registry=agent.schemas)
        if event.type == ALERT:
            log.error("order saga alert: %s", event.data)
            return None
        return handlers.handle_saga_event(event, agent)

    if settle(actions, message, work) is Settlement.DEAD_LETTERED:
        log.error("dead-lettered message %s", message.message_id)


def sweep_outboxes(processors: list[MessageProcessor]) -> None:
    for processor in processors:
        swept = processor.relay.sweep(older_than=SWEEP_AFTER)
        if swept:
            log.warning("sweeper published %d stale outbox rows from %s", len(swept),
                        processor.store.name)


def purge_old_rows(processors: list[MessageProcessor]) -> None:
    for processor in processors:
        report = processor.relay.purge(older_than=RETENTION)
        log.info("retention on %s: %s", processor.store.name, report)


def blueprint(compose: Callable[[], OrdersAgent]) -> func.Blueprint:
    """The orders functions over one agent, `compose()`d on the first invocation."""
    agent = Lazy(compose)
    bp = func.Blueprint()  # type: ignore[no-untyped-call]

    @bp.function_name("orders_place")
    @bp.route(route="orders", methods=[func.HttpMethod.POST])
    def orders_place(req: func.HttpRequest) -> func.HttpResponse:
        return place_order(req, agent.get())

    @bp.function_name("orders_get")
    @bp.route(route="orders/{order_id}", methods=[func.HttpMethod.GET])
    def orders_get(req: func.HttpRequest) -> func.HttpResponse:
        return get_order(req, agent.get())

    @bp.function_name("orders_saga")
    @bp.service_bus_queue_trigger(arg_name="message", queue_name=entities.SAGA_QUEUE,
                                  connection=entities.CONNECTION, auto_complete_messages=False)
    def orders_saga(message: servicebus.ServiceBusReceivedMessage,
                    actions: servicebus.ServiceBusMessageActions) -> None:
        on_saga_message(message, actions, agent.get())

    @bp.function_name("orders_fraud_alert")
    @bp.service_bus_topic_trigger(arg_name="message", topic_name=entities.FRAUD_ALERTS_TOPIC,
                                  subscription_name=entities.FRAUD_ALERTS_SUBSCRIPTION,
                                  connection=entities.FRAUD_CONNECTION,
                                  auto_complete_messages=False)
    def orders_fraud_alert(message: servicebus.ServiceBusReceivedMessage,
                           actions: servicebus.ServiceBusMessageActions) -> None:
        on_saga_message(message, actions, agent.get())

    @bp.function_name("orders_outbox_sweeper")
    @bp.timer_trigger(arg_name="timer", schedule=SWEEP_SCHEDULE)
    def orders_outbox_sweeper(timer: func.TimerRequest) -> None:
        sweep_outboxes(agent.get().processors)

    @bp.function_name("orders_retention")
    @bp.timer_trigger(arg_name="timer", schedule=RETENTION_SCHEDULE)
    def orders_retention(timer: func.TimerRequest) -> None:
        purge_old_rows(agent.get().processors)

    return bp
