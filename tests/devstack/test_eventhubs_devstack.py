"""Event Hubs inside `DevStack`: registered from the emulator Config.json, and its faults."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.eventhub import EventData, EventHubProducerClient
from azure.eventhub.exceptions import EventHubError

from devstack.server import DevStack
from tests.devstack.test_eventhubs_sdk import REPO, SAMPLE_CONFIG, Receiver, bodies

HUB = "eh1"


@pytest.fixture
def stack() -> Iterator[DevStack]:
    with DevStack([SAMPLE_CONFIG], port=0) as running:
        yield running


def producer(stack: DevStack) -> EventHubProducerClient:
    return EventHubProducerClient.from_connection_string(stack.connection_string, eventhub_name=HUB)


def test_devstack_serves_the_hubs_of_an_emulator_config(stack: DevStack) -> None:
    with producer(stack) as client:
        assert client.get_partition_ids() == ["0", "1"]
        client.send_batch([EventData("through devstack")], partition_id="0")
    receiver = Receiver(stack, HUB, partition_id="0", starting_position="-1")
    try:
        assert bodies(receiver.wait_for(1)) == ["through devstack"]
    finally:
        receiver.close()


def test_a_producer_recovers_from_dropped_connections(stack: DevStack) -> None:
    with producer(stack) as client:
        client.send_batch([EventData("first")], partition_id="1")
        assert stack.faults.drop_connections() >= 1
        client.send_batch([EventData("second")], partition_id="1")
        assert client.get_partition_properties("1")["last_enqueued_sequence_number"] == 1


def test_events_flow_under_added_latency(stack: DevStack) -> None:
    stack.faults.add_latency(0.05)
    with producer(stack) as client:
        client.send_batch([EventData(f"slow {n}") for n in range(3)], partition_id="0")
    receiver = Receiver(stack, HUB, partition_id="0", starting_position="-1")
    try:
        assert bodies(receiver.wait_for(3)) == ["slow 0", "slow 1", "slow 2"]
    finally:
        receiver.close()


def test_server_busy_fault_refuses_sends_to_a_hub(stack: DevStack) -> None:
    stack.faults.server_busy(HUB, times=1)
    client = EventHubProducerClient.from_connection_string(
        stack.connection_string, eventhub_name=HUB, retry_total=0
    )
    with client:
        with pytest.raises(EventHubError, match="throttled"):
            client.send_batch([EventData("refused")], partition_id="0")
        client.send_batch([EventData("accepted")], partition_id="0")
        assert client.get_partition_properties("0")["last_enqueued_sequence_number"] == 0


def test_events_survive_a_devstack_restart_with_a_data_dir(tmp_path: Path) -> None:
    with (
        DevStack([SAMPLE_CONFIG], port=0, data_dir=tmp_path) as first,
        producer(first) as client,
    ):
        client.send_batch([EventData("kept")], partition_id="1")
    with DevStack([SAMPLE_CONFIG], port=0, data_dir=tmp_path) as second:
        receiver = Receiver(second, HUB, partition_id="1", starting_position="-1")
        try:
            assert bodies(receiver.wait_for(1)) == ["kept"]
        finally:
            receiver.close()


def test_a_killed_devstack_keeps_every_acknowledged_event(tmp_path: Path) -> None:
    config = tmp_path / "Config.json"
    config.write_text(json.dumps(SAMPLE_CONFIG))
    data_dir = tmp_path / "data"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devstack",
            "up",
            "--port",
            "0",
            "--data",
            str(data_dir),
            "--config",
            str(config),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert server.stdout is not None
        connection_string = next(
            line.strip() for line in server.stdout if line.startswith("Endpoint=")
        )
        client = EventHubProducerClient.from_connection_string(connection_string, eventhub_name=HUB)
        with client:
            client.send_batch([EventData("acknowledged")], partition_id="0")
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait(10)
    with DevStack([SAMPLE_CONFIG], port=0, data_dir=data_dir) as restarted:
        receiver = Receiver(restarted, HUB, partition_id="0", starting_position="-1")
        try:
            assert bodies(receiver.wait_for(1)) == ["acknowledged"]
        finally:
            receiver.close()
