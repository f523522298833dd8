"""Queues with the unmodified azure-servicebus SDK (sync): send, receive, settle."""

from __future__ import annotations

import datetime
import uuid

import pytest
from azure.servicebus import (
    ServiceBusClient,
    ServiceBusMessage,
    ServiceBusReceiveMode,
    ServiceBusSubQueue,
)
from azure.servicebus.amqp import AmqpAnnotatedMessage

MAX_WAIT = 5


def receive(client: ServiceBusClient, queue: str, count: int, **kwargs):
    """Receive until `count` messages arrived (or MAX_WAIT passes with nothing new)."""
    with client.get_queue_receiver(queue, **kwargs) as receiver:
        got = []
        while len(got) < count:
            batch = receiver.receive_messages(max_message_count=count - len(got),
                                              max_wait_time=MAX_WAIT)
            if not batch:
                break
            got.extend(batch)
        return got


def test_single_list_and_batch_sends_all_arrive_in_order(client):
    with client.get_queue_sender("work") as sender:
        sender.send_messages(ServiceBusMessage("one"))
        sender.send_messages([ServiceBusMessage("two"), ServiceBusMessage("three")])
        batch = sender.create_message_batch()
        batch.add_message(ServiceBusMessage("four"))
        batch.add_message(ServiceBusMessage("five"))
        sender.send_messages(batch)
    got = receive(client, "work", 5, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE)
    assert [str(m) for m in got] == ["one", "two", "three", "four", "five"]
    assert [m.sequence_number for m in got] == sorted(m.sequence_number for m in got)


def bare(body: str, **annotations: object) -> AmqpAnnotatedMessage:
    """A message with no MessageId (a ServiceBusMessage would get one from the SDK, and so
    would schedule_messages, so the scheduled one is sent with its enqueue time)."""
    return AmqpAnnotatedMessage(data_body=body.encode(), annotations=annotations or None)


def test_messages_sent_without_a_message_id_get_one_from_the_broker(client):
    due = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=0.5)
    with client.get_queue_sender("work") as sender:
        sender.send_messages(bare("scheduled", **{"x-opt-scheduled-enqueue-time": due}))
        sender.send_messages(bare("single"))
        batch = sender.create_message_batch()
        batch.add_message(bare("batched"))
        batch.add_message(bare("batched too"))
        sender.send_messages(batch)
        sender.send_messages(ServiceBusMessage("chosen", message_id="mine"))
    got = receive(client, "work", 5, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE)
    ids = {str(m): m.message_id for m in got}
    assert [str(m) for m in got if m.scheduled_enqueue_time_utc] == ["scheduled"]
    assert ids.pop("chosen") == "mine"
    assert sorted(ids) == ["batched", "batched too", "scheduled", "single"]
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids.values()), ids
    assert len(set(ids.values())) == 4


def test_completed_message_is_gone(client):
    with client.get_queue_sender("work") as sender:
        sender.send_messages(ServiceBusMessage("done"))
    with client.get_queue_receiver("work") as receiver:
        (message,) = receiver.receive_messages(max_wait_time=MAX_WAIT)
        receiver.complete_message(message)
        assert receiver.peek_messages(10, sequence_number=0) == []


def test_receive_and_delete_removes_on_delivery(client):
    with client.get_queue_sender("work") as sender:
        sender.send_messages(ServiceBusMessage("once"))
    assert [str(m) for m in receive(
        client, "work", 1, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE)] == ["once"]
    with client.get_queue_receiver("work") as receiver:
        assert receiver.peek_messages(10, sequence_number=0) == []


def test_abandoned_message_is_redelivered_with_higher_delivery_count(client):
    with client.get_queue_sender("work") as sender:
        sender.send_messages(ServiceBusMessage("retry me"))
    with client.get_queue_receiver("work") as receiver:
        (first,) = receiver.receive_messages(max_wait_time=MAX_WAIT)
        assert first.delivery_count == 0
        receiver.abandon_message(first)
        (second,) = receiver.receive_messages(max_wait_time=MAX_WAIT)
        assert str(second) == "retry me"
        assert second.delivery_count == 1
        assert second.sequence_number == first.sequence_number
        receiver.complete_message(second)


def test_dead_letter_keeps_reason_and_description_in_the_sub_queue(client):
    with client.get_queue_sender("work") as sender:
        sender.send_messages(ServiceBusMessage("poison", application_properties={"k": "v"}))
    with client.get_queue_receiver("work") as receiver:
        (message,) = receiver.receive_messages(max_wait_time=MAX_WAIT)
        receiver.dead_letter_message(message, reason="schema", error_description="field x")
    (dead,) = receive(client, "work", 1, sub_queue=ServiceBusSubQueue.DEAD_LETTER)
    assert str(dead) == "poison"
    assert dead.dead_letter_reason == "schema"
    assert dead.dead_letter_error_description == "field x"
    assert dead.dead_letter_source == "work"
    assert dead.application_properties[b"k"] == b"v"


