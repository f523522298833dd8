"""Config files in the shape of Microsoft's emulator Config.json, and the CLI around them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from azure.eventhub import EventHubProducerClient
from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusReceiveMode

from devstack.config import ConfigError, load_configs, parse_duration
from devstack.server import DevStack, connection_string

from .conftest import queue, servicebus_config, wait_until

REFERENCE = Path("/work/shared/reference")
REPO = Path(__file__).resolve().parents[2]
REFERENCE_SB = REFERENCE / "servicebus-emulator" / "Config.json"
REFERENCE_EH = REFERENCE / "eventhubs-emulator" / "Config.json"


@pytest.mark.skipif(not REFERENCE_SB.exists(), reason="Microsoft's sample configs not present")
def test_microsofts_sample_configs_load_unchanged_comments_and_all():
    loaded = load_configs([REFERENCE_SB, REFERENCE_EH])
    (namespace,) = loaded.servicebus
    assert [q.name for q in namespace.queues] == ["queue.1"]
    (topic,) = namespace.topics
    assert [s.name for s in topic.subscriptions] == [f"subscription.{i}" for i in range(1, 5)]
    assert topic.subscriptions[3].rules[0].action == "SET sys.To = 'Entity'"
    assert len(loaded.eventhubs) == 1


def test_the_apps_entity_configs_load():
    loaded = load_configs([REPO / "infra/entities/servicebus.json",
                           REPO / "infra/entities/eventhubs.json"])
    assert loaded.servicebus[0].queues
    assert loaded.eventhubs


def test_an_invalid_value_is_refused_with_the_field_path(tmp_path):
    config = servicebus_config([{"Name": "a"}, {"Name": "b"},
                                {"Name": "c", "Properties": {"MaxDeliveryCount": 0}}])
    path = tmp_path / "Config.json"
    path.write_text(json.dumps(config))
    with pytest.raises(ConfigError) as error:
        load_configs([path])
    assert "UserConfig.Namespaces[0].Queues[2].Properties.MaxDeliveryCount: " \
        "0 is less than the minimum 1" in str(error.value)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"LockDuration": "1 minute"}, "Queues[0].Properties.LockDuration"),
        ({"RequiresSession": "yes"}, "Queues[0].Properties.RequiresSession"),
        ({"MaxDeliveryCount": 11}, "Queues[0].Properties.MaxDeliveryCount"),
        ({"ForwardTo": "-bad-"}, "Queues[0].Properties.ForwardTo"),
    ],
)
def test_each_invalid_queue_property_is_named(change, field):
    config = servicebus_config([{"Name": "q", "Properties": change}])
    with pytest.raises(ConfigError, match=field.replace("[", r"\[").replace("]", r"\]")):
        load_configs([config])


def test_a_bad_sql_filter_is_refused_at_load():
    config = servicebus_config([], [{"Name": "t", "Subscriptions": [{"Name": "s", "Rules": [
        {"Name": "r", "Properties": {"FilterType": "Sql",
                                     "SqlFilter": {"SqlExpression": "a = = 1"}}}]}]}])
    with pytest.raises(ConfigError, match=r"Rules\[0\].Properties.SqlFilter.SqlExpression"):
        load_configs([config])


def test_a_document_of_neither_shape_is_refused():
    with pytest.raises(ConfigError, match="neither"):
        load_configs([{"UserConfig": {}}])


BOTH_SHAPES = {"UserConfig": {
    **servicebus_config([queue("jobs")])["UserConfig"],
    "NamespaceConfig": [{"Type": "EventHub", "Name": "ns",
                         "Entities": [{"Name": "hub", "PartitionCount": 2}]}],
}}


def test_one_file_with_both_shapes_serves_its_queues_and_its_event_hubs(tmp_path):
    path = tmp_path / "Config.json"
    path.write_text(json.dumps(BOTH_SHAPES))
    with DevStack([path], port=0) as stack:
        with ServiceBusClient.from_connection_string(stack.connection_string) as client:
            with client.get_queue_sender("jobs") as sender:
                sender.send_messages(ServiceBusMessage("kept"))
            with client.get_queue_receiver(
                    "jobs", receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE) as receiver:
                assert [str(m) for m in receiver.receive_messages(max_wait_time=5)] == ["kept"]
        with EventHubProducerClient.from_connection_string(
                stack.connection_string, eventhub_name="hub") as producer:
            assert producer.get_partition_ids() == ["0", "1"]


def test_a_bad_event_hub_in_a_mixed_file_is_refused_naming_the_file(tmp_path):
    document = json.loads(json.dumps(BOTH_SHAPES))
    document["UserConfig"]["NamespaceConfig"][0]["Entities"][0]["PartitionCount"] = 0
    path = tmp_path / "Mixed.json"
    path.write_text(json.dumps(document))
    with pytest.raises(ConfigError, match=r"Mixed\.json: .*PartitionCount"):
        load_configs([path])


def test_every_unknown_or_ignored_field_is_a_warning_with_its_path(tmp_path, caplog):
    document = json.loads(json.dumps(BOTH_SHAPES))
    user = document["UserConfig"]
    user["Extra"] = 1
    user["Namespaces"][0]["Queues"][0]["Properties"]["MaxSizeInMegabytes"] = 1024
    user["Namespaces"][0]["Topics"] = [{"Name": "t", "Subscriptions": [{
        "Name": "s", "Properties": {"RequiresDuplicateDetection": True},
        "Rules": [{"Name": "r", "Properties": {
            "FilterType": "Correlation", "CorrelationFilter": {"Label": "x"},
            "SqlFilter": {"SqlExpression": "1=1"}}}]}]}]
    user["NamespaceConfig"].append({"Type": "Kafka", "Name": "other", "Entities": []})
    user["LoggingConfig"] = {"Type": "File"}
    path = tmp_path / "Config.json"
    path.write_text(json.dumps(document))

    loaded = load_configs([path])

    subscription = "UserConfig.Namespaces[0].Topics[0].Subscriptions[0]"
    assert sorted(w.removeprefix(f"{path}: ").split(":")[0] for w in loaded.warnings) == [
        "UserConfig.Extra",
        "UserConfig.LoggingConfig.Type",
        "UserConfig.NamespaceConfig[1].Type",
        "UserConfig.Namespaces[0].Queues[0].Properties.MaxSizeInMegabytes",
        f"{subscription}.Properties.RequiresDuplicateDetection",
        f"{subscription}.Rules[0].Properties.SqlFilter",
    ]
    assert all(w in caplog.text for w in loaded.warnings)


def test_the_apps_entity_configs_load_without_warnings():
    loaded = load_configs([REPO / "infra/entities/servicebus.json",
                           REPO / "infra/entities/eventhubs.json"])
    assert loaded.warnings == []


def test_iso_durations():
    assert parse_duration("PT1M") == 60
    assert parse_duration("PT1H30M5S") == 5405
    assert parse_duration("P1D") == 86400
    with pytest.raises(ValueError):
        parse_duration("PT")


def test_connection_string_names_the_port_only_when_not_default():
    assert connection_string("127.0.0.1", 5672).startswith("Endpoint=sb://localhost;")
    assert connection_string("127.0.0.1", 6000).startswith("Endpoint=sb://localhost:6000;")


def test_data_dir_keeps_messages_across_restarts(tmp_path):
    config = servicebus_config([{"Name": "kept"}])
    with DevStack([config], port=0, data_dir=tmp_path) as stack, \
            ServiceBusClient.from_connection_string(stack.connection_string) as client, \
            client.get_queue_sender("kept") as sender:
        sender.send_messages([ServiceBusMessage("survives", application_properties={"n": 1}),
                              ServiceBusMessage("too")])
    with DevStack([config], port=0, data_dir=tmp_path) as stack, \
            ServiceBusClient.from_connection_string(stack.connection_string) as client, \
            client.get_queue_receiver(
                "kept", receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE) as receiver:
        got = receiver.receive_messages(max_message_count=5, max_wait_time=3)
        got += receiver.receive_messages(max_message_count=5, max_wait_time=1)
        assert [str(m) for m in got] == ["survives", "too"]
        assert got[0].application_properties == {b"n": 1}
        sequence_numbers = [m.sequence_number for m in got]
    with DevStack([config], port=0, data_dir=tmp_path) as stack, \
            ServiceBusClient.from_connection_string(stack.connection_string) as client:
        with client.get_queue_sender("kept") as sender:
            sender.send_messages(ServiceBusMessage("new"))
        with client.get_queue_receiver("kept") as receiver:
            (new,) = receiver.receive_messages(max_wait_time=3)
            assert new.sequence_number > max(sequence_numbers)
            receiver.complete_message(new)


def _start_cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "devstack", "up", "--port", "0", *args],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_cli_prints_a_working_connection_string_and_stops_on_sigterm():
    process = _start_cli("--config", str(REPO / "infra/entities/servicebus.json"))
    try:
        assert process.stdout is not None
        process.stdout.readline()
        printed = process.stdout.readline().strip()
        assert printed.startswith("Endpoint=sb://localhost:")
        with ServiceBusClient.from_connection_string(printed) as client, \
                client.get_queue_sender("orders-saga") as sender:
            sender.send_messages(ServiceBusMessage("hello"))
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_cli_refuses_an_invalid_config_naming_the_field(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(servicebus_config([{"Name": "q", "Properties": {
        "MaxDeliveryCount": 0}}])))
    process = _start_cli("--config", str(path))
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 2
    assert "Queues[0].Properties.MaxDeliveryCount: 0 is less than the minimum 1" in stderr


def test_json_with_comments_is_read(tmp_path):
    path = tmp_path / "Config.json"
    path.write_text("""{
      "UserConfig": {
        "Namespaces": [{
          "Name": "sbemulatorns",
          "Queues": [{"Name": "q", "Properties": {"MaxDeliveryCount": 4}}], // a comment
          "Topics": []
        }],
        "Logging": {"Type": "File"}
      }
    }""")
    (namespace,) = load_configs([path]).servicebus
    assert namespace.queues[0].settings.max_delivery_count == 4


def test_data_dir_survives_a_killed_server(tmp_path):
    config_path = tmp_path / "Config.json"
    config_path.write_text(json.dumps(servicebus_config([{"Name": "kept"}])))
    data = tmp_path / "data"
    process = _start_cli("--config", str(config_path), "--data", str(data))
    try:
        assert process.stdout is not None
        process.stdout.readline()
        printed = process.stdout.readline().strip()
        with ServiceBusClient.from_connection_string(printed) as client, \
                client.get_queue_sender("kept") as sender:
            sender.send_messages(ServiceBusMessage("written before the crash"))
        snapshot = data / "servicebus.json"
        wait_until(lambda: snapshot.exists() and "kept" in snapshot.read_text()
                   and json.loads(snapshot.read_text())["last_sequence"] == 1)
        process.kill()
        process.wait(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    with DevStack([config_path], port=0, data_dir=data) as stack, \
            ServiceBusClient.from_connection_string(stack.connection_string) as client, \
            client.get_queue_receiver(
                "kept", receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE) as receiver:
        got = receiver.receive_messages(max_wait_time=3)
        assert [str(m) for m in got] == ["written before the crash"]
