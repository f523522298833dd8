"""`make chaos`: a seeded, bounded chaos run on the local cloud, judged by invariants.

Starts Azurite behind devstack's storage fault proxy, devstack's Service Bus and Event Hubs,
and devstack's Functions host running `function_app.py` as a subprocess (so it can be killed
with SIGKILL and restarted). Each registered workload (`WORKLOADS`: orders now; fraud and
triage add theirs) drives its agent over real HTTP and AMQP while a seeded fault schedule
hits every layer: the broker (devstack's fault API), storage (the proxy), the process (the
host killed mid-run) and the participants (simulator modes). Then the faults stop, the run
drains, and the invariants are checked from what the services hold - tables, queues,
dead-letter queues, the payment stream - never from the app's own counters. The report is a
table of figures and the invariants; the exit code is 0 only if every invariant holds.

    python scripts/chaos.py --seed 7 --orders 500 --duration 250 --faults all [--json]
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Generic, TypeVar

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as `python scripts/chaos.py` from anywhere

import aiohttp  # noqa: E402
import typer  # noqa: E402
from azure.data.tables import TableServiceClient  # noqa: E402
from azure.eventhub import EventHubConsumerClient  # noqa: E402
from azure.servicebus import ServiceBusMessage  # noqa: E402
from azure.servicebus.aio import ServiceBusClient  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from agents.backbone.tables import LOG_PREFIX, STATE_ROW, prefix_filter  # noqa: E402
from agents.contracts.orders import PAYMENT_CHARGED  # noqa: E402
from agents.ops.config import Catalogue, ServiceBusEntity  # noqa: E402
from agents.ops.connections import Connections  # noqa: E402
from agents.ops.deadletters import list_dead_letters  # noqa: E402
from agents.ops.outbox import pending_rows  # noqa: E402
from agents.ops.servicebus import peek_all, receiver  # noqa: E402
from agents.orders import bootstrap, entities  # noqa: E402
from agents.orders.edge import order_id_for  # noqa: E402
from agents.orders.model import Service  # noqa: E402
from agents.orders.simulated import bootstrap as simulated_bootstrap  # noqa: E402
from devstack.azurite import Azurite, free_port  # noqa: E402
from devstack.server import DevStack  # noqa: E402
from devstack.storageproxy import StorageFault, StorageProxy  # noqa: E402
from scripts import demo  # noqa: E402

E = TypeVar("E")
Say = Callable[[str], None]
MASTER_KEY = "chaos-master-key"
HOST_READY_SECONDS = 90.0
POST_DEADLINE_SECONDS = 120.0
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=30)
log = logging.getLogger("chaos")


# ====================================================================== invariants

@dataclass(frozen=True)
class Violation:
    ids: tuple[str, ...]
    seen: str


@dataclass(frozen=True)
class Invariant(Generic[E]):
    """A rule over one workload's evidence: `check` returns what breaks it (none: holds)."""

    name: str
    check: Callable[[E], list[Violation]]


@dataclass(frozen=True)
class Verdict:
    invariant: str
    violations: list[Violation]

    @property
    def held(self) -> bool:
        return not self.violations


def judge(invariants: Sequence[Invariant[E]], evidence: E) -> list[Verdict]:
    return [Verdict(invariant.name, invariant.check(evidence)) for invariant in invariants]


# ---------------------------------------------------------------- the platform's

@dataclass(frozen=True)
class Letter:
    """A dead-lettered message as peeked from its entity's dead-letter queue."""

    entity: str
    message_id: str | None
    reason: str | None
    description: str | None
    saga_id: str | None = None


@dataclass(frozen=True)
class Promise:
    """A dead letter the run must find: a poison input it sent (by MessageId), or one the
    app promised for a saga (by saga id), each with the reason it must carry."""

    entity: str
    reason: str
    why: str
    message_id: str | None = None
    saga_id: str | None = None

    @property
    def id(self) -> str:
        return self.message_id or self.saga_id or "-"

    def matches(self, letter: Letter) -> bool:
        if letter.entity != self.entity:
            return False
        if self.message_id is not None:
            return letter.message_id == self.message_id
        return letter.saga_id == self.saga_id


@dataclass
class PlatformEvidence:
    letters: list[Letter]
    promised: list[Promise]
    pending_outbox: list[str]
    """`table: partition/row -> destination` of every outbox row still pending."""
    undrained: dict[str, dict[str, int]]
    """Entity -> message state -> count, for every entity still holding messages."""


def pair_letters(evidence: PlatformEvidence
                 ) -> tuple[list[tuple[Promise, Letter | None]], list[Letter]]:
    """Each promise with the letter that keeps it (or None), and the letters nobody promised."""
    unclaimed = list(evidence.letters)
    pairs: list[tuple[Promise, Letter | None]] = []
    for promise in evidence.promised:
        found = next((letter for letter in unclaimed if promise.matches(letter)), None)
        if found is not None:
            unclaimed.remove(found)
        pairs.append((promise, found))
    return pairs, unclaimed


def _exact_dead_letters(evidence: PlatformEvidence) -> list[Violation]:
    pairs, unclaimed = pair_letters(evidence)
    missing = [Violation((promise.id,), f"{promise.why}: not in {promise.entity}'s "
                                        "dead-letter queue")
               for promise, letter in pairs if letter is None]
    extra = [Violation((letter.message_id or "-",),
                       f"unexpected in {letter.entity}'s dead-letter queue: {letter.reason}: "
                       f"{letter.description}") for letter in unclaimed]
    return missing + extra


def _dead_letter_reasons(evidence: PlatformEvidence) -> list[Violation]:
    pairs, _ = pair_letters(evidence)
    return [Violation((promise.id,), f"{promise.why}: dead-lettered with reason "
                                     f"{letter.reason!r}, expected {promise.reason!r}")
            for promise, letter in pairs if letter is not None and letter.reason != promise.reason]


def _outbox_flushed(evidence: PlatformEvidence) -> list[Violation]:
    return [Violation((row,), "pending after the sweeper ran") for row in evidence.pending_outbox]


def _queues_drained(evidence: PlatformEvidence) -> list[Violation]:
    return [Violation((entity,), ", ".join(f"{count} {state}" for state, count in states.items()))
            for entity, states in sorted(evidence.undrained.items())]


