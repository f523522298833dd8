"""The CloudEvents envelope: construction, propagation and the structured JSON form."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from agents.backbone import Envelope, InvalidEvent
from agents.backbone.envelope import child_traceparent, parse_time


def test_a_new_event_is_its_own_correlation_and_starts_a_trace():
    event = Envelope.new("orders.order.placed", {"orderId": "o1"}, source="/agents/orders",
                         subject="o1")
    assert event.correlationid == event.id
    assert event.causationid is None
    assert event.partitionkey == "o1"
    assert event.traceparent is not None and event.traceparent.startswith("00-")
    assert event.specversion == "1.0" and event.datacontenttype == "application/json"


def test_a_followed_event_carries_causation_correlation_and_the_same_trace():
    placed = Envelope.new("orders.order.placed", {}, source="/agents/orders", subject="o1")
    reserve = placed.follow("stock.reserve", {"sku": "a"}, source="/agents/orders")
    shipped = reserve.follow("orders.shipped", {}, source="/agents/shipping", subject="o1-s")
    assert reserve.causationid == placed.id and shipped.causationid == reserve.id
    assert placed.correlationid == reserve.correlationid == shipped.correlationid == placed.id
    trace = placed.traceparent.split("-")[1]
    assert reserve.traceparent.split("-")[1] == shipped.traceparent.split("-")[1] == trace
    assert reserve.traceparent.split("-")[2] != placed.traceparent.split("-")[2]
    assert (reserve.subject, reserve.partitionkey) == ("o1", "o1")
    assert (shipped.subject, shipped.partitionkey) == ("o1-s", "o1")


def test_an_invalid_parent_traceparent_starts_a_new_trace():
    assert child_traceparent("garbage").count("-") == 3
    assert child_traceparent(None) != child_traceparent(None)


def test_structured_json_round_trips():
    event = Envelope.new("t", {"n": 1, "text": "€"}, source="/s", subject="k")
    again = Envelope.from_dict(json.loads(event.to_json()))
    assert again == event


def test_time_is_rfc3339_utc_with_z():
    event = Envelope.new("t", {}, source="/s", time=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert event.to_dict()["time"] == "2026-01-02T03:04:05Z"


def test_missing_extensions_are_filled_from_id_and_subject():
    event = Envelope.from_dict({"id": "e1", "source": "/s", "type": "t", "subject": "k",
                                "specversion": "1.0", "data": {}})
    assert (event.correlationid, event.partitionkey, event.causationid) == ("e1", "k", None)


@pytest.mark.parametrize("value", ["yesterday", "2026-01-02T03:04:05"])
def test_a_time_that_is_not_rfc3339_with_offset_is_invalid(value):
    with pytest.raises(InvalidEvent, match="time"):
        parse_time(value)


def test_data_that_is_not_an_object_is_invalid():
    with pytest.raises(InvalidEvent) as raised:
        Envelope.from_dict({"id": "e1", "source": "/s", "type": "t", "data": [1, 2]})
    assert raised.value.reason == "InvalidData"
