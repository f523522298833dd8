"""Duplicate detection, time-to-live, ForwardTo and ForwardDeadLetteredMessagesTo (sync SDK)."""

from __future__ import annotations

import datetime
import time

from azure.servicebus import (
    ServiceBusClient,
    ServiceBusMessage,
    ServiceBusReceiveMode,
    ServiceBusSubQueue,
)

from .conftest import wait_until

MAX_WAIT = 3


def drain(client: ServiceBusClient, queue: str, **kwargs) -> list:
    with client.get_queue_receiver(
        queue, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE, **kwargs
    ) as receiver:
        got = []
        while batch := receiver.receive_messages(max_message_count=20, max_wait_time=1):
            got.extend(batch)
        return got


def test_duplicate_message_id_within_the_window_is_dropped(client):
    with client.get_queue_sender("dedupe") as sender:
        sender.send_messages(ServiceBusMessage("first", message_id="order-1"))
        sender.send_messages(ServiceBusMessage("again", message_id="order-1"))
        sender.send_messages(ServiceBusMessage("other", message_id="order-2"))
    assert [str(m) for m in drain(client, "dedupe")] == ["first", "other"]


def test_a_message_id_is_accepted_again_once_its_window_has_passed(client):
    with client.get_queue_sender("dedupe-short") as sender:
        sender.send_messages(ServiceBusMessage("first", message_id="order-1"))
        sender.send_messages(ServiceBusMessage("dropped", message_id="order-1"))
        time.sleep(1.2)  # the configured window is one second
        sender.send_messages(ServiceBusMessage("after the window", message_id="order-1"))
    assert [str(m) for m in drain(client, "dedupe-short")] == ["first", "after the window"]


def test_queues_without_duplicate_detection_keep_duplicates(client):
    with client.get_queue_sender("work") as sender:
        sender.send_messages(ServiceBusMessage("first", message_id="same"))
        sender.send_messages(ServiceBusMessage("again", message_id="same"))
    assert [str(m) for m in drain(client, "work")] == ["first", "again"]


def test_expired_message_is_dead_lettered_when_the_queue_says_so(client):
    with client.get_queue_sender("expiring") as sender:
        sender.send_messages(ServiceBusMessage(
            "stale", time_to_live=datetime.timedelta(seconds=1)))
    dead = wait_until(lambda: drain(client, "expiring", sub_queue=ServiceBusSubQueue.DEAD_LETTER))
    assert [str(m) for m in dead] == ["stale"]
    assert dead[0].dead_letter_reason == "TTLExpiredException"
    assert drain(client, "expiring") == []


def test_expired_message_is_dropped_without_dead_lettering_on_expiration(client, stack):
    with client.get_queue_sender("expiring-drop") as sender:
        sender.send_messages(ServiceBusMessage(
            "stale", time_to_live=datetime.timedelta(seconds=1)))
    entity = stack.servicebus.broker.entity("expiring-drop")
    wait_until(lambda: stack.call(lambda: len(entity)) == 0)
    assert drain(client, "expiring-drop") == []
    assert drain(client, "expiring-drop", sub_queue=ServiceBusSubQueue.DEAD_LETTER) == []


def test_forward_to_moves_messages_to_the_target_queue(client):
    with client.get_queue_sender("forwarder") as sender:
        sender.send_messages(ServiceBusMessage("passed on"))
    assert [str(m) for m in drain(client, "work")] == ["passed on"]
    assert drain(client, "forwarder") == []


def test_dead_lettered_messages_are_forwarded_when_configured(client):
    with client.get_queue_sender("dlq-forwarder") as sender:
        sender.send_messages(ServiceBusMessage("bad"))
    with client.get_queue_receiver("dlq-forwarder") as receiver:
        (message,) = receiver.receive_messages(max_wait_time=MAX_WAIT)
        receiver.dead_letter_message(message, reason="invalid", error_description="no schema")
    (parked,) = drain(client, "parking")
    assert str(parked) == "bad"
    assert parked.application_properties[b"DeadLetterReason"] == b"invalid"
