"""Service Bus triggers through the official SDK against devstack's Service Bus."""

from __future__ import annotations

import uuid

from azure.servicebus import ServiceBusMessage, ServiceBusReceivedMessage, ServiceBusSubQueue
from azure.servicebus.aio import ServiceBusClient

from devstack.azurite import free_port
from devstack.server import DevStack, connection_string
from tests.devstack_host.conftest import SAMPLE_APP
from tests.devstack_host.helpers import eventually, read_json_blobs


async def send(connection: str, queue: str, *messages: ServiceBusMessage) -> None:
    async with ServiceBusClient.from_connection_string(connection) as client, \
            client.get_queue_sender(queue) as sender:
        await sender.send_messages(list(messages))


async def receive(connection: str, queue: str, *, dead_letters: bool = False,
                  wait: float = 1.0) -> list[ServiceBusReceivedMessage]:
    async with ServiceBusClient.from_connection_string(connection) as client:
        sub_queue = ServiceBusSubQueue.DEAD_LETTER if dead_letters else None
        async with client.get_queue_receiver(queue, sub_queue=sub_queue,
                                             max_wait_time=wait) as receiver:
            received = await receiver.receive_messages(max_message_count=50, max_wait_time=wait)
            for message in received:
                await receiver.complete_message(message)
            return received


async def test_message_reaches_the_function_with_its_properties_and_is_completed(
        servicebus, start_host, azurite):
    connection = servicebus.connection_string
    await start_host("sb_order_received", SAMPLE_SERVICEBUS=connection)
    message_id = str(uuid.uuid4())
    await send(connection, "sample-orders", ServiceBusMessage(
        "two lattes", message_id=message_id, correlation_id="corr-1",
        content_type="text/plain", application_properties={"tenant": "contoso"}))
    seen = await eventually(lambda: read_json_blobs(azurite.connection_string, "observations",
                                                    "sb/"))
    (observed,) = [s for s in seen if s["message_id"] == message_id]
    assert observed == {"body": "two lattes", "message_id": message_id, "delivery_count": 1,
                        "correlation_id": "corr-1", "content_type": "text/plain",
                        "user_properties": {"tenant": "contoso"}, "enqueued": True,
                        "sequence_number": observed["sequence_number"]}
    replies = await eventually(lambda: receive(connection, "sample-replies"))
    assert [str(r) for r in replies] == ["handled:two lattes"]
    assert await receive(connection, "sample-orders") == []


async def test_failing_function_abandons_until_max_delivery_count_dead_letters_it(
        servicebus, start_host):
    connection = servicebus.connection_string
    host = await start_host("sb_order_received", SAMPLE_SERVICEBUS=connection)
    await send(connection, "sample-orders", ServiceBusMessage("fail"))
    dead = await eventually(lambda: receive(connection, "sample-orders", dead_letters=True))
    assert [str(m) for m in dead] == ["fail"]
    failures = [r for r in host.invoker.records if not r.succeeded]
    assert len(failures) == 3  # MaxDeliveryCount of sample-orders
    assert await receive(connection, "sample-replies") == []


async def test_session_messages_are_handled_in_order_per_session(servicebus, start_host,
                                                                 azurite):
    connection = servicebus.connection_string
    await start_host("sb_session_received", SAMPLE_SERVICEBUS=connection)
    sessions = [f"cart-{uuid.uuid4().hex[:6]}" for _ in range(2)]
    await send(connection, "sample-sessions", *[
        ServiceBusMessage(f"{n}", session_id=session) for n in range(5) for session in sessions])

    async def handled():
        seen = await read_json_blobs(azurite.connection_string, "observations", "sessions/")
        mine = [s for s in seen if s["session_id"] in sessions]
        return mine if len(mine) == 10 else None

    seen = await eventually(handled)
    for session in sessions:
        ordered = sorted((s for s in seen if s["session_id"] == session),
                         key=lambda s: s["sequence_number"])
        assert [s["body"] for s in ordered] == ["0", "1", "2", "3", "4"]


