"""`make demo`: the order stories on the local cloud, with every invariant checked.

Starts Azurite (tables), devstack's Service Bus (AMQP on a free port, entities from
`infra/entities/`) and devstack's Functions host running `function_app.py`; drives it over
real HTTP and the official SDKs; prints each saga's timeline; sends a poison message and
shows it dead-lettered; closes with sagas by state, events per second and the dead-letter
contents (listed with `agents.ops`' code). Exits non-zero if any check fails, and stops
everything it started (also on Ctrl-C or SIGTERM).

The stories and checks are importable: `tests/e2e/` runs the same ones against the same
`local_cloud()`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as `python scripts/demo.py` from anywhere

import aiohttp  # noqa: E402
from azure.data.tables import TableServiceClient  # noqa: E402
from azure.servicebus import (  # noqa: E402
    ServiceBusMessage,
    ServiceBusMessageState,
    ServiceBusReceivedMessage,
    ServiceBusSubQueue,
)
from azure.servicebus.aio import ServiceBusClient, ServiceBusReceiver  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.panel import Panel  # noqa: E402
from rich.progress import (  # noqa: E402
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table  # noqa: E402

from agents.backbone.tables import STATE_ROW  # noqa: E402
from agents.ops.config import Catalogue  # noqa: E402
from agents.ops.connections import Connections  # noqa: E402
from agents.ops.deadletters import DeadLetter, list_dead_letters  # noqa: E402
from agents.ops.outbox import pending_rows  # noqa: E402
from agents.orders import bootstrap, entities, simulated  # noqa: E402
from agents.orders.model import Service  # noqa: E402
from agents.orders.simulated import bootstrap as simulated_bootstrap  # noqa: E402
from devstack.azurite import Azurite  # noqa: E402
from devstack.host import FunctionsHost  # noqa: E402
from devstack.host.invocation import InvocationRecord  # noqa: E402
from devstack.server import DevStack  # noqa: E402

TERMINAL = {"completed", "compensated", "failed"}
STEP_TIMEOUT_SECONDS = 5
STORY_DEADLINE_SECONDS = 60.0  # generous: a story that has not ended by then fails its checks
FUNCTION_KEY = "demo-function-key"
DUPLICATES_PER_QUEUE = 20
POISON_BODY = b'{"specversion": "1.0", "type": "orders.reply", "data": '  # cut off mid-JSON
SERVICE_BUS_TRIGGER = "serviceBusTrigger"
# The saga's outbox and the simulated services' ledgers each have their sweeper.
OUTBOX_SWEEPERS = ("orders_outbox_sweeper", "orders_simulators_outbox_sweeper")
T = TypeVar("T")
Say = Callable[[str], None]
# Piped or captured output gets wide tables instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 160)


def quiet(_: str) -> None:
    """A `Say` that shows nothing (tests)."""


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


@dataclass
class Ledger:
    """The money, stock and parcel movements recorded for one order."""

    charges: int
    refunds: int
    holds: int
    releases: int
    shipments: int


@dataclass
class StoryOutcome:
    story: Story
    order: dict[str, Any]
    ledger: Ledger
    http_statuses: list[int]
    order_ids: set[str]
    pending_outbox: int
    new_dead_letters: list[str]
    duplicated: int
    seconds: float
    checks: list[Check]


@dataclass
class PoisonOutcome:
    queue: str
    message_id: str
    letter: DeadLetter
    failures: list[InvocationRecord]
    seconds: float
    checks: list[Check]


HAPPY = Story("Happy path: reserve -> charge -> allocate -> ship", expect="completed")
OUT_OF_STOCK = Story(
    "Out of stock after the charge: refund, then release", expect="compensated",
    sku="sku-last-one", modes=[("inventory", {"mode": "out-of-stock-after-charge",
                                              "scope": "sku:sku-last-one"})])
DECLINED = Story("Payment declined: release the stock", expect="compensated",
                 card="tok-declined",
                 modes=[("payments", {"mode": "decline", "scope": "card:tok-declined"})])
DUPLICATE_STORM = Story(
    "Duplicate storm: the client posts 3 times, the broker delivers every message twice",
    expect="completed", posts=3, deliver_twice=True)
SLOW_GATEWAY = Story(
    f"Slow payment gateway: the charge misses its {STEP_TIMEOUT_SECONDS}s deadline",
    expect="compensated", card="tok-slow",
    modes=[("payments", {"mode": "slow", "scope": "card:tok-slow", "slowSeconds": 600})])
LATE_SHIPPING_REPLY = Story(
    f"The shipping reply arrives after the {STEP_TIMEOUT_SECONDS}s deadline: the parcel is out, "
    "so the saga asks again and completes, never refunds",
    expect="completed", card="tok-late-courier",
    modes=[("shipping", {"mode": "slow", "scope": "card:tok-late-courier",
                         "slowSeconds": STEP_TIMEOUT_SECONDS + 3})])
STORIES = [HAPPY, OUT_OF_STOCK, DECLINED, DUPLICATE_STORM, SLOW_GATEWAY, LATE_SHIPPING_REPLY]
POISON_TITLE = "Poison message: malformed JSON on orders-saga ends in the dead-letter queue"


class Interrupted(Exception):
    """Ctrl-C or SIGTERM: stop the stories; every `finally` stops what it started."""


class StopRequest:
    """Set by the signal handlers. A task cancellation alone is not enough: some awaits of
    azure-servicebus' aio client absorb it, so the stories also poll this between steps."""

    requested = False

    @classmethod
    def check(cls) -> None:
        if cls.requested:
            raise Interrupted


