"""What travels on the wire to and from devstack's Event Hubs.

The SDK cannot send a malformed message or show raw frames, so most tests here speak AMQP
directly (with devstack's own codec) over a socket; one records what the SDK's batch looks
like on arrival.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from azure.eventhub import EventData, EventHubProducerClient

from devstack.amqp import IncomingDelivery, Link, LinkHandler, Node
from devstack.amqp.codec import Described, Symbol, Timestamp, UInt, ULong, decode_value
from devstack.amqp.frames import (
    ATTACH,
    BEGIN,
    DISPOSITION,
    FLOW,
    OPEN,
    REJECTED,
    SASL_INIT,
    TRANSFER,
    decode_performative,
    frame,
    performative,
)
from devstack.amqp.message import BATCH_FORMAT, Message, data_section
from devstack.amqp.server import AmqpServer, ServerThread
from devstack.eventhubs import create_node
from tests.devstack.test_eventhubs_sdk import emulator_configs

SASL_HEADER = b"AMQP\x03\x01\x00\x00"
AMQP_HEADER = b"AMQP\x00\x01\x00\x00"
SOURCE, TARGET = 0x28, 0x29


class BareClient:
    """A minimal blocking AMQP 1.0 client: SASL ANONYMOUS, one session, raw frames."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.sendall(SASL_HEADER)
        assert self._read(8) == SASL_HEADER
        self.read_frame()  # sasl-mechanisms
        self.send(performative(SASL_INIT, [Symbol("ANONYMOUS"), None, None]), frame_type=1)
        self.read_frame()  # sasl-outcome
        self.sock.sendall(AMQP_HEADER)
        assert self._read(8) == AMQP_HEADER
        self.send(performative(OPEN, ["bare-client", "127.0.0.1", UInt(65536)]))
        self.expect(OPEN)
        self.send(performative(BEGIN, [None, UInt(0), UInt(1000), UInt(1000)]))
        self.expect(BEGIN)

    def _read(self, count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            if not chunk:
                raise ConnectionError("server closed the connection")
            data += chunk
        return data

    def send(self, body: bytes, frame_type: int = 0) -> None:
        self.sock.sendall(frame(0, body, frame_type))

    def read_frame(self) -> tuple[int, list[Any], bytes]:
        """The next non-empty frame: performative code, its raw field list, payload."""
        while True:
            size, offset = struct.unpack(">IB", self._read(5))
            body = self._read(size - 5)[offset * 4 - 5 :]
            if body:
                code, _, payload_at = decode_performative(body)
                fields = self._raw_fields(body)
                return code, fields, body[payload_at:]

    @staticmethod
    def _raw_fields(body: bytes) -> list[Any]:
        described, _ = decode_value(body)
        return list(described.value)  # as sent: not padded by the decoder

    def expect(self, code: int) -> tuple[list[Any], bytes]:
        while True:
            got, fields, payload = self.read_frame()
            if got == code:
                return fields, payload

    def attach(self, handle: int, address: str, *, receiver: bool, filters: Any = None) -> None:
        source = Described(ULong(SOURCE), [address, None, None, None, None, None, None, filters])
        target = Described(ULong(TARGET), [address])
        self.send(
            performative(
                ATTACH,
                [f"link-{handle}", UInt(handle), receiver, None, None, source, target],
            )
        )
        self.expect(ATTACH)


@pytest.fixture
def port() -> Iterator[int]:
    with ServerThread(AmqpServer([create_node(emulator_configs())], port=0)) as running:
        yield running.port


def test_a_malformed_event_is_rejected_with_decode_error(port: int) -> None:
    client = BareClient(port)
    client.attach(0, "eh1/Partitions/0", receiver=False)
    client.expect(FLOW)
    garbage = data_section(b"\x00\x53\x75\xb0\x00\x00\xff\xff")  # claims 65535 bytes, has none
    client.send(
        performative(TRANSFER, [UInt(0), UInt(0), b"t0", UInt(BATCH_FORMAT), False, False])
        + garbage
    )
    fields, _ = client.expect(DISPOSITION)
    state = fields[4]
    assert state.descriptor == REJECTED
    error = state.value[0]
    assert error.value[0] == "amqp:decode-error"
    assert "malformed event" in error.value[1]


def test_consumer_transfers_carry_every_field_and_are_settled(port: int) -> None:
    client = BareClient(port)
    client.attach(0, "eh1/Partitions/1", receiver=False)
    client.expect(FLOW)
    client.send(
        performative(TRANSFER, [UInt(0), UInt(0), b"t0", UInt(0), True, False])
        + data_section(b"hello")
    )
    selector = Described(
        Symbol("apache.org:selector-filter:string"), "amqp.annotation.x-opt-offset > '-1'"
    )
    client.attach(
        1,
        "amqps://localhost/eh1/ConsumerGroups/$default/Partitions/1",
        receiver=True,
        filters={Symbol("apache.org:selector-filter:string"): selector},
    )
    client.send(
        performative(
            FLOW,
            [UInt(0), UInt(1000), UInt(1), UInt(1000), UInt(1), UInt(0), UInt(10), None, False],
        )
    )
    fields, payload = client.expect(TRANSFER)
    assert len(fields) == 11, "azure-eventhub reads the payload right after 11 fields"
    assert fields[4] is True  # settled: Event Hubs receivers never settle
    assert payload.endswith(data_section(b"hello"))
    annotations = Message(payload).annotations
    assert type(annotations["x-opt-offset"]) is str  # an AMQP string, not binary
    assert (annotations["x-opt-offset"], annotations["x-opt-sequence-number"]) == ("0", 0)
    assert type(annotations["x-opt-enqueued-time"]) is Timestamp


class TransferLog(Node):
    """Wraps the Event Hubs node and records the message format of every send to a hub."""

    def __init__(self, inner: Node) -> None:
        self.inner = inner
        self.formats: list[int] = []

    def open_link(self, link: Link) -> LinkHandler | None:
        handler = self.inner.open_link(link)
        if handler is None or link.is_sender or link.address == "$management":
            return handler
        forward = handler.on_transfer

        def record(link: Link, delivery: IncomingDelivery) -> Any:
            self.formats.append(delivery.message_format)
            return forward(link, delivery)

        handler.on_transfer = record  # type: ignore[method-assign]
        return handler


def test_the_sdk_sends_an_event_data_batch_as_one_transfer() -> None:
    node = create_node(emulator_configs())
    transfers = TransferLog(node)
    with ServerThread(AmqpServer([transfers], port=0)) as running:
        client = EventHubProducerClient.from_connection_string(
            f"Endpoint=sb://127.0.0.1:{running.port};SharedAccessKeyName=k;SharedAccessKey=v;"
            "UseDevelopmentEmulator=true",
            eventhub_name="eh1",
        )
        with client:
            batch = client.create_batch(partition_id="0")
            for n in range(25):
                batch.add(EventData(f"e{n}"))
            client.send_batch(batch)
            last = client.get_partition_properties("0")["last_enqueued_sequence_number"]
    assert transfers.formats == [BATCH_FORMAT]
    assert last == 24
