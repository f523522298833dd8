"""The chaos run's machinery: invariants and their verdicts, the platform's invariants (dead
letters, outbox, queues), the local cloud (Azurite behind devstack's storage fault proxy,
devstack's Service Bus, Event Hubs and Event Grid, the local model endpoint, and devstack's
Functions host as a subprocess, so it can be killed), the seeded fault schedule, and the
`Workload` each agent implements (`scripts/chaos/orders.py`, `fraud.py`, `triage.py`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import aiohttp
import typer
from azure.data.tables import TableServiceClient
from azure.eventhub import EventHubConsumerClient
from azure.servicebus.aio import ServiceBusClient

from agents.fraud import bootstrap as fraud_bootstrap
from agents.ops.config import Catalogue, ServiceBusEntity
from agents.ops.connections import Connections
from agents.ops.servicebus import peek_all, receiver
from agents.orders import bootstrap, entities
from agents.orders.model import Service
from agents.orders.simulated import bootstrap as simulated_bootstrap
from agents.triage import bootstrap as triage_bootstrap
from devstack.azurite import Azurite, free_port
from devstack.eventgrid import EventGridConfig, LocalEventGrid
from devstack.eventgrid.config import DEV_TOPIC_KEY
from devstack.llm import LocalModelServer
from devstack.server import DevStack
from devstack.storageproxy import StorageFault, StorageProxy
from scripts import demo

ROOT = Path(__file__).resolve().parents[2]
E = TypeVar("E")
Say = Callable[[str], None]
MASTER_KEY = "chaos-master-key"
EVENT_GRID_KEY = "chaos-eventgrid-key"
WEBHOOK_SECRET = "chaos-helpdesk-webhook-secret"
MODEL_DEPLOYMENT = "chat"
HELPDESK_TOPIC = "triage-helpdesk"
# Event Grid's retry schedule (10 s, 30 s, 1 min, ...) shrunk 20x, and a per-attempt timeout
# above the slowest classification (LLM timeout x attempts), so a run can drain.
EVENT_GRID_DELAY_SCALE = 0.05
EVENT_GRID_ATTEMPT_SECONDS = 20.0
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


# ====================================================================== the local cloud

class HostProcess:
    """devstack's Functions host running function_app.py in its own process, on a fixed
    port across restarts, its log appended to `log_path`."""

    def __init__(self, settings: dict[str, str], log_path: Path, eventgrid: Path) -> None:
        self.port = free_port()
        self.settings = {**settings, "DEVSTACK_HOST_MASTER_KEY": MASTER_KEY}
        self.log_path = log_path
        self.eventgrid = eventgrid
        """The host's own Event Grid config: no topics (the run's grid is outside it)."""
        self.kills = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def event_grid_webhook(self, function_name: str) -> str:
        """Where Event Grid delivers to one function (the system key included)."""
        return (f"{self.base_url}/runtime/webhooks/eventgrid?functionName={function_name}"
                f"&code={EVENT_GRID_KEY}")

    async def start(self, http: aiohttp.ClientSession) -> None:
        with self.log_path.open("ab") as log_file:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "devstack", "app", str(ROOT), "--port", str(self.port),
                 "--eventgrid", str(self.eventgrid)],
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
    model: LocalModelServer
    grid: LocalEventGrid

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

    async def run_sweepers(self, sweepers: Sequence[str]) -> None:
        """Run these outbox sweepers of the app now, as their timers would."""
        for sweeper in sweepers:
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


@dataclass(frozen=True)
class Peeked:
    """A message as peeked (nothing locked or consumed) from an entity or its DLQ."""

    message_id: str | None
    body: bytes
    reason: str | None
    """Its dead-letter reason (dead-letter queues only)."""

    def data(self) -> dict[str, Any]:
        """The CloudEvent body's `data` (empty when the body is not one)."""
        try:
            event = json.loads(self.body)
        except ValueError:
            return {}
        data = event.get("data") if isinstance(event, dict) else None
        return data if isinstance(data, dict) else {}