def test_max_delivery_count_moves_the_message_to_the_dead_letter_queue(client):
    with client.get_queue_sender("two-tries") as sender:
        sender.send_messages(ServiceBusMessage("flaky"))
    with client.get_queue_receiver("two-tries") as receiver:
        for _ in range(2):
            (message,) = receiver.receive_messages(max_wait_time=MAX_WAIT)
            receiver.abandon_message(message)
        assert receiver.receive_messages(max_wait_time=1) == []
    (dead,) = receive(client, "two-tries", 1, sub_queue=ServiceBusSubQueue.DEAD_LETTER)
    assert dead.dead_letter_reason == "MaxDeliveryCountExceeded"


def test_deferred_message_is_received_again_by_sequence_number(client):
    with client.get_queue_sender("work") as sender:
        sender.send_messages([ServiceBusMessage("later"), ServiceBusMessage("now")])
    with client.get_queue_receiver("work") as receiver:
        (later,) = receiver.receive_messages(max_wait_time=MAX_WAIT)
        receiver.defer_message(later)
        (now,) = receiver.receive_messages(max_wait_time=MAX_WAIT)
        assert str(now) == "now"
        receiver.complete_message(now)
        (again,) = receiver.receive_deferred_messages([later.sequence_number])
        assert str(again) == "later"
        receiver.complete_message(again)
        assert receiver.peek_messages(10, sequence_number=0) == []


def test_peek_does_not_lock_or_remove(client):
    with client.get_queue_sender("work") as sender:
        sender.send_messages([ServiceBusMessage("a"), ServiceBusMessage("b")])
    with client.get_queue_receiver("work") as receiver:
        peeked = receiver.peek_messages(10, sequence_number=0)
        assert [str(m) for m in peeked] == ["a", "b"]
    assert len(receive(client, "work", 2)) == 2


def test_message_properties_round_trip_exactly(client):
    properties = {
        "str": "text",
        "int": 7,
        "negative": -3,
        "float": 1.25,
        "bool": True,
        "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "when": datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
    }
    sent = ServiceBusMessage(
        b'{"x": 1}',
        application_properties=properties,
        content_type="application/json",
        correlation_id="corr-1",
        subject="subject-1",
        to="someone",
        reply_to="replies",
        message_id="mid-1",
        time_to_live=datetime.timedelta(minutes=5),
        partition_key="pk-1",
    )
    with client.get_queue_sender("work") as sender:
        sender.send_messages(sent)
    (got,) = receive(client, "work", 1, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE)
    assert b"".join(got.body) == b'{"x": 1}'
    assert got.content_type == "application/json"
    assert got.correlation_id == "corr-1"
    assert got.subject == "subject-1"
    assert got.to == "someone"
    assert got.reply_to == "replies"
    assert got.message_id == "mid-1"
    assert got.time_to_live == datetime.timedelta(minutes=5)
    assert got.partition_key == "pk-1"
    app = {key.decode(): value for key, value in got.application_properties.items()}
    assert app["str"] == b"text"
    assert app["int"] == 7 and app["negative"] == -3
    assert app["float"] == 1.25 and app["bool"] is True
    assert app["uuid"] == properties["uuid"]
    assert app["when"] == 1704164645000
    assert got.enqueued_time_utc is not None


def test_unknown_queue_is_reported_as_not_found(connection_string):
    from azure.servicebus.exceptions import MessagingEntityNotFoundError

    with ServiceBusClient.from_connection_string(connection_string, retry_total=0) as sb, \
            pytest.raises(MessagingEntityNotFoundError), sb.get_queue_sender("missing") as sender:
        sender.send_messages(ServiceBusMessage("x"))


def test_a_message_larger_than_a_frame_round_trips_in_both_modes(client):
    body = bytes(range(256)) * 800  # 200 KiB: several frames each way
    with client.get_queue_sender("work") as sender:
        sender.send_messages([ServiceBusMessage(body), ServiceBusMessage(body)])
    with client.get_queue_receiver("work") as receiver:
        (locked,) = receiver.receive_messages(max_wait_time=MAX_WAIT)
        assert b"".join(locked.body) == body
        receiver.complete_message(locked)
    (deleted,) = receive(client, "work", 1, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE)
    assert b"".join(deleted.body) == body


def test_deferred_message_received_in_receive_and_delete_mode_is_removed(client):
    with client.get_queue_sender("work") as sender:
        sender.send_messages(ServiceBusMessage("parked"))
    with client.get_queue_receiver("work") as receiver:
        (message,) = receiver.receive_messages(max_wait_time=MAX_WAIT)
        receiver.defer_message(message)
    with client.get_queue_receiver(
            "work", receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE) as receiver:
        (got,) = receiver.receive_deferred_messages([message.sequence_number])
        assert str(got) == "parked"
        assert receiver.peek_messages(5, sequence_number=0) == []
