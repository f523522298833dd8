"""The schema registry: the gate between the wire and an agent."""

from __future__ import annotations

import pytest

from agents.backbone import Envelope, InvalidEvent, SchemaRegistry

PLACED = {"type": "object", "required": ["orderId"],
          "properties": {"orderId": {"type": "string"}}}


@pytest.fixture
def schemas() -> SchemaRegistry:
    chosen = SchemaRegistry()
    chosen.register("orders.order.placed", PLACED)
    return chosen


def event(**overrides):
    base = {"specversion": "1.0", "id": "e1", "source": "/agents/orders",
            "type": "orders.order.placed", "subject": "o1", "data": {"orderId": "o1"}}
    return {**base, **overrides}


def test_a_registry_knows_the_schemas_it_was_built_with_and_no_others():
    assert SchemaRegistry({"orders.order.placed": PLACED}).types() == ["orders.order.placed"]
    assert SchemaRegistry().types() == []


def test_a_valid_event_parses_to_an_envelope(schemas):
    parsed = schemas.parse(event())
    assert isinstance(parsed, Envelope) and parsed.data == {"orderId": "o1"}


@pytest.mark.parametrize(("value", "reason", "where"), [
    ([1], "InvalidEnvelope", "JSON object"),
    (event(specversion="0.3"), "InvalidEnvelope", "specversion"),
    ({k: v for k, v in event().items() if k != "source"}, "InvalidEnvelope", "source"),
    (event(id=""), "InvalidEnvelope", "id"),
    (event(traceparent="00-xyz"), "InvalidEnvelope", "traceparent"),
    (event(type="orders.unknown"), "UnknownEventType", "orders.unknown"),
    (event(data={"orderId": 7}), "SchemaViolation", "orderId"),
    (event(data={}), "SchemaViolation", "orderId"),
])
def test_invalid_input_raises_invalid_event_with_reason_and_place(schemas, value, reason,
                                                                  where):
    with pytest.raises(InvalidEvent, match=where) as raised:
        schemas.parse(value)
    assert raised.value.reason == reason


def test_outgoing_events_are_validated_too(schemas):
    with pytest.raises(InvalidEvent):
        schemas.validate(Envelope.new("orders.order.placed", {"orderId": 1}, source="/s"))


def test_a_broken_schema_is_refused_at_registration(schemas):
    with pytest.raises(ValueError, match="invalid"):
        schemas.register("x", {"type": "no-such-type"})