DEAD_LETTERS_EXACT = "dead-letter queues hold exactly the poison inputs and promised letters"
DEAD_LETTER_REASONS = "every dead letter carries its reason"
PLATFORM_INVARIANTS: list[Invariant[PlatformEvidence]] = [
    Invariant(DEAD_LETTERS_EXACT, _exact_dead_letters),
    Invariant(DEAD_LETTER_REASONS, _dead_letter_reasons),
    Invariant("no outbox row pending after the sweeper", _outbox_flushed),
    Invariant("every queue drained", _queues_drained),
]


# ---------------------------------------------------------------- the orders agent's

@dataclass(frozen=True)
class SagaSeen:
    order_id: str
    status: str
    failure: dict[str, Any] | None
    steps: dict[str, str]
    """Step name -> its status (pending, started, succeeded, compensated, ...)."""


@dataclass
class Movements:
    """One order's effects as the participants recorded them (`movement|...` rows and the
    reservation's state)."""

    charges: int = 0
    refunds: int = 0
    holds: int = 0
    releases: int = 0
    allocated: bool = False
    shipments: int = 0


@dataclass
class OrdersEvidence:
    sagas: dict[str, SagaSeen]
    movements: dict[str, Movements]
    charge_events: dict[str, set[str]]
    """Order id -> distinct event ids of its `orders.payment.charged` on the payment stream."""
    answers: dict[str, set[str]]
    """Idempotency-Key -> the order ids its HTTP answers named (empty: never answered)."""

    def moved(self, order_id: str) -> Movements:
        return self.movements.get(order_id, Movements())


def _sagas_terminal(evidence: OrdersEvidence) -> list[Violation]:
    return [Violation((saga.order_id,), f"{saga.status}; steps " + ", ".join(
        f"{name} {status}" for name, status in saga.steps.items()))
        for saga in evidence.sagas.values() if saga.status not in demo.TERMINAL]


def _no_double_charge(evidence: OrdersEvidence) -> list[Violation]:
    found = [Violation((order_id,), f"{moved.charges} charges recorded")
             for order_id, moved in evidence.movements.items() if moved.charges > 1]
    found += [Violation((order_id,), f"{len(events)} distinct charge events on the payment "
                                     f"stream: {', '.join(sorted(events))}")
              for order_id, events in evidence.charge_events.items() if len(events) > 1]
    return found


def _charges_on_stream(evidence: OrdersEvidence) -> list[Violation]:
    charged = {order_id for order_id, moved in evidence.movements.items() if moved.charges}
    announced = {order_id for order_id, events in evidence.charge_events.items() if events}
    return ([Violation((order_id,), "charged, but no charge event on the payment stream")
             for order_id in sorted(charged - announced)]
            + [Violation((order_id,), "a charge event on the payment stream, no charge recorded")
               for order_id in sorted(announced - charged)])


def _charges_settled(evidence: OrdersEvidence) -> list[Violation]:
    found = []
    for order_id, saga in evidence.sagas.items():
        moved = evidence.moved(order_id)
        completed = saga.status == "completed"
        kept = moved.charges - moved.refunds
        if (completed and (moved.charges, moved.refunds) != (1, 0)) or \
                (not completed and (kept != 0 or moved.refunds > 1)):
            found.append(Violation((order_id,), f"{saga.status} with {moved.charges} charge(s), "
                                                f"{moved.refunds} refund(s)"))
    return found


def _nothing_shipped_for_compensated(evidence: OrdersEvidence) -> list[Violation]:
    found = []
    for order_id, saga in evidence.sagas.items():
        moved = evidence.moved(order_id)
        if (saga.status != "completed" and moved.shipments) or moved.shipments > 1:
            cause = f" ({saga.failure.get('reason')} at {saga.failure.get('step')})" \
                if saga.failure else ""
            found.append(Violation((order_id,), f"{saga.status}{cause} with {moved.shipments} "
                                                f"shipment(s), {moved.refunds} refund(s)"))
    return found


def _stock_balanced(evidence: OrdersEvidence) -> list[Violation]:
    found = []
    for order_id, saga in evidence.sagas.items():
        moved = evidence.moved(order_id)
        allocations = int(moved.allocated)
        expected = int(saga.status == "completed")
        if moved.holds != moved.releases + allocations or allocations != expected \
                or moved.holds > 1:
            found.append(Violation((order_id,), f"{saga.status} with {moved.holds} hold(s), "
                                                f"{moved.releases} release(s), {allocations} "
                                                "allocation(s)"))
    return found


def _one_order_per_key(evidence: OrdersEvidence) -> list[Violation]:
    found = []
    for key, named in evidence.answers.items():
        order_id = order_id_for(key)
        if named - {order_id}:
            found.append(Violation((key, *sorted(named)), f"answered with {len(named)} order "
                                                          f"id(s), expected {order_id}"))
        if named and order_id not in evidence.sagas:
            found.append(Violation((key, order_id), "answered, but no saga stored"))
    by_key = {order_id_for(key) for key in evidence.answers}
    found += [Violation((order_id,), "a saga no Idempotency-Key names")
              for order_id in sorted(set(evidence.sagas) - by_key)]
    return found


ORDERS_INVARIANTS: list[Invariant[OrdersEvidence]] = [
    Invariant("every saga terminal", _sagas_terminal),
    Invariant("no double charge", _no_double_charge),
    Invariant("every charge is on the payment stream", _charges_on_stream),
    Invariant("every charge belongs to a completed order or has exactly one refund",
              _charges_settled),
    Invariant("nothing shipped for a compensated order", _nothing_shipped_for_compensated),
    Invariant("stock holds = releases + allocations", _stock_balanced),
    Invariant("one order per Idempotency-Key", _one_order_per_key),
]


# ====================================================================== the local cloud

