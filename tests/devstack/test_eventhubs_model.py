"""Event Hubs in devstack, below the wire: partition-key hash, logs, positions, owner levels."""

from __future__ import annotations

import copy
import json
import math
import string
from pathlib import Path

import pytest

# The SDK's private hash and codec are the reference the local service must agree with;
# tests may import them for this cross-check (product code never does).
from azure.eventhub._buffered_producer._partition_resolver import (
    PartitionResolver,
    generate_hash_code,
)
from azure.eventhub._pyamqp._decode import decode_payload
from azure.eventhub._pyamqp._encode import encode_payload
from azure.eventhub._pyamqp.message import Header, Message, Properties

from devstack.eventhubs.amqp_message import (
    InvalidMessage,
    partition_key_of,
    runtime_metric_section,
    stamp_event,
    with_delivery_annotations,
)
from devstack.eventhubs.entities import ConfigError, hubs_from_config, load_hubs
from devstack.eventhubs.namespace import LINK_STOLEN, EventHubsError, EventHubsNamespace
from devstack.eventhubs.partition_key import (
    lookup3_pair,
    partition_index_for_key,
    partition_key_hash,
)
from devstack.eventhubs.partition_log import PartitionLog
from devstack.eventhubs.positions import InvalidSelector, StartPosition
from tests.devstack.test_eventhubs_sdk import SAMPLE_CONFIG

REPO = Path(__file__).resolve().parents[2]
EMULATOR_CONFIG = Path("/work/shared/reference/eventhubs-emulator/Config.json")

ASCII_KEYS = [
    "",
    "a",
    "card-4242",
    "customer:000123",
    "exactly-12ch",
    "thirteen-char",
    "a much longer partition key that spans several lookup3 blocks",
    *(f"{letter}{n}" for letter in string.ascii_letters for n in range(40)),
]


def encoded(message: Message) -> bytes:
    return bytes(encode_payload(bytearray(), message))


def test_lookup3_matches_the_published_test_vector() -> None:
    # From lookup3.c's driver: hashlittle2("Four score and seven years ago", 0, 0).
    assert lookup3_pair(b"Four score and seven years ago") == (0x17770551, 0xCE7226E6)


def test_partition_key_hash_equals_the_sdk_buffered_producer_hash() -> None:
    # Cross-checked against the SDK's private implementation because the SDK's buffered
    # producer is the only Python copy of the service's hash to compare with.
    for key in ASCII_KEYS:
        assert partition_key_hash(key) == generate_hash_code(key), key


def test_partition_index_agrees_with_the_sdk_wherever_the_sdk_follows_the_service() -> None:
    # The SDK applies Python's floored % to the signed hash; the service (and the .NET
    # and Java clients) take abs() of a truncated remainder. They agree for hashes >= 0.
    ids = [str(i) for i in range(4)]
    resolver = PartitionResolver(ids)
    checked = 0
    for key in ASCII_KEYS:
        if partition_key_hash(key) >= 0:
            assert str(partition_index_for_key(key, 4)) == (
                resolver.get_partition_id_by_partition_key(key)
            ), key
            checked += 1
    assert checked > 100


def test_negative_hashes_use_the_truncated_remainder_of_the_service() -> None:
    # C#'s `Math.Abs(hash % count)`: the remainder keeps the dividend's sign (math.fmod).
    key = next(k for k in ASCII_KEYS if partition_key_hash(k) < 0 and partition_key_hash(k) % 2)
    expected = abs(int(math.fmod(partition_key_hash(key), 4)))
    assert partition_index_for_key(key, 4) == expected
    sdk_choice = PartitionResolver(["0", "1", "2", "3"]).get_partition_id_by_partition_key(key)
    assert str(expected) != sdk_choice, "the SDK's floored % picks another partition here"


@pytest.mark.skipif(not EMULATOR_CONFIG.exists(), reason="Microsoft's sample config not present")
def test_the_tests_sample_config_is_microsofts() -> None:
    assert json.loads(EMULATOR_CONFIG.read_text()) == SAMPLE_CONFIG


@pytest.mark.skipif(not EMULATOR_CONFIG.exists(), reason="Microsoft's sample config not present")
def test_emulator_config_loads_unchanged_with_default_consumer_group() -> None:
    hubs = load_hubs(EMULATOR_CONFIG)
    assert [(h.name, h.partition_count, h.consumer_groups) for h in hubs] == [
        ("eh1", 2, ("$default", "cg1"))
    ]


def test_app_config_declares_the_fraud_payments_hub() -> None:
    hubs = load_hubs(REPO / "infra" / "entities" / "eventhubs.json")
    assert hubs[0].name == "fraud-payments"
    assert hubs[0].partition_ids == ["0", "1", "2", "3"]
    assert "fraud-scoring" in hubs[0].consumer_groups


def test_config_without_partition_count_is_refused_with_the_entity_named() -> None:
    config = copy.deepcopy(SAMPLE_CONFIG)
    del config["UserConfig"]["NamespaceConfig"][0]["Entities"][0]["PartitionCount"]
    with pytest.raises(ConfigError, match=r"eh1.*PartitionCount"):
        hubs_from_config(config)


