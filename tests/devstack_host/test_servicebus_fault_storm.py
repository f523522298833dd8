"""Every Service Bus listener of the host outlives a storm of every broker fault."""

from __future__ import annotations

import uuid
from typing import Any

from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient

from tests.devstack_host.helpers import eventually, read_json_blobs

# function -> (entity it listens on, observations prefix it writes)
LISTENERS = {
    "sb_order_received": ("sample-orders", "sb/"),
    "sb_session_received": ("sample-sessions", "sessions/"),
    "sb_self_settled": ("sample-manual", "manual/"),
    "sb_audit_received": ("sample-events", "audit/"),
    "sb_batch_received": ("sample-batches", "batches/"),
}


async def send_to_every_listener(connection: str, body: str) -> None:
    async with ServiceBusClient.from_connection_string(connection) as client:
        for entity, _ in LISTENERS.values():
            sender = (client.get_topic_sender(entity) if entity == "sample-events"
                      else client.get_queue_sender(entity))
            async with sender:
                await sender.send_messages(ServiceBusMessage(
                    body, session_id=f"s-{body}" if entity == "sample-sessions" else None))


def bodies(observations: list[Any]) -> set[str]:
    """The bodies a listener saw (a batch function writes a list of them)."""
    seen: set[str] = set()
    for observation in observations:
        for item in observation if isinstance(observation, list) else [observation]:
            seen.add(item["body"] if isinstance(item, dict) else item)
    return seen


async def listeners_that_saw(azurite, body: str) -> set[str]:
    saw = set()
    for function, (_, prefix) in LISTENERS.items():
        if body in bodies(await read_json_blobs(azurite.connection_string, "observations",
                                                prefix)):
            saw.add(function)
    return saw


async def test_every_listener_still_receives_after_a_storm_of_every_broker_fault(
        servicebus, start_host, azurite, caplog):
    connection = servicebus.connection_string
    await start_host(*LISTENERS, SAMPLE_SERVICEBUS=connection)
    faults = servicebus.faults
    faults.deliver_twice(times=5)
    faults.duplicate_sends(times=5)
    faults.server_busy(times=3)  # sb_order_received's reply: the invocation fails, redelivery
    faults.malformed_deliveries(times=4)  # the SDK raises ValueError, not a ServiceBusError
    faults.add_latency(0.02)
    storm = f"storm-{uuid.uuid4().hex[:8]}"
    await send_to_every_listener(connection, storm)
    await eventually(lambda: any("unavailable (ValueError" in m for m in caplog.messages))
    assert faults.drop_connections() >= len(LISTENERS)
    await eventually(lambda: sum("reconnecting" in m for m in caplog.messages)
                     >= len(LISTENERS))
    faults.expire_locks()
    faults.drop_connections()  # whichever listeners are back already
    faults.clear()

    after = f"after-{uuid.uuid4().hex[:8]}"
    await send_to_every_listener(connection, after)

    async def everyone_saw_it() -> bool:
        return await listeners_that_saw(azurite, after) == set(LISTENERS)

    await eventually(everyone_saw_it, timeout=60)
    assert not any("never retrieved" in m or "stopped" in m for m in caplog.messages)