class HostProcess:
    """devstack's Functions host running function_app.py in its own process, on a fixed
    port across restarts, its log appended to `log_path`."""

    def __init__(self, settings: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.settings = {**settings, "DEVSTACK_HOST_MASTER_KEY": MASTER_KEY}
        self.log_path = log_path
        self.kills = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, http: aiohttp.ClientSession) -> None:
        with self.log_path.open("ab") as log_file:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "devstack", "app", str(ROOT), "--port", str(self.port)],
                cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT,
                env={**os.environ, **self.settings, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + HOST_READY_SECONDS
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"the Functions host exited with {self._process.returncode}; "
                                   f"see {self.log_path}")
            try:
                async with http.get(f"{self.base_url}/admin/host/status",
                                    headers={"x-functions-key": MASTER_KEY}) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the Functions host did not answer within "
                                   f"{HOST_READY_SECONDS}s; see {self.log_path}")
            await asyncio.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no settlement; in-flight work and locks are lost."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait()
            self.kills += 1

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def invocations(self) -> Counter[tuple[str, str]]:
        """(function, Succeeded|Failed) -> how many, from the host's own log lines."""
        executed = re.compile(r"Executed 'Functions\.(\w+)' \((Succeeded|Failed)")
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return Counter((match[1], match[2]) for match in executed.finditer(text))

    def redeliveries_absorbed(self) -> int:
        """Successful invocations for a Service Bus message that had already been handled
        successfully (a duplicate the inbox absorbed), from the host's log lines."""
        executing = re.compile(r"Executing 'Functions\.\w+' \(Reason='\(null\)MessageReceived "
                               r"\(MessageId=([^,]+),.*?Id=([0-9a-f-]+)\)$", re.MULTILINE)
        executed = re.compile(r"Executed 'Functions\.\w+' \(Succeeded, Id=([0-9a-f-]+)")
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        message_of = {match[2]: match[1] for match in executing.finditer(text)}
        handled = Counter(message_of[match[1]] for match in executed.finditer(text)
                          if match[1] in message_of)
        return sum(count - 1 for count in handled.values())


@dataclass
class ChaosCloud:
    """The running local cloud, its fault APIs, and clients that look around the proxy."""

    azurite: Azurite
    proxy: StorageProxy
    devstack: DevStack
    host: HostProcess
    http: aiohttp.ClientSession
    bus: ServiceBusClient
    tables: TableServiceClient
    ops: Connections
    catalogue: Catalogue

    async def call(self, method: str, path: str, body: Any = None,
                   headers: dict[str, str] | None = None) -> tuple[int, Any]:
        async with self.http.request(
                method, f"{self.host.base_url}/api/{path}", json=body,
                headers={"x-functions-key": demo.FUNCTION_KEY, **(headers or {})}) as response:
            text = await response.text()
            return response.status, json.loads(text) if text else None

    async def call_until_answered(self, method: str, path: str, body: Any = None,
                                  headers: dict[str, str] | None = None,
                                  deadline: float = POST_DEADLINE_SECONDS
                                  ) -> tuple[int | None, Any, int]:
        """As a well-behaved client: retry connection failures, 408, 429 and 5xx with
        backoff until `deadline` seconds pass; returns (status, body, attempts)."""
        give_up, attempts, status, answer = time.monotonic() + deadline, 0, None, None
        while True:
            attempts += 1
            try:
                status, answer = await self.call(method, path, body, headers)
                if status < 500 and status not in (408, 429):
                    return status, answer, attempts
            except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError):
                status, answer = None, None
            if time.monotonic() > give_up:
                return status, answer, attempts
            await asyncio.sleep(min(0.25 * 2 ** attempts, 4.0))

    async def run_sweeper(self) -> None:
        """Run the app's outbox sweepers now, as their timers would."""
        for sweeper in demo.OUTBOX_SWEEPERS:
            async with self.http.post(
                    f"{self.host.base_url}/admin/functions/{sweeper}",
                    json={"input": ""}, headers={"x-functions-key": MASTER_KEY}) as response:
                if response.status != 202:
                    raise RuntimeError(
                        f"{sweeper}: HTTP {response.status}: {await response.text()}")


def _peek_states(ops: Connections, entity: ServiceBusEntity, dead_letter: bool
                 ) -> list[Any]:
    with ops.own_servicebus(entity.setting) as client, \
            receiver(client, entity, dead_letter=dead_letter) as peeker:
        return peek_all(peeker)


def undrained(cloud: ChaosCloud) -> dict[str, dict[str, int]]:
    """Entity -> message state -> count, for each queue or subscription holding messages."""
    entities_ = list(cloud.catalogue.servicebus)
    with ThreadPoolExecutor(max_workers=8) as pool:
        peeked = list(pool.map(lambda entity: _peek_states(cloud.ops, entity, False), entities_))
    found: dict[str, dict[str, int]] = {}
    for entity, messages in zip(entities_, peeked, strict=True):
        if messages:
            found[entity.path] = dict(Counter(str(m.state.name).lower() for m in messages))
    return found


@asynccontextmanager
async def chaos_cloud(seed: int, workdir: Path, step_timeout: float
                      ) -> AsyncIterator[ChaosCloud]:
    """Azurite behind the storage fault proxy, devstack, and the host as a subprocess;
    everything stopped in reverse order on the way out."""
    catalogue = Catalogue.load()
    with ExitStack() as servers:
        azurite = servers.enter_context(Azurite())
        proxy = servers.enter_context(StorageProxy(azurite, seed=seed))
        devstack = servers.enter_context(DevStack(
            [ROOT / "infra/entities/servicebus.json", ROOT / "infra/entities/eventhubs.json"],
            port=0))
        settings = {**demo.app_settings(proxy.connection_string, devstack),
                    bootstrap.STEP_TIMEOUT_SETTING: f"{step_timeout:g}"}
        host = HostProcess(settings, workdir / "host.log")
        servers.callback(host.stop)
        async with AsyncExitStack() as opened:
            http = await opened.enter_async_context(aiohttp.ClientSession(timeout=HTTP_TIMEOUT))
            await host.start(http)
            bus = await opened.enter_async_context(
                ServiceBusClient.from_connection_string(devstack.connection_string))
            # The checks look at the services directly, never through the proxy.
            ops = servers.enter_context(Connections({
                **{entity.setting: devstack.connection_string for entity in catalogue.servicebus},
                entities.STATE_STORAGE: azurite.connection_string}))
            tables = servers.enter_context(
                TableServiceClient.from_connection_string(azurite.connection_string))
            yield ChaosCloud(azurite, proxy, devstack, host, http, bus, tables, ops, catalogue)


# ====================================================================== the fault schedule

BROKER_FAULTS = ("deliver-twice", "drop-connections", "expire-locks", "server-busy",
                 "broker-latency", "duplicate-send")
STORAGE_FAULTS = ("storage-unavailable", "storage-timeout", "storage-latency",
                  "storage-drop-response")
PROCESS_FAULTS = ("host-kill",)
PARTICIPANT_FAULTS = ("participant-slow", "participant-flaky", "participant-fail")
LAYERS = {"broker": BROKER_FAULTS, "storage": STORAGE_FAULTS, "process": PROCESS_FAULTS,
          "participants": PARTICIPANT_FAULTS}
