"""Over devstack's Service Bus and Functions host (the app's registered functions, in process):
one order's saga is one trace, and a broker retry storm multiplies no downstream call."""

from __future__ import annotations

import asyncio

from opentelemetry.trace import SpanKind

from agents.backbone import telemetry
from devstack.azurite import Azurite
from devstack.server import DevStack
from tests.integration.orders import test_on_devstack as on_devstack
from tests.integration.orders.stack import order_body
from tests.integration.orders.test_on_devstack import Api, eventually, movements
from tests.telemetry_capture import finished_spans, installed, metric_value

# The Functions host running function_app.py over devstack and Azurite, and its HTTP client.
orders_host = on_devstack.orders_host
api = on_devstack.api


async def test_one_order_over_service_bus_is_one_trace_with_resolvable_parents(
        api: Api) -> None:
    installed()[0].clear()
    order_id = await api.place(order_body())
    assert (await api.settled(order_id))["status"] == "completed"

    def orphans(spans: list) -> list[str]:
        ids = {span.context.span_id for span in spans}
        return [span.name for span in spans if span.parent and span.parent.span_id not in ids]

    def conversation(span) -> object:
        return (span.attributes or {}).get("messaging.message.conversation_id")

    async def whole_trace() -> list | None:
        # The POST is the one unit of work with no incoming event since the capture was
        # cleared; its trace is the order's. (Hosts of earlier tests may still consume older
        # events, e.g. fraud reading the payment stream: their spans are other traces.)
        spans = finished_spans()
        roots = [span for span in spans if span.parent is None]
        if len(roots) != 1:
            return None
        trace = [span for span in spans if span.context.trace_id == roots[0].context.trace_id]
        functions = {(span.attributes or {}).get("backbone.function")
                     for span in trace if span.kind is SpanKind.CONSUMER}
        # A parent span ends after its publish, so a child on another thread can end first:
        # wait until every parent has ended too.
        return trace if len(functions) >= 4 and not orphans(trace) else None

    trace = await eventually(whole_trace)
    assert [span.kind for span in trace if span.parent is None] == [SpanKind.INTERNAL]
    # Every message of the order's conversation was handled in that one trace.
    talked = {conversation(span) for span in trace} - {None}
    assert talked
    assert {span.context.trace_id for span in finished_spans()
            if conversation(span) in talked} == {trace[0].context.trace_id}


async def test_a_retry_storm_from_the_broker_charges_holds_and_ships_each_order_once(
        api: Api, devstack: DevStack, azurite: Azurite) -> None:
    duplicates = metric_value(telemetry.DUPLICATES, {})
    devstack.faults.deliver_twice(None, times=500)  # every delivery comes back once more
    order_ids = await asyncio.gather(*(api.place(order_body()) for _ in range(8)))
    orders = await asyncio.gather(*(api.settled(order_id) for order_id in order_ids))
    devstack.faults.clear()

    assert [order["status"] for order in orders] == ["completed"] * 8
    storage = azurite.connection_string
    for order_id in order_ids:
        assert movements(storage, "ordersinventory", f"reservation-{order_id}", "hold") == 1
        assert movements(storage, "orderspayments", f"charge-{order_id}", "charge") == 1
        assert movements(storage, "ordersshipping", order_id, "shipment") == 1
    assert metric_value(telemetry.DUPLICATES, {}) - duplicates >= 8
