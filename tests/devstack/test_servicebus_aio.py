"""The same behaviours through the SDK's asyncio client (azure.servicebus.aio)."""

from __future__ import annotations

import asyncio
import datetime
import time
import uuid

import pytest
from azure.servicebus import (
    NEXT_AVAILABLE_SESSION,
    ServiceBusMessage,
    ServiceBusReceiveMode,
    ServiceBusSubQueue,
)
from azure.servicebus.aio import ServiceBusClient
from azure.servicebus.exceptions import MessageLockLostError, ServiceBusServerBusyError

MAX_WAIT = 3


@pytest.fixture
async def client(connection_string: str):
    async with ServiceBusClient.from_connection_string(connection_string) as sb:
        yield sb


async def drain(client: ServiceBusClient, queue: str | None = None, *,
                subscription: str | None = None, **kwargs) -> list:
    if subscription is not None:
        receiver = client.get_subscription_receiver(
            "events", subscription, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE,
            **kwargs)
    else:
        assert queue is not None
        receiver = client.get_queue_receiver(
            queue, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE, **kwargs)
    async with receiver:
        got = []
        while batch := await receiver.receive_messages(max_message_count=20, max_wait_time=1):
            got.extend(batch)
        return got


async def receive_exactly(receiver, count: int) -> list:
    """Receive until `count` messages arrived; a batch may hold fewer than asked for."""
    got: list = []
    while len(got) < count:
        batch = await receiver.receive_messages(max_message_count=count - len(got),
                                                max_wait_time=MAX_WAIT)
        assert batch, f"only {len(got)} of {count} messages arrived"
        got.extend(batch)
    return got


async def eventually(condition, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while True:
        result = await condition()
        if result:
            return result
        assert time.monotonic() < deadline, "condition not met before the deadline"
        await asyncio.sleep(0.05)


async def test_single_list_and_batch_sends_arrive_in_order(client):
    async with client.get_queue_sender("work") as sender:
        await sender.send_messages(ServiceBusMessage("one"))
        await sender.send_messages([ServiceBusMessage("two"), ServiceBusMessage("three")])
        batch = await sender.create_message_batch()
        batch.add_message(ServiceBusMessage("four"))
        await sender.send_messages(batch)
    assert [str(m) for m in await drain(client, "work")] == ["one", "two", "three", "four"]


async def test_peek_lock_complete_abandon_and_delivery_count(client):
    async with client.get_queue_sender("work") as sender:
        await sender.send_messages([ServiceBusMessage("a"), ServiceBusMessage("b")])
    async with client.get_queue_receiver("work") as receiver:
        first, second = await receive_exactly(receiver, 2)
        await receiver.complete_message(first)
        await receiver.abandon_message(second)
        (again,) = await receiver.receive_messages(max_wait_time=MAX_WAIT)
        assert (str(again), again.delivery_count) == ("b", 1)
        await receiver.complete_message(again)
        assert await receiver.peek_messages(5, sequence_number=0) == []


async def test_defer_then_receive_deferred_by_sequence_number(client):
    async with client.get_queue_sender("work") as sender:
        await sender.send_messages(ServiceBusMessage("later"))
    async with client.get_queue_receiver("work") as receiver:
        (message,) = await receiver.receive_messages(max_wait_time=MAX_WAIT)
        await receiver.defer_message(message)
        (deferred,) = await receiver.receive_deferred_messages([message.sequence_number])
        assert str(deferred) == "later"
        await receiver.complete_message(deferred)


async def test_dead_letter_with_reason_and_max_delivery_count(client):
    async with client.get_queue_sender("two-tries") as sender:
        await sender.send_messages([ServiceBusMessage("explicit"), ServiceBusMessage("flaky")])
    async with client.get_queue_receiver("two-tries") as receiver:
        explicit, flaky = await receive_exactly(receiver, 2)
        await receiver.dead_letter_message(explicit, reason="bad", error_description="why")
        await receiver.abandon_message(flaky)
        (flaky,) = await receiver.receive_messages(max_wait_time=MAX_WAIT)
        await receiver.abandon_message(flaky)
    dead = await drain(client, "two-tries", sub_queue=ServiceBusSubQueue.DEAD_LETTER)
    assert [(str(m), m.dead_letter_reason) for m in dead] == [
        ("explicit", "bad"), ("flaky", "MaxDeliveryCountExceeded")]
    assert dead[0].dead_letter_error_description == "why"


async def test_renew_lock_and_lock_expiry_with_late_settle(client):
    async with client.get_queue_sender("short-lock") as sender:
        await sender.send_messages(ServiceBusMessage("slow"))
    async with client.get_queue_receiver("short-lock") as receiver:
        (message,) = await receiver.receive_messages(max_wait_time=MAX_WAIT)
        renewed = await receiver.renew_message_lock(message)
        assert renewed >= message.locked_until_utc - datetime.timedelta(seconds=1)
        (redelivered,) = await eventually(lambda: receiver.receive_messages(max_wait_time=1))
        with pytest.raises(MessageLockLostError):
            await receiver.complete_message(message)
        await receiver.complete_message(redelivered)


async def test_schedule_and_cancel(client):
    due = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=1)
    async with client.get_queue_sender("work") as sender:
        keep, cancel = await sender.schedule_messages(
            [ServiceBusMessage("keep"), ServiceBusMessage("cancel")], due)
        await sender.cancel_scheduled_messages(cancel)
    got = await eventually(lambda: drain(client, "work"))
    assert [str(m) for m in got] == ["keep"]
    assert got[0].sequence_number == keep


