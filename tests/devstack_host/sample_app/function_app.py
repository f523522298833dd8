"""A small v2 function app that exercises every trigger kind the devstack host runs."""

import asyncio
import json
import os
import time
from pathlib import Path

import azure.functions as func
import azurefunctions.extensions.bindings.servicebus as servicebus

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

# Failures still to inject per retry-policy function; the tests read the host's records.
_failures_left = {"flaky_tick": 2, "backoff_tick": 3}
# Invocations of sb_slow_received running right now (all run on the host's event loop).
_in_flight = {"sb_slow_received": 0}


@app.route(route="hello/{name}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def hello(req: func.HttpRequest) -> func.HttpResponse:
    greeting = os.environ["SAMPLE_GREETING"]
    return func.HttpResponse(f"{greeting}, {req.route_params['name']}")


@app.route(route="orders/{order_id:int}", methods=["GET", "POST"])
async def order(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps({"order_id": int(req.route_params["order_id"]), "method": req.method,
                    "body": req.get_body().decode(), "page": req.params.get("page")}),
        mimetype="application/json", status_code=201 if req.method == "POST" else 200)


@app.route(route="admin-only", auth_level=func.AuthLevel.ADMIN)
def admin_only(req: func.HttpRequest) -> str:
    return "for admins"


@app.route(route="broken", auth_level=func.AuthLevel.ANONYMOUS)
def broken(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("this function always fails")


@app.route(route="slow", auth_level=func.AuthLevel.ANONYMOUS)
async def slow(req: func.HttpRequest) -> str:
    await asyncio.sleep(float(req.params.get("seconds", "0")))
    return "done"


@app.route(route="visits/{visitor}", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@app.table_output(arg_name="visit", table_name="visits", connection="AzureWebJobsStorage")
def record_visit(req: func.HttpRequest, visit: func.Out[str]) -> func.HttpResponse:
    visitor = req.route_params["visitor"]
    visit.set(json.dumps({"PartitionKey": visitor, "RowKey": req.get_body().decode()}))
    return func.HttpResponse(status_code=202)


@app.timer_trigger(schedule="%TICK_SCHEDULE%", arg_name="timer", run_on_startup=True)
@app.blob_output(arg_name="seen", path="observations/tick/{rand-guid}.json",
                 connection="AzureWebJobsStorage")
def tick(timer: func.TimerRequest, seen: func.Out[str]) -> None:
    seen.set(json.dumps({"past_due": timer.past_due}))


@app.timer_trigger(schedule="0 0 0 1 1 *", arg_name="timer", run_on_startup=True)
@app.retry(strategy="fixed_delay", max_retry_count="3", delay_interval="00:00:00.05")
def flaky_tick(timer: func.TimerRequest, context: func.Context) -> None:
    if _failures_left["flaky_tick"] > 0:
        _failures_left["flaky_tick"] -= 1
        raise ConnectionError(f"transient failure on retry {context.retry_context.retry_count}")


@app.timer_trigger(schedule="0 0 0 1 1 *", arg_name="timer", run_on_startup=True)
@app.retry(strategy="exponential_backoff", max_retry_count="2",
           minimum_interval="00:00:00.05", maximum_interval="00:00:00.20")
async def backoff_tick(timer: func.TimerRequest) -> None:
    if _failures_left["backoff_tick"] > 0:
        _failures_left["backoff_tick"] -= 1
        raise ConnectionError("still failing")


@app.event_grid_trigger(arg_name="event")
@app.blob_output(arg_name="seen", path="observations/tickets/{rand-guid}.json",
                 connection="AzureWebJobsStorage")
async def triage_ticket_received(event: func.CloudEvent, seen: func.Out[str]) -> None:
    ticket = event.get_json()
    if ticket.get("poison"):
        raise ValueError("ticket cannot be triaged")
    seen.set(json.dumps({"id": event.id, "type": event.type, "subject": event.subject,
                         "ticket": ticket}))


@app.event_grid_trigger(arg_name="event")
@app.blob_output(arg_name="seen", path="observations/grid/{rand-guid}.json",
                 connection="AzureWebJobsStorage")
def grid_event_received(event: func.EventGridEvent, seen: func.Out[str]) -> None:
    seen.set(json.dumps({"id": event.id, "type": event.event_type, "subject": event.subject,
                         "data": event.get_json()}))


@app.service_bus_queue_trigger(arg_name="msg", queue_name="%SAMPLE_QUEUE%",
                               connection="SAMPLE_SERVICEBUS")
@app.service_bus_queue_output(arg_name="reply", queue_name="sample-replies",
                              connection="SAMPLE_SERVICEBUS")
@app.blob_output(arg_name="seen", path="observations/sb/{rand-guid}.json",
                 connection="AzureWebJobsStorage")
def sb_order_received(msg: func.ServiceBusMessage, reply: func.Out[str],
                      seen: func.Out[str]) -> None:
    body = msg.get_body().decode()
    seen.set(json.dumps({
        "body": body, "message_id": msg.message_id, "delivery_count": msg.delivery_count,
        "correlation_id": msg.correlation_id, "content_type": msg.content_type,
        "user_properties": msg.user_properties, "enqueued": msg.enqueued_time_utc is not None,
        "sequence_number": msg.sequence_number}))
    if body == "fail":
        raise RuntimeError("order cannot be handled")
    reply.set(f"handled:{body}")


@app.service_bus_queue_trigger(arg_name="msg", queue_name="sample-sessions",
                               connection="SAMPLE_SERVICEBUS", is_sessions_enabled=True)
@app.blob_output(arg_name="seen", path="observations/sessions/{rand-guid}.json",
                 connection="AzureWebJobsStorage")
async def sb_session_received(msg: func.ServiceBusMessage, seen: func.Out[str]) -> None:
    seen.set(json.dumps({"session_id": msg.session_id, "body": msg.get_body().decode(),
                         "sequence_number": msg.sequence_number}))


@app.service_bus_queue_trigger(arg_name="received", queue_name="sample-manual",
                               connection="SAMPLE_SERVICEBUS", auto_complete_messages=False)
@app.blob_output(arg_name="seen", path="observations/manual/{rand-guid}.json",
                 connection="AzureWebJobsStorage")
def sb_self_settled(received: servicebus.ServiceBusReceivedMessage,
                    actions: servicebus.ServiceBusMessageActions, seen: func.Out[str]) -> None:
    """The SDK-type binding: settles each message itself, as its body says."""
    body = b"".join(received.body).decode()
    error = None
    try:
        if body == "reject":
            actions.deadletter(received, deadletter_reason="Rejected",
                               deadletter_error_description="sample rejects it")
        elif body == "retry" and received.message_id not in _abandoned:
            _abandoned.add(received.message_id)
            actions.abandon(received)
        elif body == "twice":
            actions.complete(received)
            actions.complete(received)
        else:
            actions.complete(received)
    except servicebus.serviceBusMessageActions.SettlementError as settlement_error:
        error = str(settlement_error)
    seen.set(json.dumps({
        "body": body, "message_id": received.message_id,
        "lock_token": str(received.lock_token), "subject": received.subject,
        "correlation_id": received.correlation_id, "content_type": received.content_type,
        "application_properties": {k.decode(): v.decode() if isinstance(v, bytes) else v
                                   for k, v in (received.application_properties or {}).items()},
        "sequence_number": received.sequence_number,
        "enqueued": received.enqueued_time_utc is not None,
        "delivery_count": received.delivery_count, "settlement_error": error}))


# Messages sb_self_settled abandoned once (it completes them on redelivery).
_abandoned: set[str] = set()


@app.service_bus_queue_trigger(arg_name="msg", queue_name="sample-held",
                               connection="SAMPLE_SERVICEBUS")
def sb_held(msg: func.ServiceBusMessage) -> None:
    """Holds the message until the file its body names exists (the test expires the lock
    meanwhile); writes NAME.started first so the test knows it holds it."""
    release = Path(msg.get_body().decode())
    release.with_suffix(".started").touch()
    deadline = time.monotonic() + 30
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.02)


@app.service_bus_queue_trigger(arg_name="msg", queue_name="sample-held-sessions",
                               connection="SAMPLE_SERVICEBUS", is_sessions_enabled=True)
def sb_session_held(msg: func.ServiceBusMessage) -> None:
    """sb_held for a session queue: one invocation per session may be held at a time."""
    sb_held(msg)


# devstack's Event Hubs matches consumer group names case-sensitively (Azure does not), so
# the group is spelled as devstack declares it rather than left to the `$Default` default.
@app.event_hub_message_trigger(arg_name="events", event_hub_name="sample-payments",
                               connection="SAMPLE_EVENTHUBS", cardinality="many",
                               consumer_group="$default")
@app.retry(strategy="fixed_delay", max_retry_count="2", delay_interval="00:00:00.05")
@app.blob_output(arg_name="seen", path="observations/payments/{rand-guid}.json",
                 connection="AzureWebJobsStorage")
def eh_payments_received(events: list[func.EventHubEvent], seen: func.Out[str]) -> None:
    bodies = [e.get_body().decode() for e in events]
    if "poison" in bodies:
        raise ValueError("a payment in this batch cannot be scored")
    seen.set(json.dumps([{"body": e.get_body().decode(), "sequence_number": e.sequence_number,
                          "offset": e.offset, "partition_key": e.partition_key,
                          "enqueued": e.enqueued_time is not None,
                          "partition": (e.metadata or {})["PartitionContext"]["PartitionId"]}
                         for e in events]))


@app.event_hub_message_trigger(arg_name="event", event_hub_name="sample-alerts",
                               connection="SAMPLE_EVENTHUBS", cardinality="one",
                               consumer_group="$default")
@app.event_hub_output(arg_name="forward", event_hub_name="sample-payments",
                      connection="SAMPLE_EVENTHUBS")
async def eh_alert_received(event: func.EventHubEvent, forward: func.Out[str]) -> None:
    forward.set(f"from-alert:{event.get_body().decode()}")


@app.service_bus_topic_trigger(arg_name="msg", topic_name="sample-events",
                               subscription_name="audit", connection="SAMPLE_SERVICEBUS")
@app.blob_output(arg_name="seen", path="observations/audit/{rand-guid}.json",
                 connection="AzureWebJobsStorage")
async def sb_audit_received(msg: func.ServiceBusMessage, seen: func.Out[str]) -> None:
    seen.set(json.dumps({"body": msg.get_body().decode(), "subject": msg.subject}))


@app.service_bus_queue_trigger(arg_name="msg", queue_name="sample-slow",
                               connection="SAMPLE_SERVICEBUS")
@app.blob_output(arg_name="seen", path="observations/slow/{rand-guid}.json",
                 connection="AzureWebJobsStorage")
async def sb_slow_received(msg: func.ServiceBusMessage, seen: func.Out[str]) -> None:
    _in_flight["sb_slow_received"] += 1
    running_with_me = _in_flight["sb_slow_received"]
    try:
        await asyncio.sleep(0.3)
    finally:
        _in_flight["sb_slow_received"] -= 1
    seen.set(json.dumps({"body": msg.get_body().decode(), "in_flight": running_with_me}))


@app.service_bus_queue_trigger(arg_name="msgs", queue_name="sample-batches",
                               connection="SAMPLE_SERVICEBUS", cardinality="many")
@app.blob_output(arg_name="seen", path="observations/batches/{rand-guid}.json",
                 connection="AzureWebJobsStorage")
def sb_batch_received(msgs: list[func.ServiceBusMessage], seen: func.Out[str]) -> None:
    seen.set(json.dumps([m.get_body().decode() for m in msgs]))