async def eventually(probe: Callable[[], Awaitable[T | None]], timeout: float = 60.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        StopRequest.check()
        if (found := await probe()) is not None:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"not reached within {timeout}s")
        await asyncio.sleep(0.1)


async def peek(receiver: ServiceBusReceiver) -> list[ServiceBusReceivedMessage]:
    return await receiver.peek_messages(max_message_count=100, sequence_number=1)


@dataclass
class Cloud:
    """The running local cloud and clients to look inside it."""

    host: FunctionsHost
    devstack: DevStack
    http: aiohttp.ClientSession
    bus: ServiceBusClient
    tables: TableServiceClient
    ops: Connections
    catalogue: Catalogue
    queues: dict[str, ServiceBusReceiver]
    dead_letter_queues: dict[str, ServiceBusReceiver]
    started: float = field(default_factory=time.monotonic)

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

    def ledger(self, order_id: str) -> Ledger:
        charge, reservation = f"charge-{order_id}", f"reservation-{order_id}"
        payments = simulated_bootstrap.LEDGER_TABLES[Service.PAYMENTS]
        inventory = simulated_bootstrap.LEDGER_TABLES[Service.INVENTORY]
        shipping = simulated_bootstrap.LEDGER_TABLES[Service.SHIPPING]
        return Ledger(self.movements(payments, charge, "charge"),
                      self.movements(payments, charge, "refund"),
                      self.movements(inventory, reservation, "hold"),
                      self.movements(inventory, reservation, "release"),
                      self.movements(shipping, order_id, "shipment"))

    async def pending_outbox(self, partitions: set[str] | None = None) -> int:
        """Outbox rows still pending (agents.ops' query), in these partitions or all, after
        the app's sweepers ran: the relay marks a partition's last published rows lazily, and
        a sweeper marks those and republishes only rows it never published."""
        for sweeper in OUTBOX_SWEEPERS:
            async with self.http.post(
                    f"{self.host.base_url}/admin/functions/{sweeper}", json={"input": ""},
                    headers={"x-functions-key": self.host.keys.master}) as response:
                assert response.status == 202, await response.text()
        rows = await asyncio.to_thread(pending_rows, self.ops)
        return sum(1 for pending in rows
                   if partitions is None or pending.row.partition_key in partitions)

    async def dead_letters(self) -> list[DeadLetter]:
        """Every dead-lettered message of every queue and subscription, as
        `python -m agents.ops deadletters list` lists them."""
        return await asyncio.to_thread(list_dead_letters, self.ops, self.catalogue)

    async def dead_lettered_orders_messages(self) -> set[tuple[str, int]]:
        return {(queue, message.sequence_number or 0)
                for queue, receiver in self.dead_letter_queues.items()
                for message in await peek(receiver)}

    async def settle(self) -> None:
        """Wait until no orders queue holds an active message (future step deadlines may
        stay scheduled)."""
        async def idle() -> bool | None:
            for receiver in self.queues.values():
                peeked = await peek(receiver)
                if any(m.state == ServiceBusMessageState.ACTIVE for m in peeked):
                    return None
            return True

        await eventually(idle)

    def sagas_by_state(self) -> Counter[str]:
        rows = self.tables.get_table_client(bootstrap.SAGAS_TABLE).query_entities(
            "RowKey eq @row", parameters={"row": STATE_ROW}, select=["state"])
        return Counter(json.loads(row["state"])["status"] for row in rows)

    def handled_messages(self) -> int:
        """Service Bus messages the host's functions handled successfully (completed)."""
        triggered = {spec.name for spec in self.host.functions
                     if spec.trigger_type == SERVICE_BUS_TRIGGER}
        return sum(1 for record in self.host.invoker.records
                   if record.succeeded and record.function_name in triggered)


