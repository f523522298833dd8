"""Service Bus benchmark: devstack serving the unmodified azure-servicebus SDK (sync).

Both servers run as subprocesses so their resident memory can be read from /proc. Figures:
10,000 messages each for batched send, peek-lock receive + complete, and receive-and-delete;
then each server's resident memory with 100,000 small messages sent to it. The baseline,
measured in the same run, is the same SDK over the same AMQP core with a null node (accepts
sends and discards them; serves a message shaped like the last one sent, with the same
broker annotations; accepts every settlement), so the difference is what the Service Bus
broker itself costs. The figures recorded in /work/shared/reference/amqp-notes.md (a
throwaway minimal server on the same machine) are shown as quoted, and the floor column is
what devstack must reach.

    python -m bench.devstack_bench [--messages N] [--queued N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusReceiveMode

from bench.server_process import ServerProcess, print_table, server_process
from devstack.amqp import ACCEPTED_STATE, AmqpServer, IncomingDelivery, Link, LinkHandler, Node
from devstack.amqp.codec import Described
from devstack.amqp.connection import OutgoingDelivery
from devstack.amqp.message import BATCH_FORMAT, Message, data_section
from devstack.servicebus.store import StoredMessage, now_ms

QUEUE = "bench"
BODY = json.dumps({"order": "o-1234", "sku": "sku-9", "qty": 2, "pad": "x" * 40}).encode()

SEND = "batched send (msg/s)"
PEEK_LOCK = "peek-lock receive + complete (msg/s)"
RECEIVE_AND_DELETE = "receive-and-delete (msg/s)"
# name -> (figure quoted from amqp-notes.md, floor); None where there is no floor
QUOTED: dict[str, tuple[str, float | None]] = {
    SEND: ("4,000-5,000", 5_000),
    PEEK_LOCK: ("1,100-1,400", 1_500),
    RECEIVE_AND_DELETE: ("~5,000", None),
}
MEMORY_CEILING_MIB = 200.0

BENCH_CONFIG = {
    "UserConfig": {
        "Namespaces": [{
            "Name": "sbemulatorns",
            "Queues": [{"Name": QUEUE, "Properties": {"LockDuration": "PT5M",
                                                      "MaxDeliveryCount": 10}}],
            "Topics": [],
        }],
        "Logging": {"Type": "Console"},
    }
}


class NullServiceBusNode(Node):
    """Accepts every send and discards it; on every credit serves one message shaped like
    the last one sent (encoded once, with the annotations devstack adds, a lock token in
    peek-lock), and accepts every settlement: the AMQP core and the SDK without a broker."""

    def __init__(self) -> None:
        self._shape(data_section(BODY))

    def _shape(self, payload: bytes) -> None:
        message = StoredMessage.from_payload(payload)
        message.sequence_number = 1
        message.enqueued_ms = now_ms()
        self.unlocked = message.encode()
        message.lock_token = uuid.uuid4()
        message.locked_until_ms = message.enqueued_ms + 300_000
        self.locked = message.encode(locked=True)

    def sent(self, delivery: IncomingDelivery) -> None:
        if delivery.message_format == BATCH_FORMAT:
            messages = Message(delivery.payload).data_sections()
            if messages:
                self._shape(messages[-1])
        else:
            self._shape(delivery.payload)

    def open_link(self, link: Link) -> LinkHandler | None:
        if link.address != QUEUE:
            return None
        return _NullSource(self) if link.is_sender else _NullSink(self)


class _NullSink(LinkHandler):
    def __init__(self, node: NullServiceBusNode) -> None:
        self._node = node

    def on_transfer(self, link: Link, delivery: IncomingDelivery) -> Described | None:
        self._node.sent(delivery)
        return ACCEPTED_STATE


class _NullSource(LinkHandler):
    def __init__(self, node: NullServiceBusNode) -> None:
        self._node = node

    def on_flow(self, link: Link) -> None:
        if link.snd_settle_mode == 1:  # receive-and-delete: sent settled
            while link.credit > 0:
                link.send(self._node.unlocked, settled=True)
        else:  # peek-lock: a fresh delivery tag (the SDK's lock token) each, as devstack
            while link.credit > 0:
                link.send(self._node.locked, tag=uuid.uuid4().bytes_le, settled=False)

    def on_disposition(
        self, link: Link, delivery: OutgoingDelivery, state: Any
    ) -> Described | None:
        return None


def _serve_null() -> None:
    """Subprocess entry: an AMQP server with only the null node; prints its port."""

    async def run() -> None:
        server = AmqpServer([NullServiceBusNode()], port=0)
        await server.start()
        print(server.port, flush=True)
        await asyncio.Event().wait()

    asyncio.run(run())


@contextmanager
def devstack_server() -> Iterator[ServerProcess]:
    """`python -m devstack up` with a one-queue config, exactly as a developer runs it."""
    with tempfile.TemporaryDirectory() as directory:
        config = Path(directory) / "Config.json"
        config.write_text(json.dumps(BENCH_CONFIG), encoding="utf-8")
        with server_process("devstack", "up", "--port", "0", "--config", str(config)) as server:
            yield server


def send_batched(client: ServiceBusClient, count: int) -> tuple[float, float]:
    """Messages per second for `count` messages sent in ServiceBusMessageBatch-es: timed from
    an open sender link, and including the link's opening (the SDK polls ~1 s for it)."""
    opening = time.perf_counter()
    with client.get_queue_sender(QUEUE) as sender:
        started = time.perf_counter()
        sent = 0
        while sent < count:
            batch = sender.create_message_batch()
            while sent < count:
                try:
                    batch.add_message(ServiceBusMessage(BODY))
                except ValueError:
                    break
                sent += 1
            sender.send_messages(batch)
        finished = time.perf_counter()
        return count / (finished - started), count / (finished - opening)