def peek(cloud: ChaosCloud, path: str, *, dead_letter: bool = False) -> list[Peeked]:
    """Every message of one queue or subscription (`topic/subscription`), or of its DLQ."""
    entity = next(entity for entity in cloud.catalogue.servicebus if entity.path == path)
    return [Peeked(message.message_id, b"".join(message.body),
                   message.dead_letter_reason if dead_letter else None)
            for message in _peek_states(cloud.ops, entity, dead_letter)]


def undrained(cloud: ChaosCloud, sinks: Collection[str] = ()) -> dict[str, dict[str, int]]:
    """Entity -> message state -> count, for each queue or subscription holding messages
    (but `sinks`, where a workload's output stays and is judged by that workload)."""
    entities_ = [entity for entity in cloud.catalogue.servicebus if entity.path not in sinks]
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
    """Azurite behind the storage fault proxy, devstack, the local model endpoint, a local
    Event Grid and the host as a subprocess; everything stopped in reverse order on the way
    out. Event Grid runs here, beside the host (as in Azure), so a host kill does not take
    its pending deliveries down with it."""
    catalogue = Catalogue.load()
    with ExitStack() as servers:
        azurite = servers.enter_context(Azurite())
        proxy = servers.enter_context(StorageProxy(azurite, seed=seed))
        devstack = servers.enter_context(DevStack(
            [ROOT / "infra/entities/servicebus.json", ROOT / "infra/entities/eventhubs.json"],
            port=0))
        model = servers.enter_context(LocalModelServer(port=0))
        grid_port = free_port()
        settings = {**demo.app_settings(proxy.connection_string, devstack),
                    bootstrap.STEP_TIMEOUT_SETTING: f"{step_timeout:g}",
                    **model_settings(model), **triage_settings(grid_port)}
        no_topics = workdir / "host-eventgrid.json"
        no_topics.write_text(json.dumps({"UserConfig": {"Topics": []}}), encoding="utf-8")
        host = HostProcess(settings, workdir / "host.log", no_topics)
        servers.callback(host.stop)
        async with AsyncExitStack() as opened:
            http = await opened.enter_async_context(aiohttp.ClientSession(timeout=HTTP_TIMEOUT))
            await host.start(http)
            grid = await opened.enter_async_context(LocalEventGrid(
                EventGridConfig.load(ROOT / "infra/entities/eventgrid.json"),
                function_endpoint=host.event_grid_webhook,
                dead_letter_storage=azurite.connection_string,
                delay_scale=EVENT_GRID_DELAY_SCALE, attempt_timeout=EVENT_GRID_ATTEMPT_SECONDS,
                port=grid_port))
            bus = await opened.enter_async_context(
                ServiceBusClient.from_connection_string(devstack.connection_string))
            # The checks look at the services directly, never through the proxy.
            ops = servers.enter_context(Connections({
                **{entity.setting: devstack.connection_string for entity in catalogue.servicebus},
                entities.STATE_STORAGE: azurite.connection_string}))
            tables = servers.enter_context(
                TableServiceClient.from_connection_string(azurite.connection_string))
            yield ChaosCloud(azurite, proxy, devstack, host, http, bus, tables, ops, catalogue,
                             model, grid)


def model_settings(model: LocalModelServer) -> dict[str, str]:
    """Both agents ask devstack's local model (one deployment); a short timeout and a breaker
    that opens within a short run, so the LLM faults reach the fallbacks."""
    return {"LLM_PROVIDER": "local", "AZURE_OPENAI_ENDPOINT": model.base_url,
            "AZURE_OPENAI_DEPLOYMENT": MODEL_DEPLOYMENT, "LLM_TIMEOUT_SECONDS": "3",
            "LLM_MAX_RETRIES": "1", "LLM_BREAKER_MINIMUM_THROUGHPUT": "4",
            "LLM_BREAKER_SAMPLING_SECONDS": "30", "LLM_BREAKER_BREAK_SECONDS": "10"}