ALL_FAULTS = (*BROKER_FAULTS, *STORAGE_FAULTS, *PROCESS_FAULTS, *PARTICIPANT_FAULTS)
# Seconds of load per occurrence of each kind (at least one of each chosen kind per run). A
# host kill strands its locked messages for the queues' LockDuration (1 min), so it is rarer.
PERIOD = {kind: 20.0 for kind in ALL_FAULTS} | {"host-kill": 120.0, "participant-fail": 120.0}
STORAGE_TABLES = (bootstrap.SAGAS_TABLE, *simulated_bootstrap.LEDGER_TABLES.values(), None)
SERVICES = tuple(service.value for service in Service)


def fault_kinds(spec: str) -> list[str]:
    """`all`, `none`, or a comma list of kinds and layers (broker, storage, process,
    participants)."""
    chosen: list[str] = []
    for part in (word.strip() for word in spec.split(",") if word.strip()):
        if part == "all":
            chosen.extend(ALL_FAULTS)
        elif part in LAYERS:
            chosen.extend(LAYERS[part])
        elif part in ALL_FAULTS:
            chosen.append(part)
        elif part != "none":
            raise typer.BadParameter(f"unknown fault kind {part!r}; kinds: "
                                     f"{', '.join(ALL_FAULTS)}; layers: {', '.join(LAYERS)}")
    return list(dict.fromkeys(chosen))


@dataclass(frozen=True)
class FaultEvent:
    at: float
    """Seconds into the load phase."""
    kind: str
    target: str | None = None
    """A queue or hub, a table, a simulated service (None: any)."""
    amount: float = 0.0
    """How many times, the share of requests, or seconds, depending on the kind."""
    hold: float = 0.0
    """How long a window lasts (a host kill: how long the host stays down)."""

    def describe(self) -> str:
        parts = [self.kind, self.target or "*"]
        if self.amount:
            parts.append(f"{self.amount:g}")
        if self.hold:
            parts.append(f"for {self.hold:.1f}s")
        return " ".join(parts)


def _draw(rng: random.Random, kind: str, window: float, duration: float
          ) -> tuple[str | None, float, float]:
    """(target, amount, hold) of one fault of `kind`."""
    destinations = (*entities.QUEUES, entities.PAYMENTS_HUB)
    hold = round(rng.uniform(0.5, 1.0) * window, 2)
    if kind == "deliver-twice":
        return rng.choice(entities.QUEUES), rng.randint(3, 10), 0.0
    if kind == "expire-locks":
        return rng.choice(entities.QUEUES), 0.0, 0.0
    if kind in ("server-busy", "duplicate-send"):
        return rng.choice(destinations), rng.randint(2, 6), 0.0
    if kind == "broker-latency":
        return None, round(rng.uniform(0.05, 0.3), 2), hold
    if kind in STORAGE_FAULTS:  # the share of matching requests hit (latency: seconds)
        low, high = {"storage-unavailable": (0.05, 0.3), "storage-latency": (0.05, 0.4),
                     "storage-drop-response": (0.05, 0.2)}.get(kind, (0.03, 0.1))
        return rng.choice(STORAGE_TABLES), round(rng.uniform(low, high), 2), hold
    if kind == "host-kill":
        return None, 0.0, round(rng.uniform(1.0, 3.0), 2)
    if kind == "participant-slow":
        return rng.choice(SERVICES), round(rng.uniform(1.0, 3.0), 1), hold
    if kind == "participant-fail":  # "down for 30 s" in a long run
        return rng.choice(SERVICES), 0.0, min(30.0, max(hold, duration / 4))
    if kind == "participant-flaky":
        return rng.choice(SERVICES), 0.0, hold
    return None, 0.0, 0.0  # drop-connections: one shot, everywhere


def schedule(rng: random.Random, kinds: Sequence[str], duration: float) -> list[FaultEvent]:
    """The faults of a run, drawn from `rng` before it starts (so a seed names a run)."""
    events: list[FaultEvent] = []
    window = min(max(duration / 25, 3.0), 10.0)  # a few seconds at a time, as on a bad day
    for kind in kinds:
        for _ in range(max(1, round(duration / PERIOD[kind]))):
            at = round(rng.uniform(0.1, 0.8) * duration, 2)
            events.append(FaultEvent(at, kind, *_draw(rng, kind, window, duration)))
    return sorted(events, key=lambda event: (event.at, event.kind))


STORAGE_TIMEOUT_HOLD_SECONDS = 2.0  # how long a timed-out storage request hangs before it is cut


class FaultRunner:
    """Applies a schedule to a running cloud and counts what it did."""

    def __init__(self, cloud: ChaosCloud, say: Say) -> None:
        self.cloud = cloud
        self.say = say
        self.applied: Counter[str] = Counter()
        self.armed_broker: Counter[str] = Counter()
        self._host_lock = asyncio.Lock()

    async def run(self, events: Sequence[FaultEvent], started: float) -> None:
        windows = []
        for event in events:
            await asyncio.sleep(max(0.0, started + event.at - time.monotonic()))
            self.say(f"fault: {event.describe()}")
            windows.append(asyncio.create_task(self.apply(event)))
        await asyncio.gather(*windows)

    async def apply(self, event: FaultEvent) -> None:
        faults, kind = self.cloud.devstack.faults, event.kind
        self.applied[kind] += 1
        times = int(event.amount)
        if kind == "deliver-twice":
            faults.deliver_twice(event.target, times=times)
            self.armed_broker["deliver-twice"] += times
        elif kind == "drop-connections":
            faults.drop_connections()
        elif kind == "expire-locks":
            faults.expire_locks(event.target)
        elif kind == "server-busy":
            faults.server_busy(event.target, times=times)
        elif kind == "duplicate-send":
            faults.duplicate_sends(event.target, times=times)
            self.armed_broker["duplicate-send"] += times
        elif kind == "broker-latency":
            faults.add_latency(event.amount)
            await asyncio.sleep(event.hold)
            faults.add_latency(0)
        elif kind.startswith("storage-"):
            await self._storage_window(event)
        elif kind == "host-kill":
            async with self._host_lock:
                self.cloud.host.kill()
                await asyncio.sleep(event.hold)
                await self.cloud.host.start(self.cloud.http)
        else:
            await self._participant_window(event)

    async def _storage_window(self, event: FaultEvent) -> None:
        proxy, resource = self.cloud.proxy.faults, event.target
        armed: StorageFault = {
            "storage-unavailable": lambda: proxy.unavailable(event.amount, resource=resource),
            "storage-timeout": lambda: proxy.timeout(STORAGE_TIMEOUT_HOLD_SECONDS, event.amount,
                                                     resource=resource),
            "storage-latency": lambda: proxy.latency(event.amount, 0.5, resource=resource),
            "storage-drop-response": lambda: proxy.drop_response(event.amount,
                                                                 resource=resource),
        }[event.kind]()
        await asyncio.sleep(event.hold)
        proxy.disarm(armed)

    async def _participant_window(self, event: FaultEvent) -> None:
        mode = event.kind.removeprefix("participant-")
        body: dict[str, Any] = {"mode": mode, "scope": "*"}
        if mode == "slow":
            body["slowSeconds"] = event.amount
        await self.set_mode(str(event.target), body)
        await asyncio.sleep(event.hold)
        await self.set_mode(str(event.target), {"mode": "normal", "scope": "*"})

    async def set_mode(self, service: str, body: dict[str, Any]) -> None:
        status, answer, _ = await self.cloud.call_until_answered(
            "POST", f"simulators/{service}/mode", body)
        if status != 200:
            raise RuntimeError(f"simulator mode {service} {body}: HTTP {status} {answer}")

    def broker_duplicates(self) -> dict[str, int]:
        """How many armed duplicate deliveries and duplicate sends the broker really made."""
        state = self.cloud.devstack.fault_state
        left = self.cloud.devstack.call(lambda: (sum(state.duplicates.values()),
                                                 sum(state.duplicate_sends.values())))
        return {"deliver-twice": self.armed_broker["deliver-twice"] - left[0],
                "duplicate-send": self.armed_broker["duplicate-send"] - left[1]}

    def calm(self) -> None:
        """Stop every broker and storage fault (windows end on their own)."""
        self.cloud.devstack.faults.clear()
        self.cloud.proxy.faults.clear()


