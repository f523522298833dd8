"""`deadletters list` / `show` name the trace of the work that sent a dead letter."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from agents.backbone import Envelope
from agents.backbone.outbox import OutboxRow
from agents.backbone.publishers import to_servicebus_message
from tests.integration.ops.bus import dead_letter, send

QUEUE = "orders-saga"


def test_list_and_show_give_the_trace_id_of_a_dead_letter(bus, ops):
    event = Envelope.new("orders.order.placed", {"orderId": "o-1"}, source="/tests",
                         subject="o-1")
    row = OutboxRow.new("o-1", event, destination=QUEUE, scheduled_at=None,
                        created_at=datetime.now(UTC))
    send(bus, QUEUE, to_servicebus_message(row))
    [(sequence, _)] = dead_letter(bus, QUEUE, 1)
    expected = event.traceparent.split("-")[1]

    listed = ops("deadletters", "list", "--json")
    shown = ops("deadletters", "show", QUEUE, str(sequence))

    assert listed.exit_code == 0, listed.output
    assert [letter["traceId"] for letter in json.loads(listed.output)] == [expected]
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["traceId"] == expected
