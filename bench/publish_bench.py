"""Publishing under a server-busy burst: p95 POST latency and p95 step round trip of the orders
agent on devstack, the per-destination `ServiceBusPublisher` with its send budget beside the
same publisher without one and the single-lock publisher it replaced (issue 8.5), in one run.

Each side gets a fresh devstack (a subprocess: Service Bus + Event Hubs from infra/entities)
and its own tables on one Azurite. Orders are placed at a steady rate by a pool of "HTTP"
threads calling what the POST function calls (`place_order`, then `get_order`); the four
queues are consumed by worker threads like the Functions host's (receive, handle, complete;
abandon when the handler raises). Shortly after the start, devstack answers the next sends to
ONE queue (orders-shipping) with server-busy. "During the burst" is from arming the fault
until that queue accepts a send again; the figures are for POSTs and steps started in that
window. A step's round trip runs from the saga's publish of its command to its reply being
received by a saga handler.

- baseline: the publisher before issue 8.5, every send to any entity under one lock, so every
  POST and every step waits while one queue's send is backing off;
- per entity, no budget: one sender and lock per entity, the SDK's retry policy alone decides
  (1.6 + 3.2 + 6.4 s of back-off), so handlers publishing to orders-shipping queue on its lock;
- ours: per entity with `SEND_TIMEOUT_SECONDS`: a publish that cannot finish in the budget
  fails, its message is abandoned and the redelivery publishes the rows again.

devstack's server-busy is a count of answers, not a time window: sends that give up sooner
also use the answers up sooner, so the burst itself is shorter on the budgeted side.

    python -m bench.publish_bench [--rate 5] [--seconds 10] [--busy 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from azure.data.tables import TableServiceClient
from azure.eventhub import EventHubProducerClient
from azure.servicebus import ServiceBusClient, ServiceBusReceivedMessage

from agents.backbone import (
    EventHubsPublisher,
    OutboxRow,
    Publisher,
    RoutingPublisher,
    ServiceBusPublisher,
    parse_servicebus,
)
from agents.backbone.publishers import SEND_TIMEOUT_SECONDS, Closing
from agents.backbone.saga import REPLY
from agents.orders import bootstrap, entities, handlers
from agents.orders.handlers import OrdersAgent
from agents.orders.model import LineItem, Order
from agents.orders.simulated import bootstrap as simulated_bootstrap
from agents.orders.simulated import handlers as simulated_handlers
from agents.orders.simulated.handlers import SimulatedServices
from bench.server_process import REPO, ServerProcess, print_table, server_process
from devstack.azurite import Azurite, free_port

BUSY_QUEUE = entities.SHIPPING_QUEUE
SERVICE_QUEUES = (entities.INVENTORY_QUEUE, entities.PAYMENTS_QUEUE, entities.SHIPPING_QUEUE)
STEPS_PER_ORDER = 4  # reserve, charge, allocate, ship
BURST_AFTER = 2.0  # seconds after the first order
SETTLE = 90.0  # at most this long for every saga to finish after the last order


class SingleLockPublisher(ServiceBusPublisher):
    """The baseline: the publisher as it was before issue 8.5, one process-wide lock held
    across every send to every entity (kept here only, to be measured against)."""

    def __init__(self, client: ServiceBusClient) -> None:
        super().__init__(client, send_timeout=None)
        self._one_lock = threading.Lock()

    def publish(self, rows: Sequence[OutboxRow]) -> None:
        with self._one_lock:
            super().publish(rows)


@dataclass
class Clock:
    """What the run saw, in `time.monotonic()` seconds."""

    armed_at: float | None = None
    cleared_at: float | None = None
    posts: list[tuple[float, float]] = field(default_factory=list)  # (started, seconds)
    commands: dict[str, tuple[float, str]] = field(default_factory=dict)  # id: (sent, queue)
    steps: list[tuple[float, float, str]] = field(default_factory=list)  # started, s, queue
    answered: set[str] = field(default_factory=set)  # commands whose reply was timed
    lock: threading.Lock = field(default_factory=threading.Lock)

    def in_burst(self, started: float) -> bool:
        assert self.armed_at is not None and self.cleared_at is not None
        return self.armed_at <= started <= self.cleared_at


class Timed(Closing):
    """The Publisher the orders agent is built with: notes when each step command's publish
    began and when the busy queue accepts a send again after the fault was armed."""

    def __init__(self, inner: Publisher, clock: Clock) -> None:
        self.inner, self.clock = inner, clock

    def publish(self, rows: Sequence[OutboxRow]) -> None:
        started = time.monotonic()
        with self.clock.lock:  # a republished command keeps its first attempt's start
            for row in rows:
                if row.destination in SERVICE_QUEUES:
                    self.clock.commands.setdefault(row.envelope.id, (started, row.destination))
        self.inner.publish(rows)
        if any(row.destination == BUSY_QUEUE for row in rows):
            with self.clock.lock:
                armed = self.clock.armed_at
                if armed is not None and started >= armed and self.clock.cleared_at is None:
                    self.clock.cleared_at = time.monotonic()

    def close(self) -> None:
        self.inner.close()


def _order() -> Order:
    return Order(str(uuid.uuid4()), "c-bench", (LineItem("sku-bench", 1, 999),), "tok-bench",
                 "bench")


def _worker(client: ServiceBusClient, queue: str, handle: Callable[[ServiceBusReceivedMessage],
            None], stop: threading.Event) -> None:
    with client.get_queue_receiver(queue) as receiver:
        while not stop.is_set():
            for message in receiver.receive_messages(max_message_count=1, max_wait_time=0.5):
                try:
                    handle(message)
                except Exception:  # the host abandons: the broker redelivers
                    receiver.abandon_message(message)
                else:
                    receiver.complete_message(message)


def _handler(queue: str, context: OrdersAgent, services: SimulatedServices, clock: Clock
             ) -> Callable[[ServiceBusReceivedMessage], None]:
    def handle(message: ServiceBusReceivedMessage) -> None:
        if queue != entities.SAGA_QUEUE:
            command = parse_servicebus(b"".join(message.body), message.application_properties,
                                       registry=services.schemas)
            # No flaky mode in the bench: every command is handled on its first attempt.
            simulated_handlers.handle_service_command(command, 1, services)
            return
        event = parse_servicebus(b"".join(message.body), message.application_properties,
                                 registry=context.schemas)
        if event.type == REPLY and event.causationid is not None:  # back at the saga
            with clock.lock:  # a redelivered or repeated reply counts once
                sent = clock.commands.get(event.causationid)
                if sent is not None and event.causationid not in clock.answered:
                    clock.answered.add(event.causationid)
                    clock.steps.append((sent[0], time.monotonic() - sent[0], sent[1]))
        handlers.handle_saga_event(event, context)
    return handle


def _arm_server_busy(admin_url: str, times: int) -> None:
    request = urllib.request.Request(
        f"{admin_url}/faults/server-busy?entity={BUSY_QUEUE}&times={times}", method="POST")
    with urllib.request.urlopen(request, timeout=10):
        pass


def _devstack(admin_port: int) -> AbstractContextManager[ServerProcess]:
    configs = [str(REPO / "infra" / "entities" / name)
               for name in ("servicebus.json", "eventhubs.json")]
    return server_process("devstack", "up", "--port", "0", "--admin-port", str(admin_port),
                          *[arg for path in configs for arg in ("--config", path)])


def run_side(make_bus: Callable[[ServiceBusClient], ServiceBusPublisher], azurite: Azurite,
             *, rate: float, seconds: float, busy: int, workers: int) -> Clock:
    clock = Clock()
    admin_port = free_port()
    with _devstack(admin_port) as server:
        connection = server.connection_string
        bus = make_bus(ServiceBusClient.from_connection_string(connection))
        stream = EventHubsPublisher({entities.PAYMENTS_HUB: EventHubProducerClient
                                     .from_connection_string(connection,
                                                             eventhub_name=entities.PAYMENTS_HUB)})
        routes: dict[str, Publisher] = {queue: bus for queue in entities.QUEUES}
        publisher = Timed(RoutingPublisher({**routes, entities.PAYMENTS_HUB: stream}), clock)
        tables = TableServiceClient.from_connection_string(azurite.connection_string)
        prefix = f"b{uuid.uuid4().hex[:8]}"
        context = bootstrap.build(tables, publisher, table_prefix=prefix)
        services = simulated_bootstrap.build(tables, publisher, table_prefix=prefix)
        stop = threading.Event()
        with ServiceBusClient.from_connection_string(connection) as receivers, publisher:
            threads = [threading.Thread(target=_worker, daemon=True, args=(
                receivers, queue, _handler(queue, context, services, clock), stop))
                for queue in entities.QUEUES for _ in range(workers)]
            for worker in threads:
                worker.start()
            try:
                _place_orders(context, clock, rate=rate, seconds=seconds,
                              arm=lambda: _arm_server_busy(f"http://127.0.0.1:{admin_port}",
                                                           busy))
                deadline = time.monotonic() + SETTLE
                expected = STEPS_PER_ORDER * len(clock.posts)
                while len(clock.steps) < expected and time.monotonic() < deadline:
                    time.sleep(0.2)
            finally:
                stop.set()
                for worker in threads:
                    worker.join(timeout=30)
    return clock


def _place_orders(context: OrdersAgent, clock: Clock, *, rate: float, seconds: float,
                  arm: Callable[[], None]) -> None:
    def post(arrived: float) -> None:  # timed from its arrival, as its client sees it
        order = _order()
        handlers.place_order(order, context)
        handlers.get_order(order.order_id, context)
        with clock.lock:
            clock.posts.append((arrived, time.monotonic() - arrived))

    begun = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        for n in range(int(rate * seconds)):
            due = begun + n / rate
            time.sleep(max(0.0, due - time.monotonic()))
            if clock.armed_at is None and time.monotonic() - begun >= BURST_AFTER:
                arm()
                clock.armed_at = time.monotonic()
            pool.submit(post, due)


def p95(values: Sequence[float]) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=20, method="inclusive")[-1]


@dataclass
class Figures:
    name: str
    posts: list[float]
    steps: list[float]
    other_steps: list[float]
    burst_seconds: float
    unfinished: int


def figures(name: str, clock: Clock) -> Figures:
    if clock.cleared_at is None:  # the busy queue never accepted again within the run
        clock.cleared_at = time.monotonic()
    assert clock.armed_at is not None
    return Figures(
        name,
        posts=[s for started, s in clock.posts if clock.in_burst(started)],
        steps=[s for started, s, _ in clock.steps if clock.in_burst(started)],
        other_steps=[s for started, s, queue in clock.steps
                     if clock.in_burst(started) and queue != BUSY_QUEUE],
        burst_seconds=clock.cleared_at - clock.armed_at,
        unfinished=STEPS_PER_ORDER * len(clock.posts) - len(clock.steps),
    )


def unbudgeted(client: ServiceBusClient) -> ServiceBusPublisher:
    return ServiceBusPublisher(client, send_timeout=None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=5.0, help="orders per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long orders arrive")
    parser.add_argument("--busy", type=int, default=3,
                        help="server-busy answers armed on orders-shipping")
    parser.add_argument("--workers", type=int, default=4,
                        help="handler threads per queue (the host's concurrent calls)")
    args = parser.parse_args(argv)
    options = {"rate": args.rate, "seconds": args.seconds, "busy": args.busy,
               "workers": args.workers}
    with Azurite() as azurite:
        sides = [figures("baseline: one lock for all entities",
                         run_side(SingleLockPublisher, azurite, **options)),
                 figures("per entity, no send budget",
                         run_side(unbudgeted, azurite, **options)),
                 figures(f"ours: per entity, {SEND_TIMEOUT_SECONDS:g} s send budget",
                         run_side(ServiceBusPublisher, azurite, **options))]
    print(f"\nPublishing during a server-busy burst on {BUSY_QUEUE} ({args.busy} answers; "
          f"{args.rate:g} orders/s for {args.seconds:g} s; {args.workers} handler threads per "
          "queue; p95 of what started in the burst)")
    print_table(
        ["publisher", "burst s", "POSTs", "p95 POST s", "steps", "p95 step s",
         "p95 other queues' step s", "steps unfinished"],
        [[f.name, f"{f.burst_seconds:.1f}", str(len(f.posts)), f"{p95(f.posts):.3f}",
          str(len(f.steps)), f"{p95(f.steps):.3f}", f"{p95(f.other_steps):.3f}",
          str(f.unfinished)] for f in sides])
    return 0


if __name__ == "__main__":
    sys.exit(main())
