"""The orders workload: orders over HTTP with an Idempotency-Key, simulator profiles and
poison inputs, and the order saga's invariants judged from the sagas table, the simulated
services' ledgers and the payment stream."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from azure.servicebus import ServiceBusMessage

from agents.backbone.tables import LOG_PREFIX, STATE_ROW, prefix_filter
from agents.contracts.orders import PAYMENT_CHARGED
from agents.orders import bootstrap, entities
from agents.orders.edge import order_id_for
from agents.orders.model import Service
from agents.orders.simulated import bootstrap as simulated_bootstrap
from scripts import demo
from scripts.chaos.core import (
    ChaosCloud,
    Invariant,
    Promise,
    Report,
    Say,
    Violation,
    Workload,
    judge,
    read_stream,
)

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


@dataclass(frozen=True)
class Profile:
    """A kind of order: its SKU and the simulator mode that SKU's scope has. Every order pays
    with a card of its own, so no card of the orders trips the fraud rules (one charge per
    card): a fraud compensation here would be a wrong alert, which the fraud workload reports."""

    name: str
    weight: float
    sku: str = "sku-blue-mug"
    service: Service | None = None
    mode: dict[str, Any] | None = None


def profiles(step_timeout: float) -> tuple[Profile, ...]:
    """The kinds of order a run mixes; a "late" reply misses its step's deadline by 3 s."""
    late = step_timeout + 3.0
    return (
        Profile("normal", 0.70),
        Profile("declined", 0.06, sku="sku-declined-card", service=Service.PAYMENTS,
                mode={"mode": "decline"}),
        Profile("late-charge", 0.06, sku="sku-late-charge", service=Service.PAYMENTS,
                mode={"mode": "slow", "slowSeconds": late}),
        Profile("flaky-gateway", 0.06, sku="sku-flaky-charge", service=Service.PAYMENTS,
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
    sweepers = demo.OUTBOX_SWEEPERS

    def __init__(self, rng: random.Random, orders: int, duration: float, step_timeout: float
                 ) -> None:
        self.duration = duration
        self.profiles = profiles(step_timeout)
        self.plans: list[OrderPlan] = []
        for number in range(orders):
            profile = rng.choices(self.profiles, [p.weight for p in self.profiles])[0]
            repost = rng.choice(("concurrent", "later")) if rng.random() < REPOST_SHARE else None
            body = {"customerId": f"c-{number % 50}", "card": f"tok-order-{number}",
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
            status, answer = await cloud.call("POST", f"simulators/{profile.service.value}/mode",
                                              {**profile.mode, "scope": f"sku:{profile.sku}"})
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
        ours = {order_id_for(plan.key) for plan in self.plans}
        events = [event for event in (stream.parsed() for stream in await asyncio.to_thread(
            read_stream, cloud.devstack.connection_string, entities.PAYMENTS_HUB))
            if event is not None and event.get("type") == PAYMENT_CHARGED
            and isinstance(event.get("data"), dict) and event["data"].get("orderId") in ours]
        charge_events: dict[str, set[str]] = {}
        for event in events:
            charge_events.setdefault(str(event["data"]["orderId"]), set()).add(str(event["id"]))
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
            "orders: payment stream": f"{len(events)} charge events of the orders, "
                                      f"{sum(n - 1 for n in replayed.values())} duplicate "
                                      "copies (same event id)",
            "orders: poison inputs sent": str(len(self.poison)),
        }


