"""How envelopes travel on Service Bus, Event Hubs and Event Grid, and are read back."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest

from agents.backbone import (
    Envelope,
    InvalidEvent,
    OutboxRow,
    SchemaRegistry,
    parse_eventgrid,
    parse_eventhub,
    parse_servicebus,
    to_cloudevent,
)
from agents.backbone.publishers import to_event_data, to_servicebus_message
from agents.backbone.wire import application_properties

TICKET = {"type": "object", "required": ["title"], "properties": {"title": {"type": "string"}}}


@pytest.fixture
def schemas() -> SchemaRegistry:
    chosen = SchemaRegistry()
    chosen.register("helpdesk.ticket.created", TICKET)
    return chosen


@pytest.fixture
def event() -> Envelope:
    root = Envelope.new("helpdesk.ticket.created", {"title": "x"}, source="/helpdesk",
                        subject="t1")
    return root.follow("helpdesk.ticket.created", {"title": "printer on fire"},
                       source="/agents/triage")


def row(event: Envelope, scheduled_at: datetime | None = None) -> OutboxRow:
    return OutboxRow.new("t1", event, destination="triage-tickets", scheduled_at=scheduled_at,
                         created_at=datetime.now(UTC))


def test_a_service_bus_message_carries_the_event_id_properties_and_schedule(event):
    when = datetime.now(UTC) + timedelta(minutes=5)
    message = to_servicebus_message(row(event, when))
    assert message.message_id == event.id
    assert message.scheduled_enqueue_time_utc == when
    assert message.correlation_id == event.correlationid
    assert message.subject == event.type
    assert message.content_type.startswith("application/cloudevents+json")
    assert message.application_properties["cloudEvents_causationid"] == event.causationid
    assert message.application_properties["cloudEvents_traceparent"] == event.traceparent


def test_a_service_bus_message_body_parses_back_to_the_same_event(event, schemas):
    message = to_servicebus_message(row(event))
    assert parse_servicebus(b"".join(message.body), message.application_properties,
                            registry=schemas) == event


def test_binary_mode_reads_attributes_from_application_properties_with_bytes_keys(
    event, schemas
):
    received = {k.encode(): v.encode() for k, v in application_properties(event).items()}
    parsed = parse_servicebus(json.dumps(event.data).encode(), received, registry=schemas)
    assert parsed == event


def test_an_event_hubs_event_parses_back_to_the_same_event(event, schemas):
    data = to_event_data(row(event))
    assert data.message_id == event.id
    assert parse_eventhub(data.body_as_str(), data.properties, registry=schemas) == event


def test_an_event_grid_delivery_of_one_or_many_cloudevents_parses(event, schemas):
    one = event.to_dict()
    assert parse_eventgrid(json.dumps(one), registry=schemas) == [event]
    assert parse_eventgrid([one, one], registry=schemas) == [event, event]


def test_event_grid_data_base64_is_decoded(event, schemas):
    encoded = {k: v for k, v in event.to_dict().items() if k != "data"}
    encoded["data_base64"] = base64.b64encode(json.dumps(event.data).encode()).decode()
    assert parse_eventgrid(encoded, registry=schemas) == [event]


def test_one_invalid_event_in_an_event_grid_batch_invalidates_the_delivery(event, schemas):
    broken = {**event.to_dict(), "data": {"title": 1}}
    with pytest.raises(InvalidEvent) as raised:
        parse_eventgrid([event.to_dict(), broken], registry=schemas)
    assert raised.value.reason == "SchemaViolation"


def test_the_azure_core_cloudevent_keeps_the_extensions(event):
    cloud = to_cloudevent(event)
    assert (cloud.id, cloud.type, cloud.subject, cloud.data) == (
        event.id, event.type, event.subject, event.data)
    assert cloud.extensions == {"partitionkey": event.partitionkey,
                                "correlationid": event.correlationid,
                                "causationid": event.causationid,
                                "traceparent": event.traceparent}


@pytest.mark.parametrize(("body", "reason"), [
    (b"\x80", "InvalidEncoding"),
    (b"[]", "NotACloudEvent"),
    (b'{"title": "no attributes"}', "NotACloudEvent"),
])
def test_bodies_that_are_not_cloudevents_are_invalid(body, reason, schemas):
    with pytest.raises(InvalidEvent) as raised:
        parse_servicebus(body, {}, registry=schemas)
    assert raised.value.reason == reason


def test_a_session_enabled_destination_gets_the_partition_key_as_session_id(event):
    assert to_servicebus_message(row(event), session=True).session_id == event.partitionkey
    assert to_servicebus_message(row(event)).session_id is None
