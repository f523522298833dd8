"""Event Hubs in devstack, spoken to by the unmodified azure-eventhub SDK (sync clients).

Each test starts its own in-memory server on a free port with Microsoft's emulator sample
config (hub `eh1`, partitions 0 and 1, consumer groups `$default` and `cg1`) and the app's
`infra/entities/eventhubs.json` (hub `fraud-payments`, 4 partitions).
"""

from __future__ import annotations

import datetime
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest
from azure.eventhub import EventData, EventHubConsumerClient, EventHubProducerClient
from azure.eventhub.exceptions import ConnectionLostError, EventHubError

from devstack.amqp.server import AmqpServer, ServerThread
from devstack.eventhubs import EventHubsNode, create_node, partition_index_for_key

REPO = Path(__file__).resolve().parents[2]
# The content of Microsoft's Event Hubs emulator sample Config.json (kept here so the tests
# run where /work/shared is absent; test_eventhubs_model.py loads the file itself).
SAMPLE_CONFIG: dict[str, Any] = {
    "UserConfig": {
        "NamespaceConfig": [
            {
                "Type": "EventHub",
                "Name": "emulatorNs1",
                "Entities": [
                    {"Name": "eh1", "PartitionCount": 2, "ConsumerGroups": [{"Name": "cg1"}]}
                ],
            }
        ],
        "LoggingConfig": {"Type": "File"},
    }
}
APP_CONFIG = REPO / "infra" / "entities" / "eventhubs.json"
HUB = "eh1"
DEADLINE = 30.0


@dataclass
class EventHubsServer:
    node: EventHubsNode
    running: ServerThread

    @property
    def connection_string(self) -> str:
        return (
            f"Endpoint=sb://127.0.0.1:{self.running.port};SharedAccessKeyName="
            "RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;"
        )

    def readers(self, hub: str, partition_id: str, group: str = "$default") -> int:
        return self.running.call(lambda: self.node.namespace.reader_count(hub, group, partition_id))


class Endpoint(Protocol):
    """Anything serving Event Hubs: this module's server, or a DevStack."""

    @property
    def connection_string(self) -> str: ...


def emulator_configs() -> list[dict[str, Any]]:
    return [SAMPLE_CONFIG, json.loads(APP_CONFIG.read_text())]


@pytest.fixture
def eventhubs() -> Iterator[EventHubsServer]:
    node = create_node(emulator_configs())
    with ServerThread(AmqpServer([node], port=0)) as running:
        yield EventHubsServer(node, running)


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def producer(server: EventHubsServer, hub: str = HUB, **kwargs: Any) -> EventHubProducerClient:
    return EventHubProducerClient.from_connection_string(
        server.connection_string, eventhub_name=hub, **kwargs
    )


def send(server: EventHubsServer, events: list[EventData], hub: str = HUB, **kwargs: Any) -> None:
    with producer(server, hub) as client:
        batch = client.create_batch(**kwargs)
        for event in events:
            batch.add(event)
        client.send_batch(batch)


class Receiver:
    """`EventHubConsumerClient.receive` on a thread, collecting events and errors."""

    def __init__(
        self,
        server: Endpoint,
        hub: str = HUB,
        *,
        checkpoint: bool = False,
        **receive_kwargs: Any,
    ) -> None:
        self.events: list[tuple[str, EventData]] = []
        self.errors: list[Exception] = []
        self.owned: set[str] = set()
        self.namespace = ""  # as the SDK names it in checkpoints and ownership records
        self._checkpoint = checkpoint
        self.client = EventHubConsumerClient.from_connection_string(
            server.connection_string,
            consumer_group=receive_kwargs.pop("consumer_group", "$default"),
            eventhub_name=hub,
            **receive_kwargs.pop("client_kwargs", {}),
        )
        self._thread = threading.Thread(
            target=self.client.receive,
            kwargs={
                "on_event": self._on_event,
                "on_error": self._on_error,
                "on_partition_initialize": self._on_partition_initialize,
                "on_partition_close": self._on_partition_close,
                **receive_kwargs,
            },
            daemon=True,
        )
        self._thread.start()

    def _on_event(self, context: Any, event: EventData | None) -> None:
        if event is not None:
            self.events.append((context.partition_id, event))
            if self._checkpoint:
                context.update_checkpoint(event)

    def _on_partition_initialize(self, context: Any) -> None:
        self.namespace = context.fully_qualified_namespace
        self.owned.add(context.partition_id)

    def _on_partition_close(self, context: Any, reason: Any) -> None:
        self.owned.discard(context.partition_id)

    def _on_error(self, context: Any, error: Exception) -> None:
        self.errors.append(error)

    def wait_for(self, count: int) -> list[EventData]:
        wait_until(lambda: len(self.events) >= count, f"{count} events")
        return [event for _, event in self.events]

    def close(self) -> None:
        self.client.close()
        self._thread.join(timeout=DEADLINE)