def app_settings(storage: str, devstack: DevStack) -> dict[str, str]:
    """The app's settings for a local cloud; `storage` is the storage connection string."""
    return {
        "AzureWebJobsStorage": storage,
        entities.STATE_STORAGE: storage,
        entities.CONNECTION: devstack.connection_string,
        entities.FRAUD_CONNECTION: devstack.connection_string,
        entities.FRAUD_EVENTHUBS: devstack.connection_string,
        "TRIAGE_SERVICEBUS": devstack.connection_string,
        bootstrap.STEP_TIMEOUT_SETTING: str(STEP_TIMEOUT_SECONDS),
        simulated.SETTING: "true",
        "DEVSTACK_HOST_FUNCTION_KEY": FUNCTION_KEY,
    }


async def close_all(receivers: list[ServiceBusReceiver]) -> None:
    await asyncio.gather(*(receiver.close() for receiver in receivers))


@asynccontextmanager
async def local_cloud() -> AsyncIterator[Cloud]:
    """Azurite, devstack and the host on free loopback ports, stopped in reverse order on
    the way out, whatever the reason (failure, Ctrl-C, cancellation)."""
    catalogue = Catalogue.load()
    with ExitStack() as servers:
        azurite = servers.enter_context(Azurite())
        devstack = servers.enter_context(DevStack(
            [ROOT / "infra/entities/servicebus.json", ROOT / "infra/entities/eventhubs.json"],
            port=0))
        host = FunctionsHost(ROOT, settings=app_settings(azurite.connection_string, devstack))
        await host.start()
        try:
            async with AsyncExitStack() as opened:
                http = await opened.enter_async_context(aiohttp.ClientSession())
                bus = await opened.enter_async_context(
                    ServiceBusClient.from_connection_string(devstack.connection_string))
                queues = {queue: bus.get_queue_receiver(queue) for queue in entities.QUEUES}
                dead_letter_queues = {queue: bus.get_queue_receiver(
                    queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER) for queue in entities.QUEUES}
                receivers = [*queues.values(), *dead_letter_queues.values()]
                # Each link's attach and detach waits for the broker: side by side, not in turn.
                opened.push_async_callback(lambda: close_all(receivers))
                await asyncio.gather(*(receiver.__aenter__() for receiver in receivers))
                # agents.ops reads one connection setting per entity domain; here all domains
                # live on the one devstack namespace and the one Azurite account.
                ops = servers.enter_context(Connections({
                    **{entity.setting: devstack.connection_string
                       for entity in catalogue.servicebus},
                    entities.STATE_STORAGE: azurite.connection_string}))
                tables = servers.enter_context(
                    TableServiceClient.from_connection_string(azurite.connection_string))
                yield Cloud(host, devstack, http, bus, tables, ops, catalogue, queues,
                            dead_letter_queues)
        finally:
            await host.stop()