async def test_topic_rules_route_copies(client):
    async with client.get_topic_sender("events") as sender:
        await sender.send_messages([
            ServiceBusMessage("invoice", application_properties={"team": "billing"}),
            ServiceBusMessage("page", application_properties={"priority": "P1", "size": 11}),
        ])
    assert [str(m) for m in await drain(client, subscription="all")] == ["invoice", "page"]
    assert [str(m) for m in await drain(client, subscription="billing")] == ["invoice"]
    urgent = await drain(client, subscription="urgent")
    assert [(str(m), m.to) for m in urgent] == [("page", "pager")]


async def test_sessions_state_and_next_available(client):
    async with client.get_queue_sender("sessions") as sender:
        await sender.send_messages([ServiceBusMessage("s1", session_id="x"),
                                    ServiceBusMessage("s2", session_id="x")])
    async with client.get_queue_receiver("sessions", session_id=NEXT_AVAILABLE_SESSION) as r:
        assert r.session.session_id == "x"
        await r.session.set_state(b"half-way")
        assert await r.session.get_state() == b"half-way"
        assert await r.session.renew_lock() is not None
        got = await receive_exactly(r, 2)
        assert [str(m) for m in got] == ["s1", "s2"]
        for message in got:
            await r.complete_message(message)


async def test_duplicate_detection_ttl_and_forwarding(client):
    async with client.get_queue_sender("dedupe") as sender:
        await sender.send_messages([ServiceBusMessage("1", message_id="m"),
                                    ServiceBusMessage("2", message_id="m")])
    async with client.get_queue_sender("expiring") as sender:
        await sender.send_messages(ServiceBusMessage(
            "old", time_to_live=datetime.timedelta(seconds=1)))
    async with client.get_queue_sender("forwarder") as sender:
        await sender.send_messages(ServiceBusMessage("fwd"))
    assert [str(m) for m in await drain(client, "dedupe")] == ["1"]
    assert [str(m) for m in await drain(client, "work")] == ["fwd"]
    dead = await eventually(
        lambda: drain(client, "expiring", sub_queue=ServiceBusSubQueue.DEAD_LETTER))
    assert dead[0].dead_letter_reason == "TTLExpiredException"


async def test_properties_round_trip(client):
    identifier = uuid.uuid4()
    async with client.get_queue_sender("work") as sender:
        await sender.send_messages(ServiceBusMessage(
            "p", application_properties={"n": 1, "s": "x", "u": identifier, "f": 0.5},
            content_type="text/plain", correlation_id="c", subject="s", to="t",
            reply_to="r", session_id=None, message_id="id-9", partition_key="pk"))
    (got,) = await drain(client, "work")
    assert (got.content_type, got.correlation_id, got.subject, got.to, got.reply_to,
            got.message_id, got.partition_key) == ("text/plain", "c", "s", "t", "r", "id-9", "pk")
    assert got.application_properties == {b"n": 1, b"s": b"x", b"u": identifier, b"f": 0.5}