def receive(server: EventHubsServer, count: int, **kwargs: Any) -> list[EventData]:
    receiver = Receiver(server, **kwargs)
    try:
        return receiver.wait_for(count)
    finally:
        receiver.close()


def bodies(events: list[EventData]) -> list[str]:
    return [event.body_as_str() for event in events]


def test_hub_properties_list_the_configured_partitions(eventhubs: EventHubsServer) -> None:
    with producer(eventhubs, "fraud-payments") as client:
        properties = client.get_eventhub_properties()
        assert properties["eventhub_name"] == "fraud-payments"
        assert properties["partition_ids"] == ["0", "1", "2", "3"]
        assert isinstance(properties["created_at"], datetime.datetime)


def test_partition_properties_track_the_last_enqueued_event(eventhubs: EventHubsServer) -> None:
    with producer(eventhubs) as client:
        assert client.get_partition_properties("1")["is_empty"] is True
    send(eventhubs, [EventData("a"), EventData("b")], partition_id="1")
    with producer(eventhubs) as client:
        props = client.get_partition_properties("1")
    assert props["is_empty"] is False
    assert (props["beginning_sequence_number"], props["last_enqueued_sequence_number"]) == (0, 1)
    assert isinstance(props["last_enqueued_offset"], str)
    assert props["last_enqueued_time_utc"].year >= 2024


def test_unknown_hub_is_reported_by_the_sdk(eventhubs: EventHubsServer) -> None:
    client = producer(eventhubs, "no-such-hub", retry_total=0)
    with client, pytest.raises(EventHubError, match="no-such-hub"):
        client.get_eventhub_properties()


def test_send_by_partition_id_lands_on_that_partition(eventhubs: EventHubsServer) -> None:
    send(eventhubs, [EventData("to one")], partition_id="1")
    received = receive(eventhubs, 1, partition_id="1", starting_position="-1")
    assert bodies(received) == ["to one"]
    assert received[0].sequence_number == 0


def test_partition_key_lands_where_azure_puts_it(eventhubs: EventHubsServer) -> None:
    keys = [f"card-{n}" for n in range(12)]
    with producer(eventhubs, "fraud-payments") as client:
        for key in keys:
            client.send_batch([EventData(key)], partition_key=key)
    receiver = Receiver(eventhubs, hub="fraud-payments", starting_position="-1")
    try:
        receiver.wait_for(len(keys))
        landed = {event.body_as_str(): pid for pid, event in receiver.events}
        keyed = {event.body_as_str(): event.partition_key for _, event in receiver.events}
    finally:
        receiver.close()
    assert landed == {key: str(partition_index_for_key(key, 4)) for key in keys}
    assert len(set(landed.values())) > 1, "twelve keys should not all hash to one partition"
    assert keyed == {key: key.encode() for key in keys}