def receive(client: ServiceBusClient, count: int, *, peek_lock: bool) -> float:
    """Messages per second receiving `count` messages (completing each in peek-lock), timed
    from an open receiver link."""
    mode = ServiceBusReceiveMode.PEEK_LOCK if peek_lock else \
        ServiceBusReceiveMode.RECEIVE_AND_DELETE
    received = 0
    with client.get_queue_receiver(QUEUE, receive_mode=mode, prefetch_count=300) as receiver:
        started = time.perf_counter()
        while received < count:
            batch = receiver.receive_messages(max_message_count=300, max_wait_time=10)
            if not batch:
                raise RuntimeError(f"only {received} of {count} messages arrived")
            if peek_lock:
                for message in batch:
                    receiver.complete_message(message)
            received += len(batch)
        return received / (time.perf_counter() - started)


@dataclass
class Figures:
    rates: dict[str, float]
    send_with_open: float
    idle_rss_mib: float
    queued_rss_mib: float
    peak_rss_mib: float


def measure(server: ServerProcess, messages: int, queued: int) -> Figures:
    """The same sequence against either server: send, peek-lock receive, send again,
    receive-and-delete, then `queued` messages sent and left."""
    rates: dict[str, float] = {}
    with ServiceBusClient.from_connection_string(server.connection_string) as client:
        rates[SEND], with_open = send_batched(client, messages)
        rates[PEEK_LOCK] = receive(client, messages, peek_lock=True)
        send_batched(client, messages)
        rates[RECEIVE_AND_DELETE] = receive(client, messages, peek_lock=False)
        idle = server.memory()
        send_batched(client, queued)
        after = server.memory()
    return Figures(rates, with_open, idle.current_mib, after.current_mib, after.peak_mib)


def run(messages: int, queued: int) -> int:
    """Print devstack's figures next to the null-node baseline; 1 if a floor is missed."""
    with server_process("bench.devstack_bench", "--serve-null") as null_server:
        null = measure(null_server, messages, queued)
    with devstack_server() as devstack_process:
        ours = measure(devstack_process, messages, queued)

    print(f"Service Bus, azure-servicebus sync SDK, {messages:,} messages per figure "
          f"({len(BODY)}-byte bodies), servers as subprocesses")
    rows: list[list[str]] = []
    failed = False
    for name, value in ours.rates.items():
        quoted, floor = QUOTED[name]
        ok = floor is None or value >= floor
        failed |= not ok
        floor_text = f"{floor:,.0f}" if floor is not None else "-"
        rows.append([name, f"{null.rates[name]:,.0f}", f"{value:,.0f}", quoted, floor_text,
                     "yes" if ok else "NO"])
        if name == SEND:
            rows.append(["  the same, counting the link opening", f"{null.send_with_open:,.0f}",
                         f"{ours.send_with_open:,.0f}", "", "", ""])
    memory_ok = ours.queued_rss_mib < MEMORY_CEILING_MIB
    failed |= not memory_ok
    rows += [
        ["server RSS idle after the runs (MiB)", f"{null.idle_rss_mib:.1f}",
         f"{ours.idle_rss_mib:.1f}", "", "", ""],
        [f"server RSS, {queued:,} messages sent (MiB)", f"{null.queued_rss_mib:.1f}",
         f"{ours.queued_rss_mib:.1f}", "-", f"<{MEMORY_CEILING_MIB:.0f}",
         "yes" if memory_ok else "NO"],
        ["  growth while they were sent (MiB)",
         f"{null.queued_rss_mib - null.idle_rss_mib:.1f}",
         f"{ours.queued_rss_mib - ours.idle_rss_mib:.1f}", "", "", ""],
        ["server peak RSS (MiB)", f"{null.peak_rss_mib:.1f}", f"{ours.peak_rss_mib:.1f}",
         "", "", ""],
    ]
    print_table(["figure", "null node", "devstack", "quoted (notes)", "floor", "ok"], rows)
    print("null node: the same AMQP core without a broker (sends discarded, one message "
          "replayed), and without what `devstack up` also loads (Functions host, fault API, "
          "Event Hubs), which the idle RSS difference includes; quoted: amqp-notes.md, not "
          "measured in this run")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--queued", type=int, default=100_000)
    parser.add_argument("--serve-null", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv if argv is not None else [])
    if args.serve_null:
        _serve_null()
        return 0
    return run(args.messages, args.queued)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