def triage_settings(grid_port: int) -> dict[str, str]:
    """The webhook's secret and the Event Grid topic it publishes to (this run's grid)."""
    return {f"{triage_bootstrap.EVENTGRID}__topicEndpointUri":
            f"http://127.0.0.1:{grid_port}/topics/{HELPDESK_TOPIC}/api/events",
            f"{triage_bootstrap.EVENTGRID}__topicKey": DEV_TOPIC_KEY,
            "HELPDESK_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "DEVSTACK_HOST_EVENTGRID_KEY": EVENT_GRID_KEY}


# ====================================================================== the fault schedule

BROKER_FAULTS = ("deliver-twice", "drop-connections", "expire-locks", "server-busy",
                 "broker-latency", "duplicate-send")
STORAGE_FAULTS = ("storage-unavailable", "storage-timeout", "storage-latency",
                  "storage-drop-response")
PROCESS_FAULTS = ("host-kill",)
PARTICIPANT_FAULTS = ("participant-slow", "participant-flaky", "participant-fail")
# The local model endpoint (the fraud explanations and the triage classifications share its
# one deployment): slower than usual, flaky (5xx, 429, malformed or off-schema answers,
# hangs), and down (an outage: 503 to everything).
LLM_FAULTS = ("llm-slow", "llm-flaky", "llm-down")
LAYERS = {"broker": BROKER_FAULTS, "storage": STORAGE_FAULTS, "process": PROCESS_FAULTS,
          "participants": PARTICIPANT_FAULTS, "llm": LLM_FAULTS}
ALL_FAULTS = (*BROKER_FAULTS, *STORAGE_FAULTS, *PROCESS_FAULTS, *PARTICIPANT_FAULTS,
              *LLM_FAULTS)
# Seconds of load per occurrence of each kind (at least one of each chosen kind per run). A
# host kill strands its locked messages for the queues' LockDuration (1 min), so it is rarer.
PERIOD = {kind: 20.0 for kind in ALL_FAULTS} | {"host-kill": 120.0, "participant-fail": 120.0,
                                                 "llm-down": 120.0}
STORAGE_TABLES = (bootstrap.SAGAS_TABLE, *simulated_bootstrap.LEDGER_TABLES.values(),
                  fraud_bootstrap.STATE_TABLE, triage_bootstrap.TABLE, None)
LLM_FLAVOURS = ("error-500", "error-503", "throttle", "malformed", "wrong-schema", "hang")
SERVICES = tuple(service.value for service in Service)


def fault_kinds(spec: str) -> list[str]:
    """`all`, `none`, or a comma list of kinds and layers (broker, storage, process,
    participants, llm)."""
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
    if kind in ("participant-fail", "llm-down"):  # "down for 30 s" in a long run
        target = rng.choice(SERVICES) if kind == "participant-fail" else None
        return target, 0.0, min(30.0, max(hold, duration / 4))
    if kind == "llm-slow":  # above the app's 3 s LLM timeout, a share of the calls time out
        return None, round(rng.uniform(1.0, 5.0), 1), hold
    if kind == "llm-flaky":  # this many answers of one bad flavour
        return rng.choice(LLM_FLAVOURS), rng.randint(3, 8), 0.0
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
        elif kind.startswith("llm-"):
            await self._model_fault(event)
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

    async def _model_fault(self, event: FaultEvent) -> None:
        model = self.cloud.model.faults
        if event.kind == "llm-down":
            model.outage(event.hold, deployment=MODEL_DEPLOYMENT)
        elif event.kind == "llm-slow":
            model.latency(event.amount, deployment=MODEL_DEPLOYMENT)
            await asyncio.sleep(event.hold)
            model.latency(0, deployment=MODEL_DEPLOYMENT)
        else:
            times, flavour = int(event.amount), str(event.target)
            if flavour.startswith("error-"):
                model.error(int(flavour.removeprefix("error-")), deployment=MODEL_DEPLOYMENT,
                            times=times)
            else:
                arm = {"throttle": model.throttle, "malformed": model.malformed,
                       "wrong-schema": model.wrong_schema, "hang": model.hang}[flavour]
                arm(deployment=MODEL_DEPLOYMENT, times=times)

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
        """Stop every broker, storage and model fault (windows end on their own)."""
        self.cloud.devstack.faults.clear()
        self.cloud.proxy.faults.clear()
        self.cloud.model.faults.clear()


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
    sweepers: tuple[str, ...] = ()
    """The app's outbox sweepers of this agent, run on each pass of the drain."""
    sinks: tuple[str, ...] = ()
    """Entities where this agent's output stays (no consumer in the app: a team's queue,
    the parking queue); their contents are judged by this workload's own invariants, not
    by "every queue drained"."""

    @abstractmethod
    async def prepare(self, cloud: ChaosCloud) -> None:
        """Before the load: set up what the workload needs (e.g. scoped simulator modes)."""

    @abstractmethod
    async def drive(self, cloud: ChaosCloud, started: float, say: Say) -> None:
        """The load, spread over the run's duration from `started`."""

    @abstractmethod
    async def unfinished(self, cloud: ChaosCloud) -> int:
        """How much of its work has not reached an end yet (0: done)."""

    async def close(self, cloud: ChaosCloud) -> None:  # noqa: B027 - optional: most need none
        """Once everything drained with the faults off: a last input, if the invariants need
        one (the run drains again after it)."""

    @abstractmethod
    async def collect(self, cloud: ChaosCloud) -> Report:
        """Read the evidence from the services, judge it, and sum up."""


@dataclass(frozen=True)
class StreamEvent:
    """One event of the payment stream as the service holds it."""

    partition: str
    sequence_number: int
    offset: str
    body: bytes

    def parsed(self) -> dict[str, Any] | None:
        """The body as a JSON object (None: not one, e.g. a poison input)."""
        try:
            value = json.loads(self.body)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None


def read_stream(connection_string: str, hub: str) -> list[StreamEvent]:
    """Every event of every partition of `hub`, from the start up to its last enqueued one,
    with the official SDK's consumer."""
    consumer = EventHubConsumerClient.from_connection_string(
        connection_string, consumer_group="$default", eventhub_name=hub)
    with consumer:
        last = last_sequence_numbers(consumer)
        events: list[StreamEvent] = []
        reached: set[str] = set()
        finished = threading.Event()

        def on_event(context: Any, event: Any) -> None:
            if event is None:
                return
            body = event.body
            events.append(StreamEvent(context.partition_id, int(event.sequence_number),
                                      str(event.offset),
                                      body if isinstance(body, bytes) else b"".join(body)))
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


def last_sequence_numbers(consumer: EventHubConsumerClient) -> dict[str, int]:
    """Partition id -> its last enqueued sequence number (partitions never written: absent)."""
    last = {}
    for partition in consumer.get_partition_ids():
        properties = consumer.get_partition_properties(partition)
        if not properties["is_empty"]:
            last[partition] = int(properties["last_enqueued_sequence_number"])
    return last


@dataclass(frozen=True)
class Options:
    seed: int = 1
    orders: int = 500
    payments: int = 300
    """Direct card payments of the fraud workload (besides the orders' charges)."""
    tickets: int = 100
    """Helpdesk tickets of the triage workload (each with its updates and duplicates)."""
    duration: float = 250.0
    faults: tuple[str, ...] = ALL_FAULTS
    drain_seconds: float = 240.0
    step_timeout: float = float(demo.STEP_TIMEOUT_SECONDS)