# ====================================================================== workloads

@dataclass
class Report:
    """What one workload contributes to the run's report."""

    name: str
    verdicts: list[Verdict]
    figures: dict[str, str]
    """Label -> value, shown in the figures table (and in the JSON)."""
    promised: list[Promise]
    latencies: dict[str, list[float]] = field(default_factory=dict)


class Workload(ABC):
    """One agent's share of a run: what it sends, when it is done, what it must hold."""

    name: str

    @abstractmethod
    async def prepare(self, cloud: ChaosCloud) -> None:
        """Before the load: set up what the workload needs (e.g. scoped simulator modes)."""

    @abstractmethod
    async def drive(self, cloud: ChaosCloud, started: float, say: Say) -> None:
        """The load, spread over the run's duration from `started`."""

    @abstractmethod
    async def unfinished(self, cloud: ChaosCloud) -> int:
        """How much of its work has not reached an end yet (0: done)."""

    @abstractmethod
    async def collect(self, cloud: ChaosCloud) -> Report:
        """Read the evidence from the services, judge it, and sum up."""


@dataclass(frozen=True)
class Profile:
    """A kind of order: which card and SKU it uses and the simulator mode that scope has."""

    name: str
    weight: float
    card: str | None = None
    sku: str = "sku-blue-mug"
    service: Service | None = None
    mode: dict[str, Any] | None = None


def profiles(step_timeout: float) -> tuple[Profile, ...]:
    """The kinds of order a run mixes; a "late" reply misses its step's deadline by 3 s."""
    late = step_timeout + 3.0
    return (
        Profile("normal", 0.70),
        Profile("declined", 0.06, card="tok-declined", service=Service.PAYMENTS,
                mode={"mode": "decline"}),
        Profile("late-charge", 0.06, card="tok-late", service=Service.PAYMENTS,
                mode={"mode": "slow", "slowSeconds": late}),
        Profile("flaky-gateway", 0.06, card="tok-flaky", service=Service.PAYMENTS,
                mode={"mode": "flaky"}),
        Profile("out-of-stock-after-charge", 0.06, sku="sku-last-one",
                service=Service.INVENTORY, mode={"mode": "out-of-stock-after-charge"}),
        Profile("late-shipping", 0.06, sku="sku-slow-parcel", service=Service.SHIPPING,
                mode={"mode": "slow", "slowSeconds": late}),
    )


REPOST_SHARE = 0.2


@dataclass(frozen=True)
class OrderPlan:
    key: str
    at: float
    profile: Profile
    body: dict[str, Any]
    repost: str | None
    """None, "concurrent" (a second POST at once) or "later" (a second POST seconds on)."""


@dataclass(frozen=True)
class Posted:
    key: str
    status: int | None
    order_id: str | None
    seconds: float
    attempts: int


@dataclass(frozen=True)
class PoisonInput:
    entity: str
    body: bytes
    reason: str
    why: str


POISON_INPUTS = (
    PoisonInput(entities.SAGA_QUEUE, demo.POISON_BODY, "InvalidEncoding",
                "malformed JSON sent to orders-saga"),
    PoisonInput(entities.INVENTORY_QUEUE, json.dumps({
        "specversion": "1.0", "id": "chaos-unknown", "source": "/chaos", "type":
        "orders.inventory.teleport-stock", "data": {}}).encode(), "UnknownEventType",
        "an unknown event type sent to orders-inventory"),
    PoisonInput(entities.PAYMENTS_QUEUE, b'{"orderId": "not a cloud event"}', "NotACloudEvent",
                "JSON that is no CloudEvent sent to orders-payments"),
)


