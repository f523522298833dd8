"""Fault injection through DevStack.faults, observed with the official SDK (sync)."""

from __future__ import annotations

import time

import pytest
from azure.servicebus import (
    AutoLockRenewer,
    ServiceBusClient,
    ServiceBusMessage,
    ServiceBusReceiveMode,
)
from azure.servicebus.exceptions import ServiceBusServerBusyError

MAX_WAIT = 3


def test_server_busy_is_raised_then_sends_succeed(connection_string, stack):
    stack.faults.server_busy(times=1)
    with ServiceBusClient.from_connection_string(connection_string, retry_total=0) as client, \
            client.get_queue_sender("work") as sender:
        with pytest.raises(ServiceBusServerBusyError):
            sender.send_messages(ServiceBusMessage("throttled"))
        sender.send_messages(ServiceBusMessage("accepted"))


def test_sdk_retries_through_a_server_busy_answer(client, stack):
    stack.faults.server_busy("work", times=1)
    with client.get_queue_sender("work") as sender:
        sender.send_messages(ServiceBusMessage("eventually"))
    with client.get_queue_receiver(
            "work", receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE) as receiver:
        assert [str(m) for m in receiver.receive_messages(max_wait_time=MAX_WAIT)] == ["eventually"]


def test_dropped_connection_is_recovered_by_the_sdk(client, stack):
    with client.get_queue_sender("work") as sender:
        sender.send_messages(ServiceBusMessage("before"))
        assert stack.faults.drop_connections() >= 1
        sender.send_messages(ServiceBusMessage("after"))
    with client.get_queue_receiver(
            "work", receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE) as receiver:
        got = receiver.receive_messages(max_message_count=2, max_wait_time=MAX_WAIT)
        got += receiver.receive_messages(max_message_count=1, max_wait_time=1)
        assert [str(m) for m in got] == ["before", "after"]


def test_message_delivered_twice_comes_back_after_completion(client, stack):
    stack.faults.deliver_twice("work")
    with client.get_queue_sender("work") as sender:
        sender.send_messages(ServiceBusMessage("at least once", message_id="dup-1"))
    with client.get_queue_receiver("work") as receiver:
        (first,) = receiver.receive_messages(max_wait_time=MAX_WAIT)
        receiver.complete_message(first)
        (second,) = receiver.receive_messages(max_wait_time=MAX_WAIT)
        assert (second.message_id, str(second)) == ("dup-1", "at least once")
        receiver.complete_message(second)
        assert receiver.receive_messages(max_wait_time=1) == []


def test_added_latency_delays_replies_but_loses_nothing(client, stack):
    with client.get_queue_sender("work") as sender:
        sender.send_messages(ServiceBusMessage("warm-up"))
        stack.faults.add_latency(0.3)
        started = time.monotonic()
        sender.send_messages(ServiceBusMessage("slow"))
        assert time.monotonic() - started >= 0.3
        stack.faults.clear()
    with client.get_queue_receiver(
            "work", receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE) as receiver:
        got = receiver.receive_messages(max_message_count=2, max_wait_time=MAX_WAIT)
        got += receiver.receive_messages(max_message_count=1, max_wait_time=1)
        assert [str(m) for m in got] == ["warm-up", "slow"]


def test_http_fault_api_arms_server_busy_and_drops_connections():
    import json
    import urllib.request

    from devstack.server import DevStack

    from .conftest import TEST_CONFIG

    def post(base: str, path: str) -> dict:
        request = urllib.request.Request(base + path, method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    with DevStack([TEST_CONFIG], port=0, admin_port=0) as stack:
        assert stack.admin_url is not None
        with ServiceBusClient.from_connection_string(stack.connection_string,
                                                     retry_total=0) as client, \
                client.get_queue_sender("work") as sender:
            sender.send_messages(ServiceBusMessage("open the link"))
            assert post(stack.admin_url, "/faults/server-busy?entity=work") == {
                "armed": "server-busy"}
            with pytest.raises(ServiceBusServerBusyError):
                sender.send_messages(ServiceBusMessage("throttled"))
            assert post(stack.admin_url, "/faults/drop-connections")["dropped"] == 1
            assert post(stack.admin_url, "/faults/clear") == {"cleared": True}


def test_duplicate_send_stores_a_second_copy_unless_duplicate_detection_drops_it(client, stack):
    stack.faults.duplicate_sends("work")
    stack.faults.duplicate_sends("dedupe")
    with client.get_queue_sender("work") as sender:
        sender.send_messages(ServiceBusMessage("retried", message_id="r-1"))
    with client.get_queue_sender("dedupe") as sender:
        sender.send_messages(ServiceBusMessage("retried", message_id="r-2"))
    for queue, expected in (("work", ["r-1", "r-1"]), ("dedupe", ["r-2"])):
        with client.get_queue_receiver(
                queue, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE) as receiver:
            got = receiver.receive_messages(max_message_count=5, max_wait_time=MAX_WAIT)
            got += receiver.receive_messages(max_message_count=5, max_wait_time=1)
            assert [m.message_id for m in got] == expected


def test_malformed_delivery_lacks_its_lock_expiry_and_the_renewer_refuses_it(client, stack):
    stack.faults.malformed_deliveries("work")
    with client.get_queue_sender("work") as sender:
        sender.send_messages([ServiceBusMessage("malformed"), ServiceBusMessage("intact")])
    with client.get_queue_receiver("work") as receiver, AutoLockRenewer() as renewer:
        (malformed,) = receiver.receive_messages(max_wait_time=MAX_WAIT)
        assert (str(malformed), malformed.locked_until_utc) == ("malformed", None)
        with pytest.raises(ValueError):  # not a ServiceBusError
            renewer.register(receiver, malformed)
        (intact,) = receiver.receive_messages(max_wait_time=MAX_WAIT)
        assert intact.locked_until_utc is not None
        receiver.complete_message(malformed)
        receiver.complete_message(intact)