async def run(story: Story, cloud: Cloud, say: Say = quiet) -> StoryOutcome:
    StopRequest.check()
    began = time.monotonic()
    before = await cloud.dead_lettered_orders_messages()
    for service, mode in story.modes:
        status, answer = await cloud.call("POST", f"simulators/{service}/mode", mode)
        assert status == 200, answer
    armed = DUPLICATES_PER_QUEUE if story.deliver_twice else 0
    for queue in entities.QUEUES if armed else ():
        cloud.devstack.faults.deliver_twice(queue, times=armed)
    key = str(uuid.uuid4())
    body = {"customerId": "c-demo", "card": story.card,
            "items": [{"sku": story.sku, "quantity": 2, "unitPriceCents": 1250}]}
    say(f"POST /api/orders x{story.posts}")
    posted = [await cloud.call("POST", "orders", body, {"Idempotency-Key": key})
              for _ in range(story.posts)]
    order_ids = {answer["orderId"] for _, answer in posted}
    order_id = next(iter(order_ids))

    seen: dict[str, Any] = {}

    async def terminal() -> dict[str, Any] | None:
        _, order = await cloud.call("GET", f"orders/{order_id}")
        seen.update(order)
        say(f"order {order_id[:8]}: {order['status']} at {order.get('step') or '-'}")
        return order if order["status"] in TERMINAL else None

    try:
        order = await eventually(terminal, timeout=STORY_DEADLINE_SECONDS)
    except TimeoutError:
        order = seen  # the "saga is terminal" check below fails with what was last seen
    say("waiting for the queues to settle")
    try:
        await cloud.settle()
        settled = True
    except TimeoutError:
        settled = False
    duplicated = sum(armed - cloud.devstack.fault_state.duplicates.get(queue, 0)
                     for queue in entities.QUEUES) if armed else 0
    cloud.devstack.faults.clear()
    new_dead = sorted(f"{queue}#{sequence}" for queue, sequence in
                      await cloud.dead_lettered_orders_messages() - before)
    ledger = cloud.ledger(order_id)
    pending = await cloud.pending_outbox(
        {order_id, f"charge-{order_id}", f"reservation-{order_id}"})
    completed = order["status"] == "completed"
    storm = [Check("the broker delivered duplicates", duplicated > 0,
                   f"{duplicated} message(s) delivered twice")] if armed else []
    checks = [*storm,
        Check("saga is terminal", order["status"] in TERMINAL, order["status"]),
        Check(f"ends {story.expect}", order["status"] == story.expect, order["status"]),
        Check("one order per Idempotency-Key", len(order_ids) == 1,
              f"HTTP {[status for status, _ in posted]}, {len(order_ids)} order id(s)"),
        Check("no double charge",
              ledger.charges <= 1 and ledger.charges - ledger.refunds == int(completed),
              f"{ledger.charges} charge(s), {ledger.refunds} refund(s)"),
        Check("no stock leaked",
              ledger.holds <= 1 and ledger.holds - ledger.releases == int(completed),
              f"{ledger.holds} hold(s), {ledger.releases} release(s)"),
        Check("shipped once if completed, else not at all",
              ledger.shipments == int(completed), f"{ledger.shipments} shipment(s)"),
        Check("no lost event", settled and pending == 0 and not new_dead,
              f"{pending} pending outbox row(s), new dead letters: {new_dead or 'none'}"
              + ("" if settled else ", messages still active in the orders queues")),
    ]
    return StoryOutcome(story, order, ledger, [status for status, _ in posted], order_ids,
                        pending, new_dead, duplicated, time.monotonic() - began, checks)


