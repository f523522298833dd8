"""One order's saga, through the registered functions, is one trace with causal parent links;
the outcome counters count what the functions did."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from agents.backbone import telemetry
from agents.orders import entities
from tests.integration.orders.stack import OrdersStack, order_body
from tests.telemetry_capture import finished_spans, installed, metric_value


@pytest.fixture
def spans() -> Iterator[None]:
    exporter, _ = installed()
    exporter.clear()
    yield


def _attribute(span: ReadableSpan, name: str) -> object:
    return (span.attributes or {}).get(name)


def test_one_orders_saga_across_functions_is_one_trace(stack: OrdersStack,
                                                       spans: None) -> None:
    order_id = stack.place(order_body())["orderId"]
    stack.run()
    assert stack.order(order_id)["status"] == "completed"
    recorded = finished_spans()
    consumers = [span for span in recorded if span.kind is SpanKind.CONSUMER]
    functions = {_attribute(span, "backbone.function") for span in consumers}
    assert len(functions) >= 4, functions  # the saga and the three services at least
    trace_ids = {span.context.trace_id for span in recorded}
    assert len(trace_ids) == 1
    (root,) = [span for span in recorded if span.parent is None]
    assert root.kind is SpanKind.INTERNAL  # the HTTP edge's unit of work


def test_each_consumer_span_is_the_child_of_the_span_that_emitted_its_event(
        stack: OrdersStack, spans: None) -> None:
    stack.place(order_body())
    stack.run()
    recorded = finished_spans()
    by_span_id = {span.context.span_id: span for span in recorded}
    consumers = [span for span in recorded if span.kind is SpanKind.CONSUMER]
    assert consumers
    for span in consumers:
        assert span.parent is not None and span.parent.span_id in by_span_id, span.name
        parent = by_span_id[span.parent.span_id]
        cause = _attribute(span, "backbone.causation_id")
        if parent.kind is SpanKind.CONSUMER:  # the edge's own unit of work emits and starts
            assert _attribute(parent, "cloudevents.event_id") == cause, span.name


def test_the_wire_carries_diagnostic_id_and_traceparent_of_the_emitting_span(
        stack: OrdersStack, spans: None) -> None:
    stack.place(order_body())
    [command] = stack.deliveries.pending(entities.INVENTORY_QUEUE)
    properties = command.application_properties
    assert properties[telemetry.DIAGNOSTIC_ID] == properties[telemetry.TRACEPARENT]
    (root,) = finished_spans()
    assert telemetry.trace_id(properties[telemetry.TRACEPARENT]) == \
        format(root.context.trace_id, "032x")
    assert properties[telemetry.TRACEPARENT].split("-")[2] == format(root.context.span_id, "016x")


def test_handled_and_duplicate_messages_are_counted_per_function(
        stack: OrdersStack, spans: None) -> None:
    function = {"backbone.function": stack.agent.sagas.name}
    handled = metric_value(telemetry.HANDLED, function)
    stack.place(order_body())
    stack.run()
    assert metric_value(telemetry.HANDLED, function) > handled