@pytest.mark.parametrize("name", ["-leading-dash", "has space", "trailing."])
def test_config_with_an_invalid_hub_name_is_refused(name: str) -> None:
    config = copy.deepcopy(SAMPLE_CONFIG)
    config["UserConfig"]["NamespaceConfig"][0]["Entities"][0]["Name"] = name
    with pytest.raises(ConfigError, match="invalid event hub name"):
        hubs_from_config(config)


def test_config_with_an_invalid_consumer_group_name_is_refused() -> None:
    config = copy.deepcopy(SAMPLE_CONFIG)
    config["UserConfig"]["NamespaceConfig"][0]["Entities"][0]["ConsumerGroups"] = [{"Name": "a b"}]
    with pytest.raises(ConfigError, match="invalid consumer group name 'a b'"):
        hubs_from_config(config)


def test_stamped_event_keeps_properties_and_gains_service_annotations() -> None:
    sent = Message(
        data=[b"payload"],
        properties=Properties(message_id=b"m-1", content_type=b"application/json"),
        application_properties={b"kind": b"payment", b"amount": 12},
        message_annotations={b"x-opt-partition-key": "card-1", b"custom": 7},
    )
    stored = stamp_event(
        encoded(sent),
        sequence_number=41,
        offset=1234,
        enqueued_time_ms=1_700_000_000_000,
        partition_key=None,
    )
    received = decode_payload(memoryview(stored))
    assert received.application_properties == {b"kind": b"payment", b"amount": 12}
    assert received.properties.message_id == b"m-1"
    assert received.data == [b"payload"]
    assert received.message_annotations == {
        b"x-opt-partition-key": b"card-1",
        b"custom": 7,
        b"x-opt-sequence-number": 41,
        b"x-opt-offset": b"1234",
        b"x-opt-enqueued-time": 1_700_000_000_000,
    }


def test_stamping_adds_annotations_to_a_message_without_any() -> None:
    stored = stamp_event(
        encoded(Message(data=[b"x"])),
        sequence_number=0,
        offset=0,
        enqueued_time_ms=5,
        partition_key="k",
    )
    received = decode_payload(memoryview(stored))
    assert received.message_annotations[b"x-opt-partition-key"] == b"k"
    assert received.data == [b"x"]
    assert partition_key_of(stored) == "k"


def test_runtime_metric_goes_after_the_header_and_decodes() -> None:
    sent = Message(data=[b"x"], header=Header(durable=True, priority=7))
    stored = stamp_event(
        encoded(sent), sequence_number=3, offset=9, enqueued_time_ms=11, partition_key=None
    )
    delivered = with_delivery_annotations(stored, runtime_metric_section(5, "700", 12, 13))
    received = decode_payload(memoryview(delivered))
    assert received.header.priority == 7
    assert received.delivery_annotations == {
        b"last_enqueued_sequence_number": 5,
        b"last_enqueued_offset": b"700",
        b"last_enqueued_time_utc": 12,
        b"runtime_info_retrieval_time_utc": 13,
    }
    assert received.message_annotations[b"x-opt-sequence-number"] == 3


def test_garbage_is_refused_as_an_invalid_message() -> None:
    with pytest.raises(InvalidMessage):
        stamp_event(
            b"\x00\x53\x75\xb0\x00\x00\x10",
            sequence_number=0,
            offset=0,
            enqueued_time_ms=0,
            partition_key=None,
        )


def filled_log(count: int, journal: Path | None = None) -> PartitionLog:
    log = PartitionLog("hub", "0", journal)
    for n in range(count):
        log.append([encoded(Message(data=[f"event {n}".encode()]))], None, 1000 + n)
    return log


def sequence_numbers(log: PartitionLog, selector: str) -> list[int]:
    start = log.start_index(StartPosition.from_selector(selector))
    return [
        decode_payload(memoryview(e)).message_annotations[b"x-opt-sequence-number"]
        for e in log.read(start, 100)
    ]


def test_start_positions_follow_the_selector_filter() -> None:
    log = filled_log(5)
    third_offset = int(
        decode_payload(memoryview(log.read(2, 1)[0])).message_annotations[b"x-opt-offset"]
    )
    assert sequence_numbers(log, "amqp.annotation.x-opt-offset > '-1'") == [0, 1, 2, 3, 4]
    assert sequence_numbers(log, "amqp.annotation.x-opt-offset > '@latest'") == []
    assert sequence_numbers(log, f"amqp.annotation.x-opt-offset > '{third_offset}'") == [3, 4]
    assert sequence_numbers(log, f"amqp.annotation.x-opt-offset >= '{third_offset}'") == [2, 3, 4]
    assert sequence_numbers(log, "amqp.annotation.x-opt-sequence-number > '1'") == [2, 3, 4]
    assert sequence_numbers(log, "amqp.annotation.x-opt-sequence-number >= '1'") == [1, 2, 3, 4]
    assert sequence_numbers(log, "amqp.annotation.x-opt-enqueued-time > '1003'") == [4]
    assert sequence_numbers(log, "amqp.annotation.x-opt-enqueued-time >= '1003'") == [3, 4]


