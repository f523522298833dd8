"""The AMQP core speaks the wire the official SDK expects, before any broker is involved."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.servicebus.exceptions import MessagingEntityNotFoundError

from devstack.amqp import ACCEPTED_STATE, IncomingDelivery, Link, LinkHandler, Node
from devstack.amqp.codec import (
    Array,
    Described,
    Int,
    Symbol,
    Timestamp,
    UInt,
    ULong,
    decode_value,
    encoded,
)
from devstack.amqp.message import BATCH_FORMAT, Message
from devstack.amqp.server import AmqpServer, ServerThread


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        0,
        -5,
        2**40,
        -(2**40),
        1.5,
        "text",
        "é" * 300,
        b"\x00\x01",
        b"x" * 300,
        uuid.uuid4(),
        [1, "a", None],
        {"k": 1, Symbol("s"): [True]},
        list(range(200)),
    ],
)
def test_codec_round_trips_python_values(value: object) -> None:
    decoded, end = decode_value(encoded(value))
    assert decoded == value
    assert end == len(encoded(value))


def test_codec_keeps_amqp_types_apart() -> None:
    assert type(decode_value(encoded(Symbol("x")))[0]) is Symbol
    assert type(decode_value(encoded(Timestamp(1700000000000)))[0]) is Timestamp
    assert decode_value(encoded(UInt(70000)))[0] == 70000
    assert decode_value(encoded(ULong(2**63)))[0] == 2**63
    assert decode_value(encoded(Int(-70000)))[0] == -70000
    assert decode_value(encoded(Array(0xA3, ["a", "b"])))[0] == ["a", "b"]


def test_described_values_keep_their_exact_bytes() -> None:
    raw = encoded(Described(ULong(0x28), ["queue", UInt(0)]))
    value, _ = decode_value(raw)
    assert isinstance(value, Described)
    assert encoded(value) == raw


class _Recorder(LinkHandler):
    def __init__(self, deliveries: list[IncomingDelivery]) -> None:
        self.deliveries = deliveries

    def on_transfer(self, link: Link, delivery: IncomingDelivery) -> Described | None:
        self.deliveries.append(delivery)
        return ACCEPTED_STATE


class _Inbox(Node):
    """Accepts every message sent to the address `inbox`."""

    def __init__(self) -> None:
        self.deliveries: list[IncomingDelivery] = []

    def open_link(self, link: Link) -> LinkHandler | None:
        return _Recorder(self.deliveries) if link.address == "inbox" else None


@pytest.fixture
def inbox_server() -> Iterator[tuple[_Inbox, str]]:
    inbox = _Inbox()
    with ServerThread(AmqpServer([inbox], port=0)) as running:
        yield inbox, (
            f"Endpoint=sb://localhost:{running.port};SharedAccessKeyName=RootManageSharedAccessKey;"
            "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;"
        )


def test_sdk_sender_delivers_a_message_to_a_node(inbox_server: tuple[_Inbox, str]) -> None:
    inbox, connection_string = inbox_server
    with ServiceBusClient.from_connection_string(connection_string) as client, \
            client.get_queue_sender("inbox") as sender:
        sender.send_messages(ServiceBusMessage("hello", application_properties={"n": 7}))
    (delivery,) = inbox.deliveries
    message = Message(delivery.payload)
    assert message.application_properties == {"n": 7}
    assert message.data_sections() == [b"hello"]


def test_sdk_batch_arrives_as_one_transfer_of_data_sections(
    inbox_server: tuple[_Inbox, str],
) -> None:
    inbox, connection_string = inbox_server
    with ServiceBusClient.from_connection_string(connection_string) as client, \
            client.get_queue_sender("inbox") as sender:
        batch = sender.create_message_batch()
        batch.add_message(ServiceBusMessage("one"))
        batch.add_message(ServiceBusMessage("two"))
        sender.send_messages(batch)
    (delivery,) = inbox.deliveries
    assert delivery.message_format == BATCH_FORMAT
    inner = [Message(data).data_sections() for data in Message(delivery.payload).data_sections()]
    assert inner == [[b"one"], [b"two"]]


def test_unknown_address_is_refused_as_not_found(inbox_server: tuple[_Inbox, str]) -> None:
    _, connection_string = inbox_server
    with ServiceBusClient.from_connection_string(connection_string, retry_total=0) as client, \
            pytest.raises(MessagingEntityNotFoundError), \
            client.get_queue_sender("nowhere") as sender:
        sender.send_messages(ServiceBusMessage("lost"))


@pytest.mark.parametrize(("code", "count"), [(0x10, 10), (0x11, 8), (0x12, 14), (0x13, 11),
                                            (0x14, 11), (0x15, 6), (0x16, 3), (0x18, 1)])
def test_performatives_always_carry_every_field(code: int, count: int) -> None:
    from devstack.amqp.frames import performative

    value, _ = decode_value(performative(code, ["first"]))
    assert isinstance(value, Described)
    assert value.descriptor == code
    assert len(value.value) == count