async def test_server_busy_fault_surfaces_as_server_busy_error(connection_string, stack):
    stack.faults.server_busy("work", times=1)
    async with ServiceBusClient.from_connection_string(connection_string, retry_total=0) as sb, \
            sb.get_queue_sender("work") as sender:
        with pytest.raises(ServiceBusServerBusyError):
            await sender.send_messages(ServiceBusMessage("throttled"))
        await sender.send_messages(ServiceBusMessage("accepted"))
    async with ServiceBusClient.from_connection_string(connection_string) as sb:
        assert [str(m) for m in await drain(sb, "work")] == ["accepted"]


async def test_async_iteration_over_a_receiver(client):
    async with client.get_queue_sender("work") as sender:
        await sender.send_messages([ServiceBusMessage(f"m{i}") for i in range(3)])
    seen = []
    async with client.get_queue_receiver("work", max_wait_time=2) as receiver:
        async for message in receiver:
            seen.append(str(message))
            await receiver.complete_message(message)
    assert seen == ["m0", "m1", "m2"]


async def test_dead_lettered_messages_are_forwarded_when_configured(client):
    async with client.get_queue_sender("dlq-forwarder") as sender:
        await sender.send_messages(ServiceBusMessage("bad"))
    async with client.get_queue_receiver("dlq-forwarder") as receiver:
        (message,) = await receiver.receive_messages(max_wait_time=MAX_WAIT)
        await receiver.dead_letter_message(message, reason="invalid")
    (parked,) = await drain(client, "parking")
    assert (str(parked), parked.dead_letter_reason) == ("bad", "invalid")


async def test_dropped_connection_is_recovered_and_expired_lock_is_lost(client, stack):
    async with client.get_queue_sender("work") as sender:
        await sender.send_messages(ServiceBusMessage("before"))
        await asyncio.to_thread(stack.faults.drop_connections)
        await sender.send_messages(ServiceBusMessage("after"))
    async with client.get_queue_receiver("work") as receiver:
        got = await receive_exactly(receiver, 2)
        assert [str(m) for m in got] == ["before", "after"]
        first = got[0]
        await asyncio.to_thread(stack.faults.expire_locks, "work")
        with pytest.raises(MessageLockLostError):
            await receiver.complete_message(first)


async def test_concurrent_late_settles_of_expired_locks_fail_with_lock_lost_and_keep_the_link(
    client, stack
):
    async with client.get_queue_sender("work") as sender:
        await sender.send_messages([ServiceBusMessage("a"), ServiceBusMessage("b")])
    entity = stack.servicebus.broker.entity("work")
    async with client.get_queue_receiver("work") as receiver:
        first = await receive_exactly(receiver, 2)
        (link,) = entity.consumers
        assert await asyncio.to_thread(stack.faults.expire_locks, "work") == 2

        outcomes = await asyncio.gather(*(receiver.complete_message(m) for m in first),
                                        return_exceptions=True)

        assert [type(o) for o in outcomes] == [MessageLockLostError, MessageLockLostError]
        again = await receive_exactly(receiver, 2)
        assert [(str(m), m.delivery_count) for m in again] == [("a", 1), ("b", 1)]
        await asyncio.gather(*(receiver.complete_message(m) for m in again))
        assert entity.consumers == [link]
    assert len(entity) == 0


async def test_message_delivered_twice_comes_back_after_completion(client, stack):
    await asyncio.to_thread(stack.faults.deliver_twice, "work")
    async with client.get_queue_sender("work") as sender:
        await sender.send_messages(ServiceBusMessage("once", message_id="twice-1"))
    async with client.get_queue_receiver("work") as receiver:
        (first,) = await receiver.receive_messages(max_wait_time=MAX_WAIT)
        await receiver.complete_message(first)
        (second,) = await receiver.receive_messages(max_wait_time=MAX_WAIT)
        assert second.message_id == "twice-1"
        await receiver.complete_message(second)
