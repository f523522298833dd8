"""Event Hubs benchmark: 10,000 events sent in batches and received, with the official SDK.

The server runs as a subprocess so its peak RSS can be read from /proc. The baseline is the
same SDK over the same AMQP core with a null node (accepts sends and discards them; serves
an event shaped like the last one sent), so the difference is what Event Hubs itself costs.
Both rates are steady state: one event sent first opens the link, and its arrival starts the
receive clock, so neither includes the SDK's connection set-up.

    python -m bench.eventhubs_bench [--events N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from azure.eventhub import EventData, EventHubConsumerClient, EventHubProducerClient

from bench.server_process import print_table, server_process
from devstack.amqp import ACCEPTED_STATE, AmqpServer, IncomingDelivery, Link, LinkHandler, Node
from devstack.amqp.codec import Described
from devstack.amqp.message import BATCH_FORMAT, data_section
from devstack.eventhubs import EventHubsNode, create_node
from devstack.eventhubs.amqp_message import batch_messages, stamp_event

EVENTS = 10_000
BODY = json.dumps({"card": "4242-0000", "amount": 12.5, "merchant": "m-17", "pad": "x" * 120})
HUB = "bench"
FLOOR_EVENTS_PER_SECOND = 5_000


@dataclass
class Figures:
    send_per_second: float
    receive_per_second: float
    peak_rss_mib: float


BENCH_CONFIG = {
    "UserConfig": {
        "NamespaceConfig": [
            {
                "Type": "EventHub",
                "Name": "bench",
                "Entities": [{"Name": HUB, "PartitionCount": 1, "ConsumerGroups": []}],
            }
        ]
    }
}


class _NullNode(Node):
    """Accepts every send and discards it; on every credit serves one event shaped like the
    last one sent (stamped once), so both servers deliver the same bytes per event.
    `$management` (hub properties, read once per client) goes to a real Event Hubs node."""

    def __init__(self, management: EventHubsNode) -> None:
        self._management = management
        self.event = self._stamped(data_section(BODY.encode()))

    @staticmethod
    def _stamped(message: bytes) -> bytes:
        return stamp_event(
            message,
            sequence_number=0,
            offset=0,
            enqueued_time_ms=int(time.time() * 1000),
            partition_key=None,
        )

    def sent(self, delivery: IncomingDelivery) -> None:
        messages = (
            batch_messages(delivery.payload)
            if delivery.message_format == BATCH_FORMAT
            else [delivery.payload]
        )
        if messages:
            self.event = self._stamped(messages[-1])

    def open_link(self, link: Link) -> LinkHandler | None:
        if link.address == "$management":
            return self._management.open_link(link)
        return _Source(self) if link.is_sender else _Sink(self)


class _Sink(LinkHandler):
    def __init__(self, node: _NullNode) -> None:
        self._node = node

    def on_transfer(self, link: Link, delivery: IncomingDelivery) -> Described | None:
        self._node.sent(delivery)
        return ACCEPTED_STATE


class _Source(LinkHandler):
    def __init__(self, node: _NullNode) -> None:
        self._node = node

    def on_flow(self, link: Link) -> None:
        while link.credit > 0:
            link.send(self._node.event, settled=True)


def _serve(mode: str) -> None:
    """Subprocess entry: run an AMQP server with the Event Hubs or the null node."""

    async def run() -> None:
        eventhubs = create_node([BENCH_CONFIG])
        node: Node = eventhubs if mode == "eventhubs" else _NullNode(eventhubs)
        server = AmqpServer([node], port=0)
        await server.start()
        print(server.port, flush=True)
        await asyncio.Event().wait()

    asyncio.run(run())


def _measure(mode: str, events: int) -> Figures:
    with server_process("bench.eventhubs_bench", "--serve", mode) as server:
        connection = server.connection_string
        with EventHubProducerClient.from_connection_string(
            connection, eventhub_name=HUB
        ) as producer:
            # One event first opens the connection and the partition's link, so the clock
            # times sending, not the SDK's set-up (about 0.7 s of its own polling sleeps).
            producer.send_batch([EventData(BODY)], partition_id="0")
            batch = producer.create_batch(partition_id="0")
            started = time.perf_counter()
            sent = 0
            while sent < events:
                event = EventData(BODY)
                try:
                    batch.add(event)
                    sent += 1
                except ValueError:  # batch full: send it and start the next one
                    producer.send_batch(batch)
                    batch = producer.create_batch(partition_id="0")
            producer.send_batch(batch)
            send_seconds = time.perf_counter() - started

        received = 0
        first_at = last_at = 0.0
        done = threading.Event()
        consumer = EventHubConsumerClient.from_connection_string(
            connection, consumer_group="$default", eventhub_name=HUB
        )

        def on_event(context: Any, event: Any) -> None:
            nonlocal received, first_at, last_at
            received += 1
            if received == 1:
                first_at = time.perf_counter()
            if received == events + 1:  # the events and the link-opening one
                last_at = time.perf_counter()
                done.set()

        worker = threading.Thread(
            target=consumer.receive,
            kwargs={"on_event": on_event, "partition_id": "0", "starting_position": "-1"},
            daemon=True,
        )
        worker.start()
        if not done.wait(120):
            raise RuntimeError(f"{mode}: received {received} of {events + 1} events in 120 s")
        consumer.close()
        worker.join(30)
        # The first (link-opening) event's arrival starts the clock: `events` intervals.
        receive_rate = events / (last_at - first_at)
        return Figures(events / send_seconds, receive_rate, server.memory().peak_mib)


def main(events: int = EVENTS) -> int:
    """Print devstack Event Hubs figures next to the null-node baseline; 1 below the floor."""
    baseline = _measure("null", events)
    eventhubs = _measure("eventhubs", events)
    rows = [
        ("batched send (events/s)", baseline.send_per_second, eventhubs.send_per_second),
        ("receive (events/s)", baseline.receive_per_second, eventhubs.receive_per_second),
        ("server peak RSS (MiB)", baseline.peak_rss_mib, eventhubs.peak_rss_mib),
    ]
    print(f"Event Hubs: {events:,} events of {len(BODY)} bytes, azure-eventhub sync SDK")
    print_table(
        ["", "null node", "devstack EH"],
        [[label, f"{base:,.0f}", f"{ours:,.0f}"] for label, base, ours in rows],
    )
    verdict = min(eventhubs.send_per_second, eventhubs.receive_per_second)
    meets = verdict >= FLOOR_EVENTS_PER_SECOND
    print(
        f"floor {FLOOR_EVENTS_PER_SECOND:,} events/s send and receive: "
        f"{'meets' if meets else 'BELOW'}"
    )
    return 0 if meets else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--serve", choices=["null", "eventhubs"], help=argparse.SUPPRESS)
    parser.add_argument("--events", type=int, default=EVENTS, help="events to send and receive")
    arguments = parser.parse_args()
    if arguments.serve:
        _serve(arguments.serve)
    else:
        sys.exit(main(arguments.events))