def test_batches_without_partition_rotate_over_all_partitions(eventhubs: EventHubsServer) -> None:
    for n in range(4):
        send(eventhubs, [EventData(f"batch {n}")], hub="fraud-payments")
    receiver = Receiver(eventhubs, hub="fraud-payments", starting_position="-1")
    try:
        receiver.wait_for(4)
        partitions = sorted(pid for pid, _ in receiver.events)
    finally:
        receiver.close()
    assert partitions == ["0", "1", "2", "3"]


def test_a_batch_arrives_as_its_events_in_order(eventhubs: EventHubsServer) -> None:
    send(eventhubs, [EventData(f"e{n}") for n in range(50)], partition_id="0")
    received = receive(eventhubs, 50, partition_id="0", starting_position="-1")
    assert bodies(received) == [f"e{n}" for n in range(50)]
    assert [event.sequence_number for event in received] == list(range(50))
    offsets = [int(event.offset) for event in received]
    assert offsets == sorted(set(offsets))


def test_event_properties_round_trip_exactly(eventhubs: EventHubsServer) -> None:
    event = EventData(b"\x00\x01binary body\xff")
    event.properties = {"kind": "payment", "amount": 1234, "ratio": 0.25, "flag": True}
    event.content_type = "application/json"
    event.correlation_id = "corr-1"
    event.message_id = str(uuid.uuid4())
    send(eventhubs, [event], partition_id="0")
    (received,) = receive(eventhubs, 1, partition_id="0", starting_position="-1")
    assert b"".join(received.body) == b"\x00\x01binary body\xff"
    assert received.properties == {
        b"kind": b"payment",
        b"amount": 1234,
        b"ratio": 0.25,
        b"flag": True,
    }
    assert (received.content_type, received.correlation_id, received.message_id) == (
        "application/json",
        "corr-1",
        event.message_id,
    )


def test_events_carry_offset_sequence_number_and_enqueued_time(
    eventhubs: EventHubsServer,
) -> None:
    before = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=1)
    send(eventhubs, [EventData("x"), EventData("y")], partition_id="0")
    first, second = receive(eventhubs, 2, partition_id="0", starting_position="-1")
    assert (first.offset, first.sequence_number) == ("0", 0)
    assert isinstance(second.offset, str) and int(second.offset) > 0
    assert second.sequence_number == 1
    assert first.enqueued_time is not None and first.enqueued_time >= before


@pytest.fixture
def five_events(eventhubs: EventHubsServer) -> list[EventData]:
    send(eventhubs, [EventData(f"e{n}") for n in range(5)], partition_id="0")
    return receive(eventhubs, 5, partition_id="0", starting_position="-1")


@pytest.mark.parametrize(
    ("position", "inclusive", "expected"),
    [
        (("offset", 2), False, ["e3", "e4"]),
        (("offset", 2), True, ["e2", "e3", "e4"]),
        (("sequence_number", 1), False, ["e2", "e3", "e4"]),
        (("sequence_number", 1), True, ["e1", "e2", "e3", "e4"]),
    ],
)
def test_receive_starts_after_or_at_an_offset_or_sequence_number(
    eventhubs: EventHubsServer,
    five_events: list[EventData],
    position: tuple[str, int],
    inclusive: bool,
    expected: list[str],
) -> None:
    field, index = position
    start = five_events[index].offset if field == "offset" else five_events[index].sequence_number
    received = receive(
        eventhubs,
        len(expected),
        partition_id="0",
        starting_position=start,
        starting_position_inclusive=inclusive,
    )
    assert bodies(received) == expected


def test_receive_from_an_enqueued_time_skips_older_events(eventhubs: EventHubsServer) -> None:
    send(eventhubs, [EventData("old")], partition_id="0")
    (old,) = receive(eventhubs, 1, partition_id="0", starting_position="-1")
    old_time = old.enqueued_time
    assert old_time is not None
    # Enqueued times have millisecond resolution: let the clock move past the old one's.
    later = old_time + datetime.timedelta(milliseconds=2)
    wait_until(lambda: datetime.datetime.now(datetime.UTC) > later, "the clock to move on")
    send(eventhubs, [EventData("new")], partition_id="0")
    received = receive(eventhubs, 1, partition_id="0", starting_position=old_time)
    assert bodies(received) == ["new"]


