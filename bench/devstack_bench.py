"""Service Bus benchmark: devstack serving the unmodified azure-servicebus SDK (sync).

The server runs as a subprocess (`python -m devstack up`) so its resident memory can be read
from /proc. Figures: 10,000 messages each for batched send, peek-lock receive + complete,
and receive-and-delete; then the server's resident memory with 100,000 small messages
queued. The baseline column is the throwaway experiment recorded in
/work/shared/reference/amqp-notes.md (same SDK, same 2-core machine, a minimal server),
and the floor column is what devstack must reach.

    python -m bench.devstack_bench [--messages N] [--queued N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusReceiveMode

QUEUE = "bench"
BODY = json.dumps({"order": "o-1234", "sku": "sku-9", "qty": 2, "pad": "x" * 40}).encode()
REPO = Path(__file__).resolve().parent.parent

# name -> (baseline from amqp-notes.md, floor); None where the notes have no figure
BASELINES: dict[str, tuple[str, float | None]] = {
    "batched send (msg/s)": ("4,000-5,000", 5_000),
    "peek-lock receive + complete (msg/s)": ("1,100-1,400", 1_500),
    "receive-and-delete (msg/s)": ("~5,000", None),
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


@dataclass
class Server:
    process: subprocess.Popen[str]
    connection_string: str

    def memory_mib(self) -> tuple[float, float]:
        """(current, peak) resident set size of the server process, in MiB."""
        fields: dict[str, float] = {}
        with open(f"/proc/{self.process.pid}/status", encoding="ascii") as status:
            for line in status:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    fields[key] = int(value.split()[0]) / 1024
        return fields["VmRSS"], fields["VmHWM"]


@contextmanager
def devstack_server() -> Iterator[Server]:
    with tempfile.TemporaryDirectory() as directory:
        config = Path(directory) / "Config.json"
        config.write_text(json.dumps(BENCH_CONFIG), encoding="utf-8")
        process = subprocess.Popen(
            [sys.executable, "-m", "devstack", "up", "--port", "0", "--config", str(config)],
            cwd=REPO, stdout=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            assert process.stdout is not None
            process.stdout.readline()
            connection_string = process.stdout.readline().strip()
            if not connection_string.startswith("Endpoint="):
                raise RuntimeError("devstack did not start")
            yield Server(process, connection_string)
        finally:
            process.terminate()
            process.wait(timeout=30)


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


def run(messages: int, queued: int) -> int:
    figures: dict[str, float] = {}
    with devstack_server() as server, \
            ServiceBusClient.from_connection_string(server.connection_string) as client:
        figures["batched send (msg/s)"], with_open = send_batched(client, messages)
        figures["peek-lock receive + complete (msg/s)"] = receive(client, messages,
                                                                  peek_lock=True)
        send_batched(client, messages)
        figures["receive-and-delete (msg/s)"] = receive(client, messages, peek_lock=False)
        idle_rss, _ = server.memory_mib()
        send_batched(client, queued)
        queued_rss, peak_rss = server.memory_mib()

    print(f"Service Bus on devstack, sync SDK, {messages:,} messages per figure "
          f"({len(BODY)}-byte bodies), server as a subprocess")
    print(f"{'figure':40} {'devstack':>12} {'baseline':>14} {'floor':>8}  ok")
    failed = False
    for name, value in figures.items():
        baseline, floor = BASELINES[name]
        ok = floor is None or value >= floor
        failed |= not ok
        floor_text = f"{floor:,.0f}" if floor is not None else "-"
        print(f"{name:40} {value:12,.0f} {baseline:>14} {floor_text:>8}  {'yes' if ok else 'NO'}")
        if name.startswith("batched send"):
            print(f"{'  the same, counting the link opening':40} {with_open:12,.0f}")
    memory_ok = queued_rss < MEMORY_CEILING_MIB
    failed |= not memory_ok
    print(f"{'server RSS idle after the runs (MiB)':40} {idle_rss:12.1f}")
    print(f"{f'server RSS, {queued:,} messages queued (MiB)':40} {queued_rss:12.1f} "
          f"{'-':>14} {f'<{MEMORY_CEILING_MIB:.0f}':>8}  {'yes' if memory_ok else 'NO'}")
    print(f"{'server peak RSS (MiB)':40} {peak_rss:12.1f}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--queued", type=int, default=100_000)
    args = parser.parse_args(argv if argv is not None else [])
    return run(args.messages, args.queued)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
