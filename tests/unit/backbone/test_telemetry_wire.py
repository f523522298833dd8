"""The trace context on the wire: the consumer span's parent is the span that wrote the row."""

from __future__ import annotations

from datetime import UTC, datetime

from opentelemetry import trace

from agents.backbone import Envelope, telemetry
from agents.backbone.outbox import OutboxRow
from agents.backbone.publishers import to_event_data, to_servicebus_message
from agents.backbone.wire import to_cloudevent
from tests.telemetry_capture import finished_spans, installed


def incoming() -> Envelope:
    return Envelope.new("tests.thing.happened", {}, source="/tests", subject="s-1")


def row_written_while_handling(event: Envelope) -> tuple[OutboxRow, trace.Span]:
    with telemetry.handling("tests-fn", event) as span:
        outgoing = event.follow("tests.thing.followed", {}, source="/tests")
        row = OutboxRow.new("s-1", outgoing, destination="d", scheduled_at=None,
                            created_at=datetime.now(UTC))
    return row, span


def test_a_row_written_in_a_consumer_span_carries_that_span_as_parent() -> None:
    installed()
    event = incoming()
    row, span = row_written_while_handling(event)
    context = span.get_span_context()
    assert row.envelope.traceparent == \
        f"00-{context.trace_id:032x}-{context.span_id:016x}-01"
    assert telemetry.trace_id(event.traceparent) == f"{context.trace_id:032x}"


def test_the_consumer_span_continues_the_incoming_traceparent() -> None:
    installed()[0].clear()
    event = incoming()
    row_written_while_handling(event)
    [span] = finished_spans()
    assert span.parent is not None and span.parent.is_remote
    assert f"{span.parent.span_id:016x}" == (event.traceparent or "").split("-")[2]


def test_service_bus_event_hubs_and_event_grid_carry_the_rows_trace_context() -> None:
    installed()
    row, _ = row_written_while_handling(incoming())
    traceparent = row.envelope.traceparent
    message = to_servicebus_message(row)
    hub_event = to_event_data(row)
    assert message.application_properties is not None
    assert message.application_properties[telemetry.DIAGNOSTIC_ID] == traceparent
    assert message.application_properties[telemetry.TRACEPARENT] == traceparent
    assert hub_event.properties[telemetry.DIAGNOSTIC_ID] == traceparent
    assert hub_event.properties[telemetry.TRACEPARENT] == traceparent
    assert to_cloudevent(row.envelope).extensions["traceparent"] == traceparent


def test_without_a_recording_span_the_envelope_keeps_its_own_trace_context() -> None:
    event = incoming()
    row = OutboxRow.new("s-1", event, destination="d", scheduled_at=None,
                        created_at=datetime.now(UTC))
    assert row.envelope.traceparent == event.traceparent