def _random_key(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


class OrdersWorkload(Workload):
    """Orders over HTTP with an Idempotency-Key, ~20% re-posted (half of them at once),
    profiles that exercise each simulator mode, and poison inputs on the orders queues."""

    name = "orders"

    def __init__(self, rng: random.Random, orders: int, duration: float, step_timeout: float
                 ) -> None:
        self.duration = duration
        self.profiles = profiles(step_timeout)
        self.plans: list[OrderPlan] = []
        for number in range(orders):
            profile = rng.choices(self.profiles, [p.weight for p in self.profiles])[0]
            repost = rng.choice(("concurrent", "later")) if rng.random() < REPOST_SHARE else None
            body = {"customerId": f"c-{number % 50}", "card": profile.card or f"tok-{number}",
                    "items": [{"sku": profile.sku, "quantity": rng.randint(1, 3),
                               "unitPriceCents": rng.choice((499, 1250, 2999))}]}
            self.plans.append(OrderPlan(_random_key(rng), duration * number / max(orders, 1),
                                        profile, body, repost))
        self.poison_at = duration * rng.uniform(0.3, 0.6)
        self.posted: list[Posted] = []
        self.poison: list[Promise] = []

    async def prepare(self, cloud: ChaosCloud) -> None:
        for profile in self.profiles:
            if profile.service is None or profile.mode is None:
                continue
            scope = f"card:{profile.card}" if profile.card else f"sku:{profile.sku}"
            status, answer = await cloud.call("POST", f"simulators/{profile.service.value}/mode",
                                              {**profile.mode, "scope": scope})
            if status != 200:
                raise RuntimeError(f"simulator mode for {profile.name}: HTTP {status} {answer}")

    async def drive(self, cloud: ChaosCloud, started: float, say: Say) -> None:
        tasks = [asyncio.create_task(self._poison(cloud, started))]
        for number, plan in enumerate(self.plans, start=1):
            await asyncio.sleep(max(0.0, started + plan.at - time.monotonic()))
            tasks.append(asyncio.create_task(self._order(cloud, plan)))
            if number % 25 == 0:
                say(f"orders: {number}/{len(self.plans)} posted")
        await asyncio.gather(*tasks)

    async def _post(self, cloud: ChaosCloud, plan: OrderPlan) -> None:
        began = time.monotonic()
        status, answer, attempts = await cloud.call_until_answered(
            "POST", "orders", plan.body, {"Idempotency-Key": plan.key})
        order_id = answer.get("orderId") if status in (200, 201) and answer else None
        self.posted.append(Posted(plan.key, status, order_id, time.monotonic() - began,
                                  attempts))

    async def _order(self, cloud: ChaosCloud, plan: OrderPlan) -> None:
        if plan.repost == "concurrent":
            await asyncio.gather(self._post(cloud, plan), self._post(cloud, plan))
            return
        await self._post(cloud, plan)
        if plan.repost == "later":
            await asyncio.sleep(3.0)
            await self._post(cloud, plan)

    async def _poison(self, cloud: ChaosCloud, started: float) -> None:
        await asyncio.sleep(max(0.0, started + self.poison_at - time.monotonic()))
        for number, poison in enumerate(POISON_INPUTS):
            message_id = f"chaos-poison-{number}-{uuid.uuid4().hex[:8]}"
            async with cloud.bus.get_queue_sender(poison.entity) as sender:
                await sender.send_messages(ServiceBusMessage(
                    poison.body, message_id=message_id, content_type="application/json"))
            self.poison.append(Promise(poison.entity, poison.reason, poison.why,
                                       message_id=message_id))

    def _sagas(self, cloud: ChaosCloud) -> dict[str, SagaSeen]:
        table = cloud.tables.get_table_client(bootstrap.SAGAS_TABLE)
        sagas = {}
        for row in table.query_entities("RowKey eq @row", parameters={"row": STATE_ROW},
                                        select=["PartitionKey", "state"]):
            state = json.loads(row["state"])
            sagas[state["sagaId"]] = SagaSeen(
                state["sagaId"], state["status"], state.get("failure"),
                {name: step["status"] for name, step in state["steps"].items()})
        return sagas

    async def unfinished(self, cloud: ChaosCloud) -> int:
        sagas = await asyncio.to_thread(self._sagas, cloud)
        return sum(saga.status not in demo.TERMINAL for saga in sagas.values())

    def _movements(self, cloud: ChaosCloud) -> dict[str, Movements]:
        found: dict[str, Movements] = {}
        prefixes = {Service.PAYMENTS: "charge-", Service.INVENTORY: "reservation-",
                    Service.SHIPPING: ""}
        counted = {"charge": "charges", "refund": "refunds", "hold": "holds",
                   "release": "releases", "shipment": "shipments"}
        for service, table_name in simulated_bootstrap.LEDGER_TABLES.items():
            table = cloud.tables.get_table_client(table_name)
            for row in table.list_entities():
                order_id = str(row["PartitionKey"]).removeprefix(prefixes[service])
                moved = found.setdefault(order_id, Movements())
                kind = row.get("movement")
                if kind in counted:
                    setattr(moved, counted[kind], getattr(moved, counted[kind]) + 1)
                elif service is Service.INVENTORY and row["RowKey"] == STATE_ROW:
                    moved.allocated = json.loads(row["state"])["status"] == "allocated"
        return found

    def _saga_seconds(self, cloud: ChaosCloud) -> list[float]:
        """Each saga's first to last step-log entry, from the rows' write times."""
        table = cloud.tables.get_table_client(bootstrap.SAGAS_TABLE)
        spans: dict[str, list[datetime]] = {}
        for row in table.query_entities(prefix_filter(LOG_PREFIX),
                                        select=["PartitionKey", "At"]):
            if isinstance(row.get("At"), datetime):
                spans.setdefault(str(row["PartitionKey"]), []).append(row["At"])
        return [(max(times) - min(times)).total_seconds() for times in spans.values()]

    async def collect(self, cloud: ChaosCloud) -> Report:
        sagas = await asyncio.to_thread(self._sagas, cloud)
        movements = await asyncio.to_thread(self._movements, cloud)
        events = await asyncio.to_thread(read_stream, cloud.devstack.connection_string,
                                         entities.PAYMENTS_HUB)
        charge_events: dict[str, set[str]] = {}
        for event in events:
            if event.get("type") == PAYMENT_CHARGED:
                charge_events.setdefault(str(event["data"]["orderId"]), set()).add(
                    str(event["id"]))
        answers: dict[str, set[str]] = {plan.key: set() for plan in self.plans}
        for posted in self.posted:
            if posted.order_id is not None:
                answers[posted.key].add(posted.order_id)
        evidence = OrdersEvidence(sagas, movements, charge_events, answers)
        promised = [*self.poison, *(
            Promise(entities.SAGA_QUEUE, "CompensationExhausted",
                    f"saga {saga.order_id}: compensation of {step} exhausted",
                    saga_id=saga.order_id)
            for saga in sagas.values() for step, status in saga.steps.items()
            if status == "compensation_failed")]
        return Report(self.name, judge(ORDERS_INVARIANTS, evidence),
                      self._figures(evidence, events, cloud), promised,
                      {"POST /api/orders (client-observed, retries included)":
                       [posted.seconds for posted in self.posted if posted.order_id],
                       "order saga, first to last step (from the step log)":
                       await asyncio.to_thread(self._saga_seconds, cloud)})

    def _figures(self, evidence: OrdersEvidence, events: list[dict[str, Any]],
                 cloud: ChaosCloud) -> dict[str, str]:
        statuses = Counter(str(posted.status) for posted in self.posted)
        by_state = Counter(saga.status for saga in evidence.sagas.values())
        causes = Counter(str((saga.failure or {}).get("reason") or "-")
                         for saga in evidence.sagas.values() if saga.status != "completed")
        profile_of = {order_id_for(plan.key): plan.profile.name for plan in self.plans}
        outcomes: dict[str, Counter[str]] = {}
        for saga in evidence.sagas.values():
            outcomes.setdefault(profile_of.get(saga.order_id, "?"), Counter())[saga.status] += 1
        totals = Movements()
        for moved in evidence.movements.values():
            for name in ("charges", "refunds", "holds", "releases", "shipments"):
                setattr(totals, name, getattr(totals, name) + getattr(moved, name))
        reposts = sum(plan.repost is not None for plan in self.plans)
        replayed = Counter(str(event.get("id")) for event in events)
        return {
            "orders: keys posted": f"{len(self.plans)} ({reposts} re-posted, "
                                   f"{sum(p.repost == 'concurrent' for p in self.plans)} "
                                   "of them concurrently)",
            "orders: HTTP answers": ", ".join(f"{status}: {count}" for status, count
                                              in sorted(statuses.items())),
            "orders: client retries": str(sum(posted.attempts - 1 for posted in self.posted)),
            "orders: duplicate POSTs absorbed": str(sum(1 for posted in self.posted
                                                        if posted.status == 200)),
            "orders: sagas by state": ", ".join(f"{state}: {count}" for state, count
                                                in sorted(by_state.items())),
            "orders: outcome by profile": "; ".join(
                f"{name} " + ", ".join(f"{s} {n}" for s, n in sorted(seen.items()))
                for name, seen in sorted(outcomes.items())),
            "orders: compensations by cause": ", ".join(
                f"{cause}: {count}" for cause, count in causes.most_common()) or "none",
            "orders: movements": f"{totals.charges} charges, {totals.refunds} refunds, "
                                 f"{totals.holds} holds, {totals.releases} releases, "
                                 f"{totals.shipments} shipments",
            "orders: payment stream": f"{len(events)} events, "
                                      f"{sum(n - 1 for n in replayed.values())} duplicate "
                                      "copies (same event id)",
            "orders: poison inputs sent": str(len(self.poison)),
        }


def read_stream(connection_string: str, hub: str) -> list[dict[str, Any]]:
    """Every event of every partition of `hub`, from the start up to its last enqueued one,
    with the official SDK's consumer."""
    consumer = EventHubConsumerClient.from_connection_string(
        connection_string, consumer_group="$default", eventhub_name=hub)
    with consumer:
        last = {}
        for partition in consumer.get_partition_ids():
            properties = consumer.get_partition_properties(partition)
            if not properties["is_empty"]:
                last[partition] = int(properties["last_enqueued_sequence_number"])
        events: list[dict[str, Any]] = []
        reached: set[str] = set()
        finished = threading.Event()

        def on_event(context: Any, event: Any) -> None:
            if event is None:
                return
            events.append(json.loads(event.body_as_str()))
            if event.sequence_number >= last[context.partition_id]:
                reached.add(context.partition_id)
                if reached >= set(last):
                    finished.set()

        if not last:
            return []
        worker = threading.Thread(target=consumer.receive, kwargs={
            "on_event": on_event, "starting_position": "-1", "max_wait_time": 0.5},
            daemon=True)
        worker.start()
        if not finished.wait(60):
            raise TimeoutError(f"{hub}: the stream was not read to its end within 60s")
    worker.join(timeout=10)
    return events


WORKLOADS: dict[str, Callable[[random.Random, Options], Workload]] = {}
"""Agent name -> how to make its workload for a run; each agent registers its own."""


# ====================================================================== the run

@dataclass(frozen=True)
class Options:
    seed: int = 1
    orders: int = 500
    duration: float = 250.0
    faults: tuple[str, ...] = ALL_FAULTS
    drain_seconds: float = 240.0
    step_timeout: float = float(demo.STEP_TIMEOUT_SECONDS)


WORKLOADS["orders"] = lambda rng, options: OrdersWorkload(rng, options.orders, options.duration,
                                                         options.step_timeout)


@dataclass
class RunReport:
    options: Options
    schedule: list[FaultEvent]
    reports: list[Report]
    platform: list[Verdict]
    figures: dict[str, str]
    latencies: dict[str, list[float]]
    seconds: dict[str, float]
    injected: dict[str, int]
    """Fault kind -> how many times the schedule applied it."""
    drained: bool

    @property
    def verdicts(self) -> list[Verdict]:
        return [verdict for report in self.reports for verdict in report.verdicts] + \
            self.platform

    @property
    def held(self) -> bool:
        return all(verdict.held for verdict in self.verdicts)


async def drain(cloud: ChaosCloud, workloads: Sequence[Workload], seconds: float,
                say: Say) -> bool:
    """Wait until every workload is done and every queue is empty (the sweeper run each
    pass, as its timer would); False if that does not happen within `seconds`."""
    give_up = time.monotonic() + seconds
    while True:
        await cloud.run_sweeper()
        left = [await workload.unfinished(cloud) for workload in workloads]
        held = await asyncio.to_thread(undrained, cloud)
        if not any(left) and not held:
            return True
        say(f"draining: {sum(left)} unfinished, queues holding "
            f"{sum(sum(states.values()) for states in held.values())} message(s)")
        if time.monotonic() > give_up:
            return False
        await asyncio.sleep(2.0)


async def collect_platform(cloud: ChaosCloud, promised: list[Promise]) -> PlatformEvidence:
    letters = []
    for letter in await asyncio.to_thread(list_dead_letters, cloud.ops, cloud.catalogue):
        saga_id = None
        try:
            data = json.loads(letter.body or b"").get("data")
            saga_id = data.get("sagaId") if isinstance(data, dict) else None
        except (ValueError, AttributeError):
            pass
        letters.append(Letter(letter.entity, letter.message_id, letter.reason,
                              letter.description, saga_id))
    await cloud.run_sweeper()
    pending = [f"{row.table}: {row.row.partition_key} -> {row.row.destination}"
               for row in await asyncio.to_thread(pending_rows, cloud.ops)]
    return PlatformEvidence(letters, promised, pending, await asyncio.to_thread(undrained, cloud))


async def run_chaos(options: Options, say: Say = demo.quiet) -> RunReport:
    rng = random.Random(options.seed)
    workloads = [make(rng, options) for make in WORKLOADS.values()]
    events = schedule(rng, options.faults, options.duration)
    began = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="chaos-"))  # kept: the host's log is evidence
    async with chaos_cloud(options.seed, workdir, options.step_timeout) as cloud:
        say("preparing the workloads")
        for workload in workloads:
            await workload.prepare(cloud)
        faults = FaultRunner(cloud, say)
        started = time.monotonic()
        await asyncio.gather(faults.run(events, started),
                             *(workload.drive(cloud, started, say) for workload in workloads))
        faults.calm()
        loaded = time.monotonic()
        drained = await drain(cloud, workloads, options.drain_seconds, say)
        settled = time.monotonic()
        say("reading the evidence")
        reports = [await workload.collect(cloud) for workload in workloads]
        promised = [promise for report in reports for promise in report.promised]
        platform = judge(PLATFORM_INVARIANTS, await collect_platform(cloud, promised))
        invocations = cloud.host.invocations()
        absorbed = cloud.host.redeliveries_absorbed()
        storage_hits = cloud.proxy.faults.injected()
        storage_requests = cloud.proxy.faults.requests()
        duplicates = faults.broker_duplicates()
        kills = cloud.host.kills
    figures = {
        "faults injected by kind": ", ".join(
            f"{kind}: {count}" for kind, count in sorted(faults.applied.items())) or "none",
        "storage requests hit": ", ".join(
            f"{kind}: {count}" for kind, count in sorted(storage_hits.items())) or "none",
        "storage requests proxied": ", ".join(
            f"{service}: {count}" for service, count in sorted(storage_requests.items())),
        "host kills (SIGKILL) and restarts": str(kills),
        "broker duplicates made": ", ".join(
            f"{kind}: {count}" for kind, count in duplicates.items()),
        "messages handled again and absorbed (inbox)": str(absorbed),
        "host invocations": ", ".join(
            f"{name} {ok} {count}" for (name, ok), count in sorted(invocations.items())),
        "failed invocations (redelivered)": str(sum(
            count for (_, outcome), count in invocations.items() if outcome == "Failed")),
        "drained": "yes" if drained else f"no, not within {options.drain_seconds:.0f}s",
        "host log": str(workdir / "host.log"),
    }
    for report in reports:
        figures.update(report.figures)
    latencies = {label: values for report in reports for label, values in
                 report.latencies.items()}
    return RunReport(options, events, reports, platform, figures, latencies, {
        "load": loaded - started, "drain": settled - loaded, "total": time.monotonic() - began},
        dict(faults.applied), drained)