def test_a_batch_with_one_malformed_message_stores_nothing() -> None:
    log = filled_log(1)
    with pytest.raises(InvalidMessage):
        log.append([encoded(Message(data=[b"fine"])), b"\x00\x53\x75\xb0\xff"], None, 5000)
    assert len(log) == 1
    assert log.properties().last_enqueued_sequence_number == 0


def test_unknown_selector_is_refused() -> None:
    with pytest.raises(InvalidSelector):
        StartPosition.from_selector("amqp.annotation.x-opt-offset < '5'")


def test_journal_replays_the_same_events_after_restart(tmp_path: Path) -> None:
    journal = tmp_path / "hub" / "0.log"
    before = filled_log(3, journal)
    before.close()
    after = PartitionLog("hub", "0", journal)
    assert after.read(0, 10) == before.read(0, 10)
    assert after.properties() == before.properties()


def test_a_record_cut_short_by_a_crash_is_dropped_and_appends_continue(tmp_path: Path) -> None:
    journal = tmp_path / "hub" / "0.log"
    filled_log(2, journal).close()
    whole = journal.read_bytes()
    journal.write_bytes(whole[:-5])
    recovered = PartitionLog("hub", "0", journal)
    assert len(recovered) == 1
    recovered.append([encoded(Message(data=[b"after the crash"]))], None, 2000)
    recovered.close()
    assert sequence_numbers(
        PartitionLog("hub", "0", journal), "amqp.annotation.x-opt-offset > '-1'"
    ) == [0, 1]


def test_partition_properties_report_the_last_enqueued_event() -> None:
    log = filled_log(3)
    props = log.properties()
    assert (props.beginning_sequence_number, props.last_enqueued_sequence_number) == (0, 2)
    assert props.last_enqueued_time_ms == 1002
    assert not props.is_empty
    assert PartitionLog("hub", "1").properties().is_empty


def namespace() -> EventHubsNamespace:
    return EventHubsNamespace(hubs_from_config(SAMPLE_CONFIG))


def test_higher_owner_level_disconnects_the_lower_reader() -> None:
    ns, kicked = namespace(), []
    ns.open_reader("eh1", "$default", "0", 1, kicked.append)
    ns.open_reader("eh1", "$default", "0", 2, lambda reason: None)
    assert len(kicked) == 1 and "owner level 2" in kicked[0]


def test_equal_owner_level_takes_over_the_partition() -> None:
    ns, kicked = namespace(), []
    ns.open_reader("eh1", "$default", "0", 0, kicked.append)
    ns.open_reader("eh1", "$default", "0", 0, lambda reason: None)
    assert len(kicked) == 1


def test_lower_owner_level_is_refused_as_link_stolen() -> None:
    ns = namespace()
    ns.open_reader("eh1", "$default", "0", 5, lambda reason: None)
    with pytest.raises(EventHubsError) as refused:
        ns.open_reader("eh1", "$default", "0", 4, lambda reason: None)
    assert refused.value.condition == LINK_STOLEN


def test_reader_without_owner_level_is_refused_while_an_exclusive_one_reads() -> None:
    ns = namespace()
    ns.open_reader("eh1", "$default", "0", 0, lambda reason: None)
    with pytest.raises(EventHubsError):
        ns.open_reader("eh1", "$default", "0", None, lambda reason: None)


def test_other_consumer_groups_are_independent() -> None:
    ns, kicked = namespace(), []
    ns.open_reader("eh1", "$default", "0", 3, kicked.append)
    ns.open_reader("eh1", "cg1", "0", 9, kicked.append)
    assert kicked == []


def test_sends_without_partition_rotate_round_robin_and_keys_stick() -> None:
    ns = namespace()
    message = [encoded(Message(data=[b"x"]))]
    assert [ns.publish("eh1", None, message, None) for _ in range(4)] == ["0", "1", "0", "1"]
    assert len({ns.publish("eh1", None, message, "card-7") for _ in range(5)}) == 1


def test_unknown_hub_is_not_found() -> None:
    with pytest.raises(EventHubsError, match="does not exist"):
        namespace().publish("nope", None, [], None)


def test_hub_and_consumer_group_names_are_case_insensitive() -> None:
    ns, kicked = namespace(), []
    assert ns.publish("EH1", "0", [encoded(Message(data=[b"x"]))], None) == "0"
    ns.open_reader("eh1", "CG1", "0", 1, kicked.append)
    ns.open_reader("Eh1", "cg1", "0", 2, lambda reason: None)
    assert len(kicked) == 1
    assert ns.eventhub_properties("EH1").name == "eh1"


def test_a_sixth_receiver_without_owner_level_is_refused() -> None:
    ns = namespace()
    for _ in range(5):
        ns.open_reader("eh1", "$default", "1", None, lambda reason: None)
    with pytest.raises(EventHubsError, match="at most 5 receivers") as refused:
        ns.open_reader("eh1", "$default", "1", None, lambda reason: None)
    assert refused.value.condition == "amqp:resource-limit-exceeded"
    ns.open_reader("eh1", "cg1", "1", None, lambda reason: None)