def test_receive_from_latest_gets_only_new_events(eventhubs: EventHubsServer) -> None:
    send(eventhubs, [EventData("before")], partition_id="0")
    receiver = Receiver(eventhubs, partition_id="0", starting_position="@latest")
    try:
        wait_until(lambda: eventhubs.readers(HUB, "0") == 1, "the receiver to attach")
        send(eventhubs, [EventData("after")], partition_id="0")
        assert bodies(receiver.wait_for(1)) == ["after"]
    finally:
        receiver.close()


def test_higher_owner_level_disconnects_the_lower_receiver(eventhubs: EventHubsServer) -> None:
    low = Receiver(eventhubs, partition_id="0", owner_level=1, starting_position="-1")
    high: Receiver | None = None
    try:
        wait_until(lambda: eventhubs.readers(HUB, "0") == 1, "the first receiver")
        high = Receiver(eventhubs, partition_id="0", owner_level=2, starting_position="-1")
        wait_until(lambda: bool(low.errors), "the lower receiver to be disconnected")
        assert isinstance(low.errors[0], ConnectionLostError)
        assert "owner level 2" in str(low.errors[0])
        send(eventhubs, [EventData("for the owner")], partition_id="0")
        assert bodies(high.wait_for(1)) == ["for the owner"]
    finally:
        low.close()
        if high is not None:
            high.close()


def test_lower_owner_level_is_refused(eventhubs: EventHubsServer) -> None:
    high = Receiver(eventhubs, partition_id="0", owner_level=5, starting_position="-1")
    try:
        wait_until(lambda: eventhubs.readers(HUB, "0") == 1, "the exclusive receiver")
        low = Receiver(eventhubs, partition_id="0", owner_level=4, starting_position="-1")
        try:
            wait_until(lambda: bool(low.errors), "the lower receiver to be refused")
            assert isinstance(low.errors[0], ConnectionLostError)
            assert "owner level 5 is active" in str(low.errors[0])
            assert high.errors == []
        finally:
            low.close()
    finally:
        high.close()


def test_partition_logs_persist_across_a_restart_with_a_data_dir(tmp_path: Path) -> None:
    def serve() -> Any:
        node = create_node(emulator_configs(), data_dir=tmp_path)
        return node, ServerThread(AmqpServer([node], port=0))

    node, thread = serve()
    with thread as running:
        send(
            EventHubsServer(node, running),
            [EventData("kept 0"), EventData("kept 1")],
            partition_id="1",
        )
    node.close()
    node, thread = serve()
    with thread as running:
        restarted = EventHubsServer(node, running)
        send(restarted, [EventData("after restart")], partition_id="1")
        received = receive(restarted, 3, partition_id="1", starting_position="-1")
    node.close()
    assert bodies(received) == ["kept 0", "kept 1", "after restart"]
    assert [event.sequence_number for event in received] == [0, 1, 2]


def test_a_receiver_resumes_after_a_dropped_connection_without_loss_or_duplicates(
    eventhubs: EventHubsServer,
) -> None:
    receiver = Receiver(eventhubs, partition_id="0", starting_position="-1")
    try:
        send(eventhubs, [EventData(f"before {n}") for n in range(3)], partition_id="0")
        receiver.wait_for(3)
        dropped = eventhubs.running.call(eventhubs.running.server.drop_connections)
        assert dropped >= 1
        send(eventhubs, [EventData(f"after {n}") for n in range(3)], partition_id="0")
        received = receiver.wait_for(6)
    finally:
        receiver.close()
    assert bodies(received) == [f"before {n}" for n in range(3)] + [f"after {n}" for n in range(3)]