# ====================================================================== the report

def percentile(values: Sequence[float], share: float) -> float | None:
    """The nearest-rank percentile (None without values)."""
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def latency_text(values: Sequence[float]) -> str:
    p50, p95 = percentile(values, 0.5), percentile(values, 0.95)
    if p50 is None or p95 is None:
        return "no samples"
    return f"p50 {p50:.2f}s, p95 {p95:.2f}s, max {max(values):.2f}s ({len(values)} samples)"


def as_json(run: RunReport) -> dict[str, Any]:
    return {
        "options": asdict(run.options),
        "held": run.held,
        "seconds": {name: round(value, 1) for name, value in run.seconds.items()},
        "schedule": [asdict(event) for event in run.schedule],
        "figures": run.figures,
        "latencies": {label: {"p50": percentile(values, 0.5), "p95": percentile(values, 0.95),
                              "samples": len(values)}
                      for label, values in run.latencies.items()},
        "invariants": [{"invariant": verdict.invariant, "held": verdict.held,
                        "violations": [asdict(v) for v in verdict.violations]}
                       for verdict in run.verdicts],
    }


def print_report(run: RunReport, console: Console, shown: int = 5) -> None:
    figures = Table(title="chaos run: figures", show_header=False)
    figures.add_column(style="bold")
    figures.add_column()
    options = run.options
    figures.add_row("seed, orders, duration, step deadline",
                    f"{options.seed}, {options.orders}, {options.duration:g}s, "
                    f"{options.step_timeout:g}s")
    figures.add_row("fault kinds", ", ".join(options.faults) or "none")
    for label, value in run.figures.items():
        figures.add_row(label, value)
    for label, values in run.latencies.items():
        figures.add_row(label, latency_text(values))
    figures.add_row("wall time", ", ".join(f"{name} {value:.1f}s"
                                           for name, value in run.seconds.items()))
    console.print(figures)
    verdicts = Table(title="invariants (from what the services hold)", show_header=True,
                     header_style="bold")
    for column in ("invariant", "verdict", "violations (ids: what was seen)"):
        verdicts.add_column(column)
    for verdict in run.verdicts:
        lines = [f"{', '.join(v.ids)}: {v.seen}" for v in verdict.violations[:shown]]
        if len(verdict.violations) > shown:
            lines.append(f"... and {len(verdict.violations) - shown} more")
        verdicts.add_row(verdict.invariant, "[green]holds[/]" if verdict.held else
                         f"[red]{len(verdict.violations)} violation(s)[/]", "\n".join(lines))
    console.print(verdicts)
    broken = sum(not verdict.held for verdict in run.verdicts)
    console.rule("[green]every invariant holds[/]" if not broken else
                 f"[red]{broken} invariant(s) broken[/]")