async def manual_observations(azurite, message_id: str, count: int = 1) -> list[dict]:
    """What sb_self_settled saw of `message_id`, once it saw it `count` times."""
    async def seen():
        found = await read_json_blobs(azurite.connection_string, "observations", "manual/")
        mine = [f for f in found if f["message_id"] == message_id]
        return mine if len(mine) >= count else None

    return await eventually(seen)


async def test_sdk_type_binding_hands_the_function_the_received_message(
        servicebus, start_host, azurite):
    connection = servicebus.connection_string
    await start_host("sb_self_settled", SAMPLE_SERVICEBUS=connection)
    message_id = str(uuid.uuid4())
    await send(connection, "sample-manual", ServiceBusMessage(
        "accept", message_id=message_id, subject="greeting", correlation_id="corr-9",
        content_type="text/plain", application_properties={"tenant": "contoso", "n": 7}))
    (observed,) = await manual_observations(azurite, message_id)
    assert observed == {
        "body": "accept", "message_id": message_id, "lock_token": observed["lock_token"],
        "subject": "greeting", "correlation_id": "corr-9", "content_type": "text/plain",
        "application_properties": {"tenant": "contoso", "n": 7},
        "sequence_number": observed["sequence_number"], "enqueued": True,
        # The package's decoder skips the AMQP header, on Azure too (see devstack/host/sdktype).
        "delivery_count": None, "settlement_error": None}
    assert uuid.UUID(observed["lock_token"])
    assert await receive(connection, "sample-manual") == []


async def test_message_actions_dead_letter_with_the_functions_reason(servicebus, start_host):
    connection = servicebus.connection_string
    await start_host("sb_self_settled", SAMPLE_SERVICEBUS=connection)
    await send(connection, "sample-manual", ServiceBusMessage("reject"),
               ServiceBusMessage("accept"))
    dead = await eventually(lambda: receive(connection, "sample-manual", dead_letters=True))
    assert [(str(m), m.dead_letter_reason, m.dead_letter_error_description) for m in dead] == [
        ("reject", "Rejected", "sample rejects it")]
    assert await receive(connection, "sample-manual") == []


async def test_message_actions_abandon_redelivers_the_message(servicebus, start_host,
                                                              azurite):
    connection = servicebus.connection_string
    await start_host("sb_self_settled", SAMPLE_SERVICEBUS=connection)
    message_id = str(uuid.uuid4())
    await send(connection, "sample-manual", ServiceBusMessage("retry", message_id=message_id))
    deliveries = await manual_observations(azurite, message_id, 2)
    assert [d["message_id"] for d in deliveries] == [message_id, message_id]
    assert len({d["lock_token"] for d in deliveries}) == 2
    assert await receive(connection, "sample-manual") == []
    assert await receive(connection, "sample-manual", dead_letters=True) == []


async def test_settling_a_message_twice_fails_with_the_hosts_reason(servicebus, start_host,
                                                                    azurite):
    connection = servicebus.connection_string
    await start_host("sb_self_settled", SAMPLE_SERVICEBUS=connection)
    message_id = str(uuid.uuid4())
    await send(connection, "sample-manual", ServiceBusMessage("twice", message_id=message_id))
    (observed,) = await manual_observations(azurite, message_id)
    assert "[complete]" in observed["settlement_error"]
    assert "already settled" in observed["settlement_error"]
    assert await receive(connection, "sample-manual") == []


async def test_settling_after_the_lock_expired_is_logged_and_the_listener_goes_on(
        servicebus, start_host, tmp_path, caplog):
    connection = servicebus.connection_string
    host = await start_host("sb_held", SAMPLE_SERVICEBUS=connection)
    release = tmp_path / "release"
    await send(connection, "sample-held", ServiceBusMessage(str(release)))
    await eventually(release.with_suffix(".started").exists)
    assert servicebus.faults.expire_locks("sample-held") == 1
    release.touch()
    await eventually(lambda: any("could not complete message" in m for m in caplog.messages))
    # The expired delivery came back, was handled again and completed.
    await eventually(lambda: len([r for r in host.invoker.records if r.succeeded]) >= 2)
    assert await receive(connection, "sample-held") == []
    assert not any("never retrieved" in m for m in caplog.messages)


