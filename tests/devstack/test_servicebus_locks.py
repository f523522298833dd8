"""Message locks and scheduling with the sync SDK: renew, expiry, late settle, schedule."""

from __future__ import annotations

import datetime
import time

import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus.exceptions import MessageLockLostError

from .conftest import wait_until

MAX_WAIT = 5


def test_renew_lock_moves_locked_until_forward(client):
    with client.get_queue_sender("work") as sender:
        sender.send_messages(ServiceBusMessage("long job"))
    with client.get_queue_receiver("work") as receiver:
        (message,) = receiver.receive_messages(max_wait_time=MAX_WAIT)
        before = message.locked_until_utc
        time.sleep(0.01)
        after = receiver.renew_message_lock(message)
        assert after > before
        receiver.complete_message(message)


def test_expired_lock_redelivers_and_the_late_settle_fails(client):
    with client.get_queue_sender("short-lock") as sender:
        sender.send_messages(ServiceBusMessage("slow"))
    with client.get_queue_receiver("short-lock") as receiver:
        (first,) = receiver.receive_messages(max_wait_time=MAX_WAIT)
        redelivered = wait_until(lambda: receiver.receive_messages(max_wait_time=1))
        assert str(redelivered[0]) == "slow"
        assert redelivered[0].delivery_count == 1
        with pytest.raises(MessageLockLostError):
            receiver.complete_message(first)
        receiver.complete_message(redelivered[0])


def test_lock_expired_early_by_fault_fails_the_settle_with_lock_lost(client, stack):
    with client.get_queue_sender("work") as sender:
        sender.send_messages(ServiceBusMessage("fragile"))
    with client.get_queue_receiver("work") as receiver:
        (message,) = receiver.receive_messages(max_wait_time=MAX_WAIT)
        assert stack.faults.expire_locks("work") == 1
        with pytest.raises(MessageLockLostError):
            receiver.complete_message(message)
        (again,) = receiver.receive_messages(max_wait_time=MAX_WAIT)
        assert again.sequence_number == message.sequence_number
        receiver.complete_message(again)


def test_renewing_a_lost_lock_fails(client, stack):
    with client.get_queue_sender("work") as sender:
        sender.send_messages(ServiceBusMessage("fragile"))
    with client.get_queue_receiver("work") as receiver:
        (message,) = receiver.receive_messages(max_wait_time=MAX_WAIT)
        stack.faults.expire_locks()
        with pytest.raises(MessageLockLostError):
            receiver.renew_message_lock(message)


def test_scheduled_message_arrives_at_its_time_not_before(client):
    due = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=1.5)
    with client.get_queue_sender("work") as sender:
        (sequence_number,) = sender.schedule_messages(ServiceBusMessage("on time"), due)
        assert sequence_number > 0
    with client.get_queue_receiver("work") as receiver:
        (peeked,) = receiver.peek_messages(10, sequence_number=0)
        assert peeked.scheduled_enqueue_time_utc is not None
        (message,) = wait_until(lambda: receiver.receive_messages(max_wait_time=1))
        assert str(message) == "on time"
        assert message.enqueued_time_utc >= due - datetime.timedelta(milliseconds=1)
        receiver.complete_message(message)


def test_cancelled_scheduled_message_never_arrives(client):
    due = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=1)
    with client.get_queue_sender("work") as sender:
        numbers = sender.schedule_messages([ServiceBusMessage("a"), ServiceBusMessage("b")], due)
        sender.cancel_scheduled_messages(numbers[0])
    with client.get_queue_receiver("work") as receiver:
        (message,) = wait_until(lambda: receiver.receive_messages(max_wait_time=1))
        assert str(message) == "b"
        receiver.complete_message(message)
        time.sleep(0.3)
        assert receiver.receive_messages(max_wait_time=0.5) == []


def test_message_sent_with_scheduled_time_is_held_until_then(client):
    message = ServiceBusMessage("via property")
    due = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=1)
    message.scheduled_enqueue_time_utc = due
    with client.get_queue_sender("work") as sender:
        sender.send_messages(message)
    with client.get_queue_receiver("work") as receiver:
        (got,) = wait_until(lambda: receiver.receive_messages(max_wait_time=1))
        assert str(got) == "via property"
        assert got.enqueued_time_utc >= due - datetime.timedelta(milliseconds=1)
        assert got.scheduled_enqueue_time_utc is not None
        receiver.complete_message(got)
