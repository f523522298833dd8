"""`python -m agents.ops deadletters`: list, show and replay Service Bus dead letters."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from azure.servicebus import ServiceBusMessage
from azure.servicebus.exceptions import ServiceBusConnectionError

from agents.ops.cli import SKIPPED, USAGE_ERROR
from agents.ops.config import Catalogue
from agents.ops.servicebus import StopAtFirstFailure, receiver, settle_chosen
from tests.integration.ops.bus import (
    dead_letter,
    dead_letter_one,
    outwait_duplicate_window,
    peek,
    properties,
    receive_all,
    send,
)

QUEUE = "orders-saga"
ENTITIES = Path(__file__).resolve().parents[3] / "infra" / "entities"


def order_message(message_id: str = "order-1") -> ServiceBusMessage:
    return ServiceBusMessage(json.dumps({"orderId": "o-1", "amount": -5}),
                             message_id=message_id, subject="orders.order.placed",
                             content_type="application/json",
                             application_properties={"tenant": "contoso"})


def dead_lettered_orders(bus, *message_ids: str) -> list[tuple[int, datetime]]:
    send(bus, QUEUE, *(order_message(message_id) for message_id in message_ids))
    return dead_letter(bus, QUEUE, len(message_ids))


def dead_lettered_order(bus, message_id: str = "order-1") -> tuple[int, datetime]:
    [letter] = dead_lettered_orders(bus, message_id)
    return letter


def test_list_shows_each_dead_letter_with_its_reason_without_consuming_it(bus, ops):
    sequence, _ = dead_lettered_order(bus)
    result = ops("deadletters", "list", "--json")
    assert result.exit_code == 0, result.output
    [still_there] = peek(bus, QUEUE, dead_letter=True)
    assert json.loads(result.output) == [{
        "entity": QUEUE, "sequenceNumber": sequence, "messageId": "order-1",
        "enqueuedTime": still_there.enqueued_time_utc.isoformat(),
        "deadLetterReason": "InvalidEvent", "deadLetterErrorDescription": "amount is negative",
        "deliveryCount": still_there.delivery_count, "subject": "orders.order.placed",
        "traceId": None}]


def test_list_prints_a_table_an_engineer_can_read(bus, ops):
    dead_lettered_order(bus)
    result = ops("deadletters", "list", "--entity", QUEUE)
    assert result.exit_code == 0, result.output
    assert "Dead letters" in result.output
    assert "InvalidEvent" in result.output and "amount is negative" in result.output
    assert "1 dead letters" in result.output


def test_show_prints_properties_and_the_body_as_json(bus, ops):
    sequence, _ = dead_lettered_order(bus)
    result = ops("deadletters", "show", QUEUE, str(sequence))
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["body"] == {"orderId": "o-1", "amount": -5}
    assert shown["applicationProperties"]["tenant"] == "contoso"
    assert shown["contentType"] == "application/json"
    assert shown["deadLetterReason"] == "InvalidEvent"


def test_replay_sends_it_back_with_its_message_id_and_completes_the_dead_letter(bus, ops):
    sequence, enqueued = dead_lettered_order(bus)
    outwait_duplicate_window(enqueued)
    result = ops("deadletters", "replay", QUEUE, "--seq", str(sequence), "--json")
    assert result.exit_code == 0, result.output
    assert [r["outcome"] for r in json.loads(result.output)] == ["replayed"]
    [again] = receive_all(bus, QUEUE)
    assert again.message_id == "order-1"
    assert json.loads(b"".join(again.body)) == {"orderId": "o-1", "amount": -5}
    assert properties(again) == {
        "tenant": "contoso", "replayedFrom": f"{QUEUE}/$DeadLetterQueue",
        "replayedSequenceNumber": sequence, "replayCount": 1,
        "replayedDeadLetterReason": "InvalidEvent"}
    assert peek(bus, QUEUE, dead_letter=True) == []


def test_replaying_twice_delivers_one_message_and_says_why_the_second_skipped(bus, ops):
    sequence, enqueued = dead_lettered_order(bus)
    outwait_duplicate_window(enqueued)
    first = ops("deadletters", "replay", QUEUE, "--seq", str(sequence), "--json")
    second = ops("deadletters", "replay", QUEUE, "--seq", str(sequence), "--json")
    assert first.exit_code == 0, first.output
    assert second.exit_code == SKIPPED
    [skipped] = json.loads(second.output)
    assert skipped["outcome"] == "skipped" and "not in the dead-letter queue" in skipped["detail"]
    assert [m.message_id for m in receive_all(bus, QUEUE)] == ["order-1"]


def test_a_replay_rerun_after_a_crash_before_complete_delivers_one_message(bus, ops):
    """The resend went out but the dead-lettered copy was not completed (crash): running the
    replay again resends the same MessageId, which duplicate detection drops."""
    sequence, enqueued = dead_lettered_order(bus)
    outwait_duplicate_window(enqueued)
    send(bus, QUEUE, order_message())
    result = ops("deadletters", "replay", QUEUE, "--seq", str(sequence))
    assert result.exit_code == 0, result.output
    assert [m.message_id for m in receive_all(bus, QUEUE)] == ["order-1"]
    assert peek(bus, QUEUE, dead_letter=True) == []


def test_dry_run_changes_nothing(bus, ops):
    sequence, enqueued = dead_lettered_order(bus)
    outwait_duplicate_window(enqueued)
    result = ops("deadletters", "replay", QUEUE, "--all", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == [{
        "entity": QUEUE, "sequenceNumber": sequence, "messageId": "order-1",
        "outcome": "would replay", "detail": f"to queue {QUEUE}"}]
    assert [m.sequence_number for m in peek(bus, QUEUE, dead_letter=True)] == [sequence]
    assert peek(bus, QUEUE) == []


def test_replay_all_replays_every_dead_letter_of_the_entity(bus, ops):
    *_, (_, enqueued) = dead_lettered_orders(bus, "order-1", "order-2", "order-3")
    outwait_duplicate_window(enqueued)
    result = ops("deadletters", "replay", QUEUE, "--all")
    assert result.exit_code == 0, result.output
    assert "3 replayed" in result.output
    assert sorted(m.message_id for m in receive_all(bus, QUEUE, expected=3)) == [
        "order-1", "order-2", "order-3"]


def test_replaying_one_leaves_the_others_dead_lettered(bus, ops):
    (first, _), (_, enqueued) = dead_lettered_orders(bus, "order-1", "order-2")
    outwait_duplicate_window(enqueued)
    result = ops("deadletters", "replay", QUEUE, "--seq", str(first))
    assert result.exit_code == 0, result.output
    assert [m.message_id for m in receive_all(bus, QUEUE)] == ["order-1"]
    assert [m.message_id for m in peek(bus, QUEUE, dead_letter=True)] == ["order-2"]


def test_a_dead_letter_inside_the_duplicate_window_is_skipped_not_lost(bus, ops):
    sequence, _ = dead_lettered_order(bus)
    result = ops("deadletters", "replay", QUEUE, "--seq", str(sequence), "--json")
    assert result.exit_code == SKIPPED
    [skipped] = json.loads(result.output)
    assert "duplicate-detection window" in skipped["detail"]
    assert [m.sequence_number for m in peek(bus, QUEUE, dead_letter=True)] == [sequence]


def test_a_subscription_dead_letter_is_replayed_through_its_topic_and_rule(bus, ops):
    send(bus, "triage-tickets", ServiceBusMessage(
        b'{"ticket": "t-9"}', message_id="ticket-9", application_properties={
            "cloudEvents_type": "triage.ticket.classified", "cloudEvents_subject": "billing/t-9"}),
        topic=True)
    sequence, enqueued = dead_letter_one(bus, "triage-tickets", subscription="billing")
    outwait_duplicate_window(enqueued)
    result = ops("deadletters", "replay", "triage-tickets/billing", "--seq", str(sequence),
                 "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)[0]["detail"].startswith("sent to topic triage-tickets")
    [again] = receive_all(bus, "triage-tickets", subscription="billing")
    assert again.message_id == "ticket-9"
    assert properties(again)["cloudEvents_subject"] == "billing/t-9"
    assert receive_all(bus, "triage-tickets", subscription="platform", expected=0) == []


def test_an_unknown_entity_is_a_usage_error_naming_the_known_ones(ops):
    result = ops("deadletters", "list", "--entity", "orders-sagas")
    assert result.exit_code == USAGE_ERROR
    assert "unknown Service Bus entity 'orders-sagas'" in result.output
    assert "orders-saga," in result.output


def test_a_missing_connection_setting_is_a_usage_error_naming_it(ops):
    result = ops("deadletters", "list", "--entity", "triage-tickets/billing",
                 extra={"TRIAGE_SERVICEBUS": ""})
    assert result.exit_code == USAGE_ERROR
    assert "TRIAGE_SERVICEBUS" in result.output


def test_seq_and_all_together_are_refused(ops):
    result = ops("deadletters", "replay", QUEUE, "--seq", "1", "--all")
    assert result.exit_code == USAGE_ERROR


def test_a_resend_that_fails_leaves_the_dead_letter_in_place(bus):
    """The settle pass the replay uses, with a send that fails as a broker outage would."""
    (first, _), (second, _) = dead_lettered_orders(bus, "order-1", "order-2")

    def unreachable(message) -> None:
        raise ServiceBusConnectionError(message="connection to the namespace was lost")

    resend = StopAtFirstFailure(unreachable)
    entity = Catalogue.load(ENTITIES).entity(QUEUE)
    with receiver(bus, entity, dead_letter=True) as dead_letters:
        completed = settle_chosen(dead_letters, chosen=[first, second], act=resend)
    assert completed == set()
    assert resend.failed[first].startswith("send failed: ServiceBusConnectionError")
    assert resend.failed[second] == "not tried after an earlier failure"
    assert [m.message_id for m in peek(bus, QUEUE, dead_letter=True)] == ["order-1", "order-2"]