async def test_listener_keeps_receiving_after_its_connections_are_dropped(
        servicebus, start_host, caplog):
    connection = servicebus.connection_string
    host = await start_host("sb_order_received", SAMPLE_SERVICEBUS=connection)
    await send(connection, "sample-orders", ServiceBusMessage("before"))
    await eventually(lambda: len(host.invoker.records) == 1)
    assert servicebus.faults.drop_connections() >= 1
    await send(connection, "sample-orders", ServiceBusMessage("after"))
    await eventually(lambda: len(host.invoker.records) == 2, timeout=60)
    replies = await eventually(lambda: receive(connection, "sample-replies"))
    assert sorted(str(r) for r in replies) == ["handled:after", "handled:before"]


async def hold(servicebus, tmp_path, count: int) -> list:
    """Send `count` messages to sb_held and wait until its invocations hold them all."""
    releases = [tmp_path / f"release-{n}" for n in range(count)]
    await send(servicebus.connection_string, "sample-held",
               *[ServiceBusMessage(str(release)) for release in releases])
    await eventually(lambda: all(r.with_suffix(".started").exists() for r in releases))
    return releases


def settlement_warnings(caplog) -> list[str]:
    return [m for m in caplog.messages if "could not complete message" in m]


async def test_invocations_in_flight_when_the_connection_drops_finish_and_lose_their_locks(
        servicebus, start_host, tmp_path, caplog):
    connection = servicebus.connection_string
    host = await start_host("sb_held", SAMPLE_SERVICEBUS=connection)
    releases = await hold(servicebus, tmp_path, 3)  # maxConcurrentCalls 4: still receiving
    assert servicebus.faults.drop_connections() >= 1
    await eventually(lambda: any("reconnecting" in m for m in caplog.messages))
    for release in releases:
        release.touch()
    # As on Azure: each function runs to completion, and its settlement fails with lock lost
    # (the link that delivered it is gone).
    await eventually(lambda: len(settlement_warnings(caplog)) == 3)
    assert all("MessageLockLostError" in m for m in settlement_warnings(caplog))
    assert len([r for r in host.invoker.records if r.succeeded]) == 3
    # The service redelivers them when their locks run out; expire them now, not in 30 s.
    assert servicebus.faults.expire_locks("sample-held") == 3
    await eventually(lambda: len([r for r in host.invoker.records if r.succeeded]) == 6)
    assert await receive(connection, "sample-held") == []
    assert not any("Handler shutting down" in m or "never retrieved" in m
                   for m in caplog.messages)


async def test_settlements_that_meet_a_dropped_connection_together_fail_with_lock_lost(
        servicebus, start_host, tmp_path, caplog):
    connection = servicebus.connection_string
    host = await start_host("sb_held", SAMPLE_SERVICEBUS=connection)
    # Every slot taken (maxConcurrentCalls 4): no receive is pending to notice the drop, so
    # the four settlements meet it at once.
    releases = await hold(servicebus, tmp_path, 4)
    assert servicebus.faults.drop_connections() >= 1
    for release in releases:
        release.touch()
    await eventually(lambda: len(settlement_warnings(caplog)) == 4)
    assert all("MessageLockLostError" in m for m in settlement_warnings(caplog))
    assert not any("Handler shutting down" in m for m in caplog.messages)
    # The listener goes on: the four come back once their locks are gone, and are completed.
    assert servicebus.faults.expire_locks("sample-held") == 4
    await eventually(lambda: len([r for r in host.invoker.records if r.succeeded]) == 8)
    assert await receive(connection, "sample-held") == []