def test_receiving_from_an_unknown_consumer_group_reports_it(eventhubs: EventHubsServer) -> None:
    receiver = Receiver(
        eventhubs,
        consumer_group="nobody",
        client_kwargs={"retry_total": 0},
        partition_id="0",
        starting_position="-1",
    )
    try:
        wait_until(lambda: bool(receiver.errors), "the receive error")
    finally:
        receiver.close()
    assert "consumer group 'nobody' does not exist" in str(receiver.errors[0])


def test_the_buffered_producer_delivers_keyed_events(eventhubs: EventHubsServer) -> None:
    sent: dict[str, int] = {}
    errors: list[Exception] = []
    client = EventHubProducerClient.from_connection_string(
        eventhubs.connection_string,
        eventhub_name="fraud-payments",
        buffered_mode=True,
        max_wait_time=0.2,
        on_success=lambda events, pid: sent.update({pid: sent.get(pid, 0) + len(events)}),
        on_error=lambda events, pid, error: errors.append(error),
    )
    with client:
        for n in range(20):
            client.send_event(EventData(f"b{n}"), partition_key=f"card-{n}")
        client.flush()
    assert errors == []
    received = Receiver(eventhubs, "fraud-payments", starting_position="-1")
    try:
        received.wait_for(20)
        per_partition: dict[str, int] = {}
        for pid, _ in received.events:
            per_partition[pid] = per_partition.get(pid, 0) + 1
    finally:
        received.close()
    assert per_partition == sent
    assert sum(sent.values()) == 20


def test_tracked_receivers_see_the_last_enqueued_event(eventhubs: EventHubsServer) -> None:
    send(eventhubs, [EventData(f"e{n}") for n in range(3)], partition_id="0")
    last_seen: list[dict[str, Any] | None] = []
    client = EventHubConsumerClient.from_connection_string(
        eventhubs.connection_string, consumer_group="$default", eventhub_name=HUB
    )

    def on_event(context: Any, event: EventData | None) -> None:
        last_seen.append(context.last_enqueued_event_properties)

    worker = threading.Thread(
        target=client.receive,
        kwargs={
            "on_event": on_event,
            "partition_id": "0",
            "starting_position": "-1",
            "track_last_enqueued_event_properties": True,
        },
        daemon=True,
    )
    worker.start()
    try:
        wait_until(lambda: len(last_seen) >= 3, "three events")
    finally:
        client.close()
        worker.join(DEADLINE)
    with producer(eventhubs) as client_for_properties:
        partition = client_for_properties.get_partition_properties("0")
    first = last_seen[0]
    assert first is not None
    assert first["sequence_number"] == 2
    assert first["offset"] == partition["last_enqueued_offset"]
    assert first["enqueued_time"] == partition["last_enqueued_time_utc"]
    assert first["retrieval_time"] >= first["enqueued_time"]


def test_untracked_receivers_get_no_runtime_metric(eventhubs: EventHubsServer) -> None:
    send(eventhubs, [EventData("plain")], partition_id="0")
    (event,) = receive(eventhubs, 1, partition_id="0", starting_position="-1")
    assert event.raw_amqp_message.delivery_annotations in (None, {})


def test_hub_names_are_case_insensitive_on_the_wire(eventhubs: EventHubsServer) -> None:
    send(eventhubs, [EventData("mixed case")], hub="Fraud-Payments", partition_id="3")
    received = receive(eventhubs, 1, hub="FRAUD-PAYMENTS", partition_id="3", starting_position="-1")
    assert bodies(received) == ["mixed case"]


def test_an_event_larger_than_a_frame_round_trips(eventhubs: EventHubsServer) -> None:
    body = bytes(range(256)) * 3000  # 768 KB: several frames each way
    with producer(eventhubs) as client:
        client.send_event(EventData(body), partition_id="0")
    (received,) = receive(eventhubs, 1, partition_id="0", starting_position="-1")
    assert b"".join(received.body) == body


def test_properties_of_a_missing_partition_are_not_found(eventhubs: EventHubsServer) -> None:
    with producer(eventhubs, retry_total=0) as client, pytest.raises(EventHubError, match="'9'"):
        client.get_partition_properties("9")