cli = typer.Typer(add_completion=False, help=__doc__.splitlines()[0] if __doc__ else None)


@cli.command()
def main(
    seed: Annotated[int, typer.Option(help="Seeds the workload and the fault schedule.")] = 1,
    orders: Annotated[int, typer.Option(help="How many orders (Idempotency-Keys).")] = 500,
    duration: Annotated[float, typer.Option(help="Seconds of load (and of faults).")] = 250.0,
    faults: Annotated[str, typer.Option(help="all, none, or a comma list of kinds or layers "
                                        f"({', '.join(LAYERS)}).")] = "all",
    drain: Annotated[float, typer.Option(help="Seconds allowed to drain after the load.")
                     ] = 240.0,
    step_timeout: Annotated[float, typer.Option(help="The orders saga's step deadline, "
                                                "seconds.")] = float(demo.STEP_TIMEOUT_SECONDS),
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")
                           ] = False,
) -> None:
    """Run a seeded chaos scenario on the local cloud; exit 0 only if every invariant holds."""
    options = Options(seed, orders, duration, tuple(fault_kinds(faults)), drain, step_timeout)
    console = Console(width=None if sys.stdout.isatty() else 160,
                      stderr=json_output)
    logging.basicConfig(level=logging.ERROR)
    with console.status("starting Azurite, the storage proxy, devstack and the host") as status:
        run = asyncio.run(run_chaos(options, lambda text: status.update(text)))
    if json_output:
        print(json.dumps(as_json(run), indent=2, default=str))
    else:
        print_report(run, console)
    raise typer.Exit(0 if run.held else 1)


if __name__ == "__main__":
    cli()
