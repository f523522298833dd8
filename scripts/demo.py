"""`make demo`: the order stories on the local cloud, with every invariant checked.

Starts Azurite (tables), devstack's Service Bus (AMQP on a free port, entities from
`infra/entities/servicebus.json`) and devstack's Functions host running `function_app.py`;
drives it over real HTTP; prints each saga's timeline; checks that every saga is terminal,
nothing was charged twice, no stock leaked and no event was lost. Exits non-zero if any
check fails.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as `python scripts/demo.py` from anywhere

import aiohttp  # noqa: E402
from azure.data.tables import TableServiceClient  # noqa: E402
from azure.servicebus import ServiceBusMessageState, ServiceBusSubQueue  # noqa: E402
from azure.servicebus.aio import ServiceBusClient, ServiceBusReceiver  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.panel import Panel  # noqa: E402
from rich.table import Table  # noqa: E402

from agents.backbone.tables import OUTBOX_PREFIX, prefix_filter  # noqa: E402
from agents.orders import bootstrap, entities  # noqa: E402
from devstack.azurite import Azurite  # noqa: E402
from devstack.host import FunctionsHost  # noqa: E402
from devstack.server import DevStack  # noqa: E402

TERMINAL = {"completed", "compensated", "failed"}
STEP_TIMEOUT_SECONDS = 5
FUNCTION_KEY = "demo-function-key"
DUPLICATES_PER_QUEUE = 20
T = TypeVar("T")
console = Console()


@dataclass
class Story:
    title: str
    expect: str
    card: str = field(default_factory=lambda: f"tok-{uuid.uuid4().hex[:8]}")
    sku: str = "sku-blue-mug"
    posts: int = 1
    modes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    deliver_twice: bool = False


@dataclass
class Check:
    name: str
    passed: bool
    detail: str


STORIES = [
    Story("Happy path: reserve -> charge -> allocate -> ship", expect="completed"),
    Story("Out of stock after the charge: refund, then release", expect="compensated",
          sku="sku-last-one",
          modes=[("inventory", {"mode": "out-of-stock-after-charge",
                                "scope": "sku:sku-last-one"})]),
    Story("Payment declined: release the stock", expect="compensated", card="tok-declined",
          modes=[("payments", {"mode": "decline", "scope": "card:tok-declined"})]),
    Story("Duplicate storm: the client posts 3 times, the broker delivers every message twice",
          expect="completed", posts=3, deliver_twice=True),
    Story(f"Slow payment gateway: the charge misses its {STEP_TIMEOUT_SECONDS}s deadline",
          expect="compensated", card="tok-slow",
          modes=[("payments", {"mode": "slow", "scope": "card:tok-slow", "slowSeconds": 600})]),
]


async def eventually(probe: Callable[[], Awaitable[T | None]], timeout: float = 60.0) -> T:
    deadline = time.monotonic() + timeout
    while (found := await probe()) is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"not reached within {timeout}s")
        await asyncio.sleep(0.1)
    return found


@dataclass
class Cloud:
    """The running local cloud and clients to look inside it."""

    host: FunctionsHost
    devstack: DevStack
    http: aiohttp.ClientSession
    tables: TableServiceClient
    queues: dict[str, ServiceBusReceiver]
    dead_letters: dict[str, ServiceBusReceiver]

    async def call(self, method: str, path: str, body: Any = None,
                   headers: dict[str, str] | None = None) -> tuple[int, Any]:
        async with self.http.request(
                method, f"{self.host.base_url}/api/{path}", json=body,
                headers={"x-functions-key": FUNCTION_KEY, **(headers or {})}) as response:
            return response.status, await response.json()

    def movements(self, table: str, ledger_key: str, kind: str) -> int:
        rows = self.tables.get_table_client(table).query_entities(
            "PartitionKey eq @pk and movement eq @kind",
            parameters={"pk": ledger_key, "kind": kind})
        return len(list(rows))

    def pending_outbox(self, partitions: set[str]) -> int:
        tables = (bootstrap.SAGAS_TABLE, *bootstrap.LEDGER_TABLES.values())
        return sum(
            1 for table in tables for partition in partitions
            for _ in self.tables.get_table_client(table).query_entities(
                f"PartitionKey eq @pk and {prefix_filter(OUTBOX_PREFIX)} and Status eq 'pending'",
                parameters={"pk": partition}))

    async def settled_queues(self) -> list[str]:
        """Wait until no queue holds an active message (future deadlines may stay
        scheduled); returns the queues whose dead-letter queue is not empty."""
        async def quiet() -> bool | None:
            for receiver in self.queues.values():
                peeked = await receiver.peek_messages(max_message_count=100, sequence_number=1)
                if any(m.state == ServiceBusMessageState.ACTIVE for m in peeked):
                    return None
            return True

        await eventually(quiet)
        return [queue for queue, receiver in self.dead_letters.items()
                if await receiver.peek_messages(max_message_count=1, sequence_number=1)]


async def run(story: Story, cloud: Cloud) -> tuple[dict[str, Any], list[Check]]:
    for service, mode in story.modes:
        status, answer = await cloud.call("POST", f"simulators/{service}/mode", mode)
        assert status == 200, answer
    armed = DUPLICATES_PER_QUEUE if story.deliver_twice else 0
    for queue in entities.QUEUES if armed else ():
        cloud.devstack.faults.deliver_twice(queue, times=armed)
    key = str(uuid.uuid4())
    body = {"customerId": "c-demo", "card": story.card,
            "items": [{"sku": story.sku, "quantity": 2, "unitPriceCents": 1250}]}
    posted = [await cloud.call("POST", "orders", body, {"Idempotency-Key": key})
              for _ in range(story.posts)]
    order_ids = {answer["orderId"] for _, answer in posted}
    order_id = next(iter(order_ids))

    async def terminal() -> dict[str, Any] | None:
        _, order = await cloud.call("GET", f"orders/{order_id}")
        return order if order["status"] in TERMINAL else None

    order = await eventually(terminal)
    dead = await cloud.settled_queues()
    duplicated = sum(armed - cloud.devstack.fault_state.duplicates.get(queue, 0)
                     for queue in entities.QUEUES) if armed else 0
    cloud.devstack.faults.clear()
    charge, reservation = f"charge-{order_id}", f"reservation-{order_id}"
    charges = cloud.movements("orderspayments", charge, "charge")
    refunds = cloud.movements("orderspayments", charge, "refund")
    holds = cloud.movements("ordersinventory", reservation, "hold")
    releases = cloud.movements("ordersinventory", reservation, "release")
    pending = cloud.pending_outbox({order_id, charge, reservation})
    completed = order["status"] == "completed"
    storm = [Check("the broker delivered duplicates", duplicated > 0,
                   f"{duplicated} message(s) delivered twice")] if armed else []
    return order, [*storm,
        Check("saga is terminal", order["status"] in TERMINAL, order["status"]),
        Check(f"ends {story.expect}", order["status"] == story.expect, order["status"]),
        Check("one order per Idempotency-Key", len(order_ids) == 1,
              f"HTTP {[status for status, _ in posted]}, {len(order_ids)} order id(s)"),
        Check("no double charge", charges <= 1 and charges - refunds == int(completed),
              f"{charges} charge(s), {refunds} refund(s)"),
        Check("no stock leaked", holds <= 1 and holds - releases == int(completed),
              f"{holds} hold(s), {releases} release(s)"),
        Check("no lost event", pending == 0 and not dead,
              f"{pending} pending outbox row(s), dead letters in: {dead or 'none'}"),
    ]


def timeline_table(order: dict[str, Any]) -> Table:
    table = Table(show_header=True, header_style="bold")
    for column in ("#", "at", "step", "phase", "status", "detail"):
        table.add_column(column)
    colours = {"succeeded": "green", "compensated": "yellow", "failed": "red",
               "timed out": "red", "aborted": "red", "completed": "bold green"}
    for number, entry in enumerate(order["timeline"], start=1):
        status = entry["status"]
        table.add_row(str(number), str(entry.get("at") or "-")[11:23], entry["step"],
                      entry["phase"], f"[{colours[status]}]{status}[/]"
                      if status in colours else status, entry["detail"])
    return table


async def main() -> int:
    logging.basicConfig(level=logging.ERROR)
    console.print(Panel.fit(
        "Order stories on the local cloud, no Docker:\n"
        "  Azurite (tables, in memory) · devstack Service Bus over AMQP 1.0 "
        "(infra/entities/servicebus.json)\n"
        "  devstack Functions host running function_app.py · real HTTP · the official SDKs"))
    started, failed = time.monotonic(), 0
    with Azurite() as azurite, \
            DevStack([ROOT / "infra/entities/servicebus.json",
                   ROOT / "infra/entities/eventhubs.json"], port=0) as devstack:
        host = FunctionsHost(ROOT, settings={
            "AzureWebJobsStorage": azurite.connection_string,
            entities.STATE_STORAGE: azurite.connection_string,
            entities.CONNECTION: devstack.connection_string,
            entities.FRAUD_CONNECTION: devstack.connection_string,
            entities.FRAUD_EVENTHUBS: devstack.connection_string,
        entities.FRAUD_EVENTHUBS: devstack.connection_string,
            bootstrap.STEP_TIMEOUT_SETTING: str(STEP_TIMEOUT_SECONDS),
            "DEVSTACK_HOST_FUNCTION_KEY": FUNCTION_KEY,
        })
        await host.start()
        try:
            async with AsyncExitStack() as opened:
                http = await opened.enter_async_context(aiohttp.ClientSession())
                bus = await opened.enter_async_context(
                    ServiceBusClient.from_connection_string(devstack.connection_string))
                queues = {queue: await opened.enter_async_context(bus.get_queue_receiver(queue))
                          for queue in entities.QUEUES}
                dead_letters = {queue: await opened.enter_async_context(bus.get_queue_receiver(
                    queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER))
                    for queue in entities.QUEUES}
                cloud = Cloud(host, devstack, http, TableServiceClient.from_connection_string(
                    azurite.connection_string), queues, dead_letters)
                console.print(f"host on {host.base_url}, Service Bus on 127.0.0.1:"
                              f"{devstack.port}, step deadline {STEP_TIMEOUT_SECONDS}s\n")
                for number, story in enumerate(STORIES, start=1):
                    began = time.monotonic()
                    order, checks = await run(story, cloud)
                    console.rule(f"[bold]{number}. {story.title}[/] "
                                 f"({time.monotonic() - began:.1f}s)")
                    reason = f" ({order['failure']['reason']})" if order["failure"] else ""
                    console.print(f"order {order['orderId']}: [bold]{order['status']}[/]{reason}")
                    console.print(timeline_table(order))
                    for check in checks:
                        mark = "[green]PASS[/]" if check.passed else "[red]FAIL[/]"
                        console.print(f"  {mark} {check.name}: {check.detail}")
                        failed += not check.passed
        finally:
            await host.stop()
    verdict = "[green]all invariants hold[/]" if not failed else f"[red]{failed} check(s) failed[/]"
    console.rule(f"{len(STORIES)} stories in {time.monotonic() - started:.1f}s: {verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