async def test_a_session_invocation_in_flight_when_the_connection_drops_runs_to_its_end(
        servicebus, start_host, tmp_path, caplog):
    connection = servicebus.connection_string
    host = await start_host("sb_session_held", SAMPLE_SERVICEBUS=connection)
    release = tmp_path / "release"
    await send(connection, "sample-held-sessions",
               ServiceBusMessage(str(release), session_id="s1"))
    await eventually(release.with_suffix(".started").exists)
    # The other session receivers are waiting for a session: they notice the drop at once.
    assert servicebus.faults.drop_connections() >= 1
    await eventually(lambda: any("reconnecting" in m for m in caplog.messages))
    release.touch()
    await eventually(lambda: len(host.invoker.records) >= 1)
    assert [r.succeeded for r in host.invoker.records] == [True]
    # Its session lock went with the link; once it runs out the message comes back.
    servicebus.faults.expire_locks("sample-held-sessions")
    await eventually(lambda: len([r for r in host.invoker.records if r.succeeded]) == 2)
    await eventually(lambda: len(servicebus.servicebus.broker.entity("sample-held-sessions"))
                     == 0)


async def test_topic_subscription_trigger_receives_what_the_topic_got(servicebus, start_host,
                                                                      azurite):
    connection = servicebus.connection_string
    await start_host("sb_audit_received", SAMPLE_SERVICEBUS=connection)
    marker = f"audit-{uuid.uuid4()}"
    await send_to_topic(connection, "sample-events", ServiceBusMessage(marker, subject="login"))

    async def audited():
        seen = await read_json_blobs(azurite.connection_string, "observations", "audit/")
        return [s for s in seen if s["body"] == marker]

    assert await eventually(audited) == [{"body": marker, "subject": "login"}]


async def test_no_more_than_max_concurrent_calls_run_at_once(servicebus, start_host, azurite):
    connection = servicebus.connection_string
    await start_host("sb_slow_received", SAMPLE_SERVICEBUS=connection)
    batch = f"slow-{uuid.uuid4()}"
    await send(connection, "sample-slow", *[ServiceBusMessage(batch) for _ in range(12)])

    async def all_handled():
        seen = await read_json_blobs(azurite.connection_string, "observations", "slow/")
        mine = [s for s in seen if s["body"] == batch]
        return mine if len(mine) == 12 else None

    peak = max(s["in_flight"] for s in await eventually(all_handled))
    assert 2 <= peak <= 4  # host.json maxConcurrentCalls is 4


async def send_to_topic(connection: str, topic: str, *messages: ServiceBusMessage) -> None:
    async with ServiceBusClient.from_connection_string(connection) as client, \
            client.get_topic_sender(topic) as sender:
        await sender.send_messages(list(messages))


async def test_cardinality_many_hands_the_function_a_batch_and_completes_it_all(
        servicebus, start_host, azurite):
    connection = servicebus.connection_string
    await start_host("sb_batch_received", SAMPLE_SERVICEBUS=connection)
    # Unique bodies: Azurite is shared, and other tests' batches/ observations stay in it.
    run = uuid.uuid4().hex[:8]
    bodies = [f"line-{run}-{n}" for n in range(5)]
    await send(connection, "sample-batches", *[ServiceBusMessage(b) for b in bodies])

    async def handled():
        batches = await read_json_blobs(azurite.connection_string, "observations", "batches/")
        received = sorted(body for batch in batches for body in batch if run in body)
        return received if len(received) >= len(bodies) else None

    assert await eventually(handled) == bodies
    assert await receive(connection, "sample-batches") == []


async def test_listener_reconnects_when_service_bus_comes_up_after_the_host(start_host,
                                                                            azurite, caplog):
    port = free_port()
    late_connection = connection_string("127.0.0.1", port)
    host = await start_host("sb_order_received", SAMPLE_SERVICEBUS=late_connection)
    await eventually(lambda: any("reconnecting" in m for m in caplog.messages), timeout=60)
    with DevStack([SAMPLE_APP / "devstack-entities.json"], port=port):
        await send(late_connection, "sample-orders", ServiceBusMessage("late order"))
        await eventually(lambda: any(r.succeeded for r in host.invoker.records), timeout=60)
        await host.stop()  # before its Service Bus goes away