async def run_poison(cloud: Cloud, say: Say = quiet) -> PoisonOutcome:
    """Send malformed JSON to orders-saga with the official SDK. The trigger (SDK-type
    binding) dead-letters it on its first delivery with the parser's reason, through the
    host's settlement service, as on Azure."""
    StopRequest.check()
    began = time.monotonic()
    queue, message_id = entities.SAGA_QUEUE, f"poison-{uuid.uuid4().hex[:12]}"
    already = len(cloud.host.invoker.records)
    async with cloud.bus.get_queue_sender(queue) as sender:
        await sender.send_messages(ServiceBusMessage(
            POISON_BODY, message_id=message_id, content_type="application/json"))

    async def dead_lettered() -> DeadLetter | None:
        say(f"{message_id[:15]}: waiting for the dead-letter queue")
        return next((letter for letter in await cloud.dead_letters()
                     if letter.message_id == message_id), None)

    letter = await eventually(dead_lettered)
    triggered = {spec.name for spec in cloud.host.functions
                 if spec.trigger.get("queueName") == queue}
    failures = [record for record in cloud.host.invoker.records[already:]
                if record.function_name in triggered and not record.succeeded]
    checks = [
        Check("dead-lettered at once with the parser's reason, not dropped",
              letter.reason == "InvalidEncoding", f"reason {letter.reason}"),
        Check("no failed invocation (no redeliveries up to MaxDeliveryCount)",
              not failures, f"{len(failures)} failed invocation(s)"),
        Check("body kept intact for replay", letter.body == POISON_BODY,
              f"{len(letter.body or b'')} bytes"),
    ]
    return PoisonOutcome(queue, message_id, letter, failures, time.monotonic() - began, checks)


def timeline_table(order: dict[str, Any]) -> Table:
    table = Table(show_header=True, header_style="bold")
    for column in ("#", "at", "step", "phase", "status", "detail"):
        table.add_column(column)
    colours = {"succeeded": "green", "compensated": "yellow", "failed": "red",
               "timed_out": "red", "in_doubt": "yellow", "late_success": "yellow",
               "aborted": "red", "completed": "bold green"}
    for number, entry in enumerate(order["timeline"], start=1):
        status = entry["status"]
        table.add_row(str(number), str(entry.get("at") or "-")[11:23], entry["step"],
                      entry["phase"], f"[{colours[status]}]{status}[/]"
                      if status in colours else status, entry["detail"])
    return table


def print_checks(checks: list[Check]) -> int:
    for check in checks:
        mark = "[green]PASS[/]" if check.passed else "[red]FAIL[/]"
        console.print(f"  {mark} {check.name}: {check.detail}")
    return sum(not check.passed for check in checks)


async def closing_checks(cloud: Cloud, poison: PoisonOutcome) -> tuple[list[Check], Table]:
    """The invariants over the whole run, and the summary they are read from."""
    sagas = cloud.sagas_by_state()
    wall = time.monotonic() - cloud.started
    handled = cloud.handled_messages()
    letters = await cloud.dead_letters()
    pending = await cloud.pending_outbox()
    summary = Table(show_header=False)
    summary.add_column(style="bold")
    summary.add_column()
    summary.add_row("SAGAS BY STATE", ", ".join(
        f"{state}: {count}" for state, count in sorted(sagas.items())))
    summary.add_row("EVENTS PER SECOND", f"{handled / wall:.1f} ({handled} Service Bus "
                    f"messages handled by the host's functions in {wall:.1f}s wall time, "
                    "step-deadline waits included)")
    dead = Table(show_header=True, header_style="bold", box=None)
    for column in ("entity", "seq", "messageId", "deadLetterReason", "deliveryCount", "body"):
        dead.add_column(column, no_wrap=column != "body")
    for letter in letters:
        dead.add_row(letter.entity, str(letter.sequence_number), letter.message_id or "-",
                     letter.reason or "-", str(letter.delivery_count),
                     repr((letter.body or b"")[:32]) + "...")
    summary.add_row("DEAD-LETTER CONTENTS", dead if letters else "none")
    summary.add_row("PENDING OUTBOX ROWS", str(pending))
    failures = Counter(record.function_name for record in cloud.host.invoker.records
                       if not record.succeeded)
    summary.add_row("FAILED INVOCATIONS", ", ".join(
        f"{name}: {count}" for name, count in sorted(failures.items())) or "none")
    unexpected = [letter for letter in letters if letter.message_id != poison.message_id]
    checks = [
        Check("every saga terminal", bool(sagas) and set(sagas) <= TERMINAL,
              ", ".join(sorted(sagas)) or "no sagas"),
        Check("no lost event", pending == 0 and not unexpected,
              f"{pending} pending outbox row(s), {len(unexpected)} unexpected dead letter(s)"),
        Check("the poison message is in the dead-letter queue",
              any(letter.message_id == poison.message_id for letter in letters),
              f"{poison.queue}: {poison.message_id}"),
    ]
    return checks, summary


