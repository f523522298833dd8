"""`make demo`: start Azurite, run the order stories through the app's functions, print each
saga's timeline and check the invariants (no double charge, no lost event, every saga
terminal). Exits non-zero if any invariant fails.

Messaging runs in-process: the functions registered in `function_app.py` are invoked the way
the Functions host invokes them, over the in-memory peek-lock broker the tests use (devstack's
Service Bus and host are not wired into this demo yet).
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as `python scripts/demo.py` from anywhere

from rich.console import Console  # noqa: E402
from rich.panel import Panel  # noqa: E402
from rich.table import Table  # noqa: E402

from agents.backbone.outbox import OutboxRelay  # noqa: E402
from agents.orders import entities  # noqa: E402
from agents.orders.model import Service  # noqa: E402
from devstack.azurite import Azurite  # noqa: E402
from tests.integration.backbone.broker import InMemoryBroker  # noqa: E402
from tests.integration.orders.pump import body_of  # noqa: E402
from tests.integration.orders.stack import (  # noqa: E402
    STEP_TIMEOUT,
    OrdersStack,
    build_stack,
    order_body,
    running,
)

TERMINAL = {"completed", "compensated", "failed"}
console = Console()


@dataclass
class Story:
    title: str
    expect: str
    card: str = field(default_factory=lambda: f"tok-{uuid.uuid4().hex[:8]}")
    sku: str = "sku-blue-mug"
    copies: int = 1
    posts: int = 1
    modes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    then: Callable[[OrdersStack], None] | None = None


@dataclass
class Check:
    name: str
    passed: bool
    detail: str


def _wait_out_deadlines(stack: OrdersStack) -> None:
    stack.broker.advance(STEP_TIMEOUT + timedelta(seconds=1))
    stack.host.drain()
    stack.broker.advance(timedelta(minutes=15))
    stack.host.drain()


STORIES = [
    Story("Happy path: reserve -> charge -> allocate -> ship", expect="completed"),
    Story("Out of stock after the charge: refund, then release", expect="compensated",
          sku="sku-last-one",
          modes=[("inventory", {"mode": "out-of-stock-after-charge",
                                "scope": "sku:sku-last-one"})]),
    Story("Payment declined: release the stock", expect="compensated", card="tok-declined",
          modes=[("payments", {"mode": "decline", "scope": "card:tok-declined"})]),
    Story("Duplicate storm: the client posts 3 times, every message is delivered 3 times",
          expect="completed", copies=3, posts=3),
    Story("Slow payment gateway: the charge misses its deadline and is compensated",
          expect="compensated", card="tok-slow",
          modes=[("payments", {"mode": "slow", "scope": "card:tok-slow",
                               "slowSeconds": 600})],
          then=_wait_out_deadlines),
]


def run(story: Story, storage: str) -> tuple[dict[str, Any], list[Check]]:
    broker = InMemoryBroker(max_delivery_count=5, copies=story.copies)
    stack = build_stack(storage, broker)
    with running(stack):
        for service, mode in story.modes:
            switched = stack.host.http("POST", "simulators/{service}/mode", body=mode,
                                       route_params={"service": service})
            assert switched.status_code == 200, switched.get_body()
        key, body = str(uuid.uuid4()), order_body(card=story.card, sku=story.sku)
        posted = [stack.host.http("POST", "orders", body=body,
                                  headers={"Idempotency-Key": key}) for _ in range(story.posts)]
        stack.host.drain()
        if story.then is not None:
            story.then(stack)
        order_ids = {body_of(response)["orderId"] for response in posted}
        order_id = next(iter(order_ids))
        order = stack.order(order_id)
        return order, checks(stack, story, order, order_ids, [p.status_code for p in posted])


def checks(stack: OrdersStack, story: Story, order: dict[str, Any], order_ids: set[str],
           statuses: list[int]) -> list[Check]:
    order_id = order["orderId"]
    charge, reservation = f"charge-{order_id}", f"reservation-{order_id}"
    charges = stack.movements(Service.PAYMENTS, charge, "charge")
    refunds = stack.movements(Service.PAYMENTS, charge, "refund")
    holds = stack.movements(Service.INVENTORY, reservation, "hold")
    releases = stack.movements(Service.INVENTORY, reservation, "release")
    completed = order["status"] == "completed"
    pending = sum(len(OutboxRelay(p.table, stack.publisher).pending(partition))
                  for p in stack.context.processors
                  for partition in {order_id, charge, reservation})
    queues = (*entities.QUEUES, entities.FRAUD_ALERTS_TOPIC)
    dead = sum(len(stack.broker.dead_letters(queue)) for queue in queues)
    due = [queue for queue in queues if stack.broker.due(queue)]
    return [
        Check("saga is terminal", order["status"] in TERMINAL, order["status"]),
        Check(f"ends {story.expect}", order["status"] == story.expect, order["status"]),
        Check("one order per Idempotency-Key", len(order_ids) == 1,
              f"HTTP {statuses}, {len(order_ids)} order id(s)"),
        Check("no double charge", charges <= 1 and charges - refunds == int(completed),
              f"{charges} charge(s), {refunds} refund(s)"),
        Check("no stock leaked", holds <= 1 and holds - releases == int(completed),
              f"{holds} hold(s), {releases} release(s)"),
        Check("no lost event", pending == 0 and dead == 0 and not due,
              f"{pending} pending outbox row(s), {dead} dead-lettered, due: {due or 'none'}"),
    ]


def timeline_table(order: dict[str, Any]) -> Table:
    table = Table(show_header=True, header_style="bold", expand=False)
    for column in ("#", "at", "step", "phase", "status", "detail"):
        table.add_column(column)
    for number, entry in enumerate(order["timeline"], start=1):
        at = str(entry.get("at") or "-")[11:23]
        colour = {"succeeded": "green", "compensated": "yellow", "failed": "red",
                  "timed out": "red", "aborted": "red", "completed": "bold green"}.get(
                      entry["status"], "")
        table.add_row(str(number), at, entry["step"], entry["phase"],
                      f"[{colour}]{entry['status']}[/]" if colour else entry["status"],
                      entry["detail"])
    return table


def main() -> int:
    console.print(Panel.fit(
        "Order stories on the local stack\n"
        "Tables: Azurite (started here, in memory)\n"
        "Messaging: [bold]in-process[/] — the app's registered functions are invoked as the "
        "Functions host invokes them,\nover the in-memory peek-lock broker the tests use "
        "(devstack Service Bus/host not used by this demo)"))
    failed = 0
    started = time.monotonic()
    with Azurite() as azurite:
        for number, story in enumerate(STORIES, start=1):
            order, results = run(story, azurite.connection_string)
            console.rule(f"[bold]{number}. {story.title}")
            console.print(f"order {order['orderId']}: [bold]{order['status']}[/]"
                          + (f" ({order['failure']['reason']})" if order["failure"] else ""))
            console.print(timeline_table(order))
            for check in results:
                mark = "[green]PASS[/]" if check.passed else "[red]FAIL[/]"
                console.print(f"  {mark} {check.name}: {check.detail}")
                failed += not check.passed
    elapsed = time.monotonic() - started
    verdict = "[green]all invariants hold[/]" if not failed else f"[red]{failed} check(s) failed[/]"
    console.rule(f"{len(STORIES)} stories in {elapsed:.1f}s: {verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