class LoggedErrors(logging.Handler):
    """Collects the app's ERROR lines instead of printing them over the progress display;
    the poison story shows its own and the summary shows any other."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        # The host logs each failed invocation with its traceback; the summary counts them.
        if not (record.name == "devstack.host" and record.getMessage().startswith("Executed ")):
            self.lines.append(f"{record.name}: {record.getMessage()}")


logged = LoggedErrors()


async def demo() -> int:
    console.print(Panel.fit(
        "Order stories on the local cloud, no Docker:\n"
        "  Azurite (tables, in memory) · devstack Service Bus over AMQP 1.0 "
        "(infra/entities/servicebus.json)\n"
        "  devstack Functions host running function_app.py · real HTTP · the official SDKs"))
    failed, launched = 0, time.monotonic()
    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                        MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                        transient=True)
    with progress:
        task = progress.add_task("starting Azurite, devstack and the host", total=len(STORIES) + 1)
        async with local_cloud() as cloud:
            console.print(f"host on {cloud.host.base_url}, Service Bus on 127.0.0.1:"
                          f"{cloud.devstack.port}, step deadline {STEP_TIMEOUT_SECONDS}s\n")
            for number, story in enumerate(STORIES, start=1):
                def say(text: str, number: int = number) -> None:
                    progress.update(task, description=f"story {number}: {text}")

                outcome = await run(story, cloud, say)
                console.rule(f"[bold]{number}. {story.title}[/] ({outcome.seconds:.1f}s)")
                order = outcome.order
                reason = f" ({order['failure']['reason']})" if order["failure"] else ""
                console.print(f"order {order['orderId']}: [bold]{order['status']}[/]{reason}")
                console.print(timeline_table(order))
                failed += print_checks(outcome.checks)
                progress.advance(task)

            number = len(STORIES) + 1
            poison = await run_poison(cloud, lambda text: progress.update(
                task, description=f"story {number}: {text}"))
            progress.advance(task)
            console.rule(f"[bold]{number}. {POISON_TITLE}[/] ({poison.seconds:.1f}s)")
            letter = poison.letter
            console.print(f"sent {POISON_BODY!r} as {poison.message_id} to {poison.queue}")
            console.print(f"dead-lettered: reason [bold]{letter.reason}[/] "
                          f"({letter.description}), delivery count {letter.delivery_count} as "
                          "the SDK reads it: the function settled it itself on its first "
                          "delivery (ServiceBusMessageActions)")
            if poison.failures:
                console.print(f"the host's invocation error ({len(poison.failures)}x): "
                              f"{poison.failures[-1].error}")
            for line in sorted({line for line in logged.lines if poison.message_id in line}):
                console.print(f"the function logged ({logged.lines.count(line)}x): {line}",
                              markup=False, highlight=False)
            failed += print_checks(poison.checks)
            checks, summary = await closing_checks(cloud, poison)
            stories_took = time.monotonic() - cloud.started
    console.rule("[bold]Summary")
    console.print(summary)
    failed += print_checks(checks)
    for line in (line for line in logged.lines if poison.message_id not in line):
        console.print(f"  logged: {line}", markup=False, highlight=False)
    verdict = "[green]all invariants hold[/]" if not failed else f"[red]{failed} check(s) failed[/]"
    console.rule(f"{len(STORIES) + 1} stories in {stories_took:.1f}s "
                 f"({time.monotonic() - launched:.1f}s with start and stop): {verdict}")
    return 1 if failed else 0


async def main() -> int:
    logging.basicConfig(level=logging.ERROR, handlers=[logged])
    running = asyncio.current_task()
    assert running is not None

    def stop() -> None:
        StopRequest.requested = True
        running.cancel()

    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(stop_signal, stop)
    return await demo()


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except (Interrupted, KeyboardInterrupt, asyncio.CancelledError):
        console.print("[yellow]interrupted: everything started was stopped[/]")
        sys.exit(130)
