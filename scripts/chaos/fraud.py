"""The fraud workload: card payments published straight onto the payment stream (Event Hubs
`fraud-payments`) beside the orders' own charges, in a seeded mix whose verdicts are known by
construction - velocity bursts, impossible trips, clean cards (one with exactly the velocity
limit and a payment published twice, so counting the copy would raise a wrong alert), copies
of the same event, and poison events - judged from the fraud table (alert outbox rows,
recorded explanations, high-water marks), `fraud-alerts` and its dead-letter queue,
`fraud-poison-events`, and the stream itself.

A direct payment names an order that does not exist, so its alert is dead-lettered by the
orders subscription with `UnknownOrder` (the orders agent's rule): the dead-letter queue is
where its delivery is counted, and each such letter is promised.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.eventhub import EventData, EventHubConsumerClient
from azure.eventhub.aio import EventHubProducerClient
from azure.eventhub.exceptions import EventHubError

from agents.backbone.envelope import Envelope
from agents.backbone.partitions import hashed
from agents.backbone.tables import OUTBOX_PREFIX, table_key
from agents.backbone.wire import encode_body
from agents.contracts import fraud as fraud_contracts
from agents.contracts import orders as orders_contracts
from agents.fraud import bootstrap, entities
from agents.fraud.handlers import MARK_ROW
from scripts.chaos.core import (
    ChaosCloud,
    Invariant,
    Peeked,
    Promise,
    Report,
    Say,
    StreamEvent,
    Violation,
    Workload,
    judge,
    last_sequence_numbers,
    peek,
    read_stream,
)

ALERTS_SUBSCRIPTION = f"{entities.ALERTS_TOPIC}/orders"
SOURCE = "/chaos/fraud"
VELOCITY_LIMIT = 5  # FRAUD_VELOCITY_COUNT's default: the 6th payment inside 60 s fires
PUBLISH_DEADLINE_SECONDS = 120.0
# (country, lat, lon): a trip between the first two in an hour is impossible (> 900 km/h),
# one between the first and the third in two hours is not.
PARIS, SYDNEY, LYON = ("FR", 48.86, 2.35), ("AU", -33.87, 151.21), ("FR", 45.76, 4.84)


@dataclass(frozen=True)
class PlannedPayment:
    order_id: str
    card: str
    amount_cents: int
    after: timedelta
    """Its CloudEvent `time`, after the card's first payment (the rules read event times)."""
    flagged: bool
    """Whether the rules must raise an alert for it (by construction of its card's mix)."""
    location: tuple[str, float, float] | None = None
    copies: int = 1
    """How many times the same event is published (2: a duplicate the agent must absorb)."""


@dataclass(frozen=True)
class PoisonPayment:
    body: bytes
    reason: str
    why: str


@dataclass(frozen=True)
class CardPlan:
    card: str
    kind: str
    at: float
    """Seconds into the load when its first payment is published."""
    payments: tuple[PlannedPayment, ...]


def plan_cards(rng: random.Random, payments: int, duration: float) -> list[CardPlan]:
    """Cards until about `payments` payments: velocity bursts, impossible and possible
    trips, clean cards, the limit card (exactly the velocity limit, one copy), and copies."""
    cards: list[CardPlan] = []
    planned = 0
    while planned < payments:
        kind = rng.choices(("burst", "trip", "clean", "limit"), (0.2, 0.15, 0.55, 0.1))[0]
        card = f"tok-fraud-{kind}-{len(cards)}"
        amount = rng.randint(1000, 3000)

        def pay(index: int, seconds: float, flagged: bool,
                location: tuple[str, float, float] | None = None, copies: int = 1,
                card: str = card, amount: int = amount) -> PlannedPayment:
            return PlannedPayment(f"chaos-fraud-{card}-{index}", card,
                                  amount + rng.randint(-200, 200), timedelta(seconds=seconds),
                                  flagged, location, copies)

        if kind == "burst":  # more than the limit inside 60 s: the 6th and later alert
            count = rng.randint(VELOCITY_LIMIT + 1, VELOCITY_LIMIT + 4)
            plan = [pay(i, 3.0 * i, i >= VELOCITY_LIMIT) for i in range(count)]
        elif kind == "trip":  # Paris, then Sydney within the hour; or Lyon two hours on
            impossible = rng.random() < 0.6
            plan = [pay(0, 0, False, PARIS),
                    pay(1, 3600.0 if impossible else 7200.0, impossible,
                        SYDNEY if impossible else LYON)]
        elif kind == "limit":  # exactly the limit inside 60 s, one of them published twice
            copied = rng.randrange(VELOCITY_LIMIT)
            plan = [pay(i, 5.0 * i, False, copies=2 if i == copied else 1)
                    for i in range(VELOCITY_LIMIT)]
        else:
            plan = [pay(i, 20.0 * i, False, PARIS if rng.random() < 0.3 else None)
                    for i in range(rng.randint(1, 4))]
        plan = [payment if payment.copies > 1 or rng.random() > 0.1
                else replace(payment, copies=2) for payment in plan]
        cards.append(CardPlan(card, kind, 0.0, tuple(plan)))
        planned += len(plan)
    return [CardPlan(plan.card, plan.kind, duration * 0.9 * number / max(len(cards), 1),
                     plan.payments) for number, plan in enumerate(cards)]


def poison_payments(count: int) -> list[PoisonPayment]:
    """`count` poison events, cycling through the ways a payment event can be invalid."""
    def charge(data: dict[str, Any]) -> bytes:
        return encode_body(Envelope.new(orders_contracts.PAYMENT_CHARGED, data, source=SOURCE,
                                        partitionkey=str(data.get("card")),
                                        time=datetime.now(UTC)))

    def kind(number: int) -> PoisonPayment:
        tag = f"chaos-fraud-poison-{number}"
        payment = {"orderId": tag, "chargeId": tag, "customerId": "c-poison",
                   "card": f"tok-{tag}", "amountCents": 1200}
        return [
            PoisonPayment(b'{"specversion": "1.0", "id": "' + tag.encode() + b'", "type": ',
                          "InvalidEncoding", "cut-off JSON"),
            PoisonPayment(json.dumps({"orderId": tag, "poison": True}).encode(),
                          "NotACloudEvent", "JSON that is no CloudEvent"),
            PoisonPayment(encode_body(Envelope.new("orders.payment.teleported", {"id": tag},
                                                   source=SOURCE)),
                          "UnknownEventType", "an unknown event type"),
            PoisonPayment(charge({**payment, "location": {"country": "FR", "lat": 200.0,
                                                          "lon": 2.0}}),
                          "SchemaViolation", "a charge whose location is off the globe"),
            PoisonPayment(charge({**payment, "amountCents": -1}), "SchemaViolation",
                          "a charge with a negative amount"),
        ][number % 5]

    return [kind(number) for number in range(count)]


# ---------------------------------------------------------------- evidence and invariants

@dataclass(frozen=True)
class AlertSeen:
    """One `fraud.alert.raised` row of the fraud table's outbox."""

    alert_id: str
    order_id: str
    status: str
    data: dict[str, Any]


@dataclass(frozen=True)
class ParkedSeen:
    """One message of `fraud-poison-events` (its data is the parked event's position)."""

    message_id: str | None
    partition: str
    sequence_number: int | None
    offset: str | None
    reason: str
    description: str
    body: str


@dataclass
class FraudEvidence:
    expected: dict[str, PlannedPayment]
    """Order id -> the direct payment planned for it (`flagged`: must alert)."""
    cards: dict[str, str]
    """Order id -> card, for every charge on the stream (direct and the orders')."""
    alerts: dict[str, list[AlertSeen]]
    """Order id -> its alert rows in the fraud table."""
    delivered: Counter[str]
    """Order id -> how many alert messages for it reached `fraud-alerts/orders`' DLQ."""
    poison: dict[tuple[str, int], tuple[StreamEvent, PoisonPayment]]
    """(partition, sequence number) -> each poison event on the stream and what it was."""
    parked: list[ParkedSeen]
    marks: dict[str, int | None]
    """Partition -> the agent's high-water mark (None: no mark row)."""
    last: dict[str, int]
    """Partition -> the stream's last sequence number."""


def _flagged_alerted_once(evidence: FraudEvidence) -> list[Violation]:
    found = []
    for order_id, payment in evidence.expected.items():
        if not payment.flagged:
            continue
        rows, delivered = len(evidence.alerts.get(order_id, [])), evidence.delivered[order_id]
        if (rows, delivered) != (1, 1):
            found.append(Violation((order_id, payment.card), f"{rows} alert row(s), {delivered} "
                                                              "alert message(s) delivered"))
    return found


def _no_alert_for_clean(evidence: FraudEvidence) -> list[Violation]:
    flagged = {order_id for order_id, payment in evidence.expected.items() if payment.flagged}
    found = [Violation((order_id, evidence.cards.get(order_id, "?")),
                       f"alert on a clean card: {alerts[0].data.get('reason')}")
             for order_id, alerts in sorted(evidence.alerts.items()) if order_id not in flagged]
    found += [Violation((order_id,), f"{count} alert message(s) for a payment never flagged")
              for order_id, count in sorted(evidence.delivered.items())
              if order_id not in flagged and order_id not in evidence.alerts]
    return found


def _poison_parked_once(evidence: FraudEvidence) -> list[Violation]:
    found = []
    for (partition, sequence), (event, poison) in sorted(evidence.poison.items()):
        copies = [p for p in evidence.parked
                  if (p.partition, p.sequence_number) == (partition, sequence)]
        ids = (f"partition {partition} seq {sequence}",)
        if len(copies) != 1:
            found.append(Violation(ids, f"{poison.why}: parked {len(copies)} time(s)"))
        elif copies[0].offset != event.offset or copies[0].reason != poison.reason \
                or not copies[0].description:
            found.append(Violation(ids, f"{poison.why}: parked at offset {copies[0].offset} "
                                        f"(stream: {event.offset}) with {copies[0].reason!r}: "
                                        f"{copies[0].description!r}, expected {poison.reason!r}"))
    return found


def _nothing_else_parked(evidence: FraudEvidence) -> list[Violation]:
    return [Violation((parked.message_id or "-",), f"partition {parked.partition} seq "
                                                   f"{parked.sequence_number}: {parked.reason}: "
                                                   f"{parked.body[:80]}")
            for parked in evidence.parked
            if (parked.partition, parked.sequence_number) not in evidence.poison]


def behind(marks: dict[str, int | None], last: dict[str, int]) -> list[str]:
    """The partitions whose mark is below the stream's last sequence number."""
    return [partition for partition, sequence in sorted(last.items())
            if (mark := marks.get(partition)) is None or mark < sequence]


def _marks_reached_the_end(evidence: FraudEvidence) -> list[Violation]:
    return [Violation((f"partition {partition}",), f"mark {evidence.marks.get(partition)}, "
                                                   f"last sequence number "
                                                   f"{evidence.last[partition]}")
            for partition in behind(evidence.marks, evidence.last)]


def _explained(evidence: FraudEvidence) -> list[Violation]:
    found = []
    for order_id, alerts in sorted(evidence.alerts.items()):
        for alert in alerts:
            data = alert.data
            by, rationale = data.get("explainedBy"), str(data.get("rationale") or "")
            if by not in ("model", "rules") or not rationale or not data.get("riskLevel") \
                    or not data.get("recommendedAction") \
                    or (by == "rules" and not rationale.startswith("rules only (")):
                found.append(Violation((order_id, alert.alert_id),
                                       f"explainedBy {by!r}, rationale {rationale[:80]!r}, "
                                       f"riskLevel {data.get('riskLevel')!r}"))
    return found


FRAUD_INVARIANTS: list[Invariant[FraudEvidence]] = [
    Invariant("every flagged payment raised exactly one alert", _flagged_alerted_once),
    Invariant("no alert for a clean card", _no_alert_for_clean),
    Invariant("every poison event parked once with its position and reason",
              _poison_parked_once),
    Invariant("nothing but the poison events parked", _nothing_else_parked),
    Invariant("every partition's mark reached the stream's last sequence number",
              _marks_reached_the_end),
    Invariant("every alert explained by the model, or by the rules with a reason", _explained),
]


# ---------------------------------------------------------------- the workload

class FraudWorkload(Workload):
    """Direct card payments on the payment stream with verdicts known by construction."""

    name = "fraud"
    sweepers = ("fraud_outbox_sweeper",)
    sinks = (entities.POISON_QUEUE,)

    def __init__(self, rng: random.Random, payments: int, duration: float) -> None:
        self.cards = plan_cards(rng, payments, duration) if payments else []
        self.poison = poison_payments(max(5, payments // 40)) if payments else []
        self.poison_at = sorted(rng.uniform(0.1, 0.8) * duration for _ in self.poison)
        self.base = datetime.now(UTC) - timedelta(hours=3)
        self.closing: list[PlannedPayment] = []
        self.closed = False
        self.publish_retries = 0

    @property
    def planned(self) -> list[PlannedPayment]:
        return [payment for card in self.cards for payment in card.payments] + self.closing

    async def prepare(self, cloud: ChaosCloud) -> None:
        """Nothing to arrange: the rules are the app's defaults."""

    def _event(self, payment: PlannedPayment) -> bytes:
        data: dict[str, Any] = {"orderId": payment.order_id, "chargeId": f"ch-{payment.order_id}",
                                "customerId": "c-fraud", "card": payment.card,
                                "amountCents": payment.amount_cents}
        if payment.location is not None:
            country, lat, lon = payment.location
            data["location"] = {"country": country, "lat": lat, "lon": lon}
        return encode_body(Envelope.new(
            orders_contracts.PAYMENT_CHARGED, data, source=SOURCE, subject=payment.order_id,
            partitionkey=payment.card, id=payment.order_id,
            time=self.base + timedelta(seconds=hash_seconds(payment.card)) + payment.after))

    async def _send(self, producer: EventHubProducerClient, body: bytes, *,
                    partition_key: str | None = None, partition_id: str | None = None) -> None:
        """Publish one event, retrying what the broker refuses (a retry after a lost answer
        can publish a copy: the same event id, which the agent must absorb)."""
        give_up = time.monotonic() + PUBLISH_DEADLINE_SECONDS
        while True:
            try:
                batch = await producer.create_batch(partition_key=partition_key,
                                                    partition_id=partition_id)
                batch.add(EventData(body))
                await producer.send_batch(batch)
                return
            except (EventHubError, OSError, TimeoutError):
                self.publish_retries += 1
                if time.monotonic() > give_up:
                    raise
                await asyncio.sleep(1.0)

    async def _card(self, producer: EventHubProducerClient, plan: CardPlan,
                    started: float) -> None:
        await asyncio.sleep(max(0.0, started + plan.at - time.monotonic()))
        for payment in plan.payments:  # in order: the rules compare each with the ones before
            body = self._event(payment)
            for _ in range(payment.copies):
                await self._send(producer, body, partition_key=hashed(payment.card))

    async def _poison(self, producer: EventHubProducerClient, started: float) -> None:
        for number, (poison, at) in enumerate(zip(self.poison, self.poison_at, strict=True)):
            await asyncio.sleep(max(0.0, started + at - time.monotonic()))
            await self._send(producer, poison.body,
                             partition_key=hashed(f"tok-chaos-fraud-poison-{number}"))

    async def drive(self, cloud: ChaosCloud, started: float, say: Say) -> None:
        async with EventHubProducerClient.from_connection_string(
                cloud.devstack.connection_string, eventhub_name=entities.PAYMENTS_HUB) as producer:
            await asyncio.gather(self._poison(producer, started),
                                 *(self._card(producer, plan, started) for plan in self.cards))
        say(f"fraud: {len(self.planned)} payments and {len(self.poison)} poison events sent")

    async def close(self, cloud: ChaosCloud) -> None:
        """One clean payment on every partition, last: its mark then shows that the agent
        scored the whole stream (a mark stays below trailing poison or copies, which a
        re-read skips or parks again: see agents/fraud/README.md). Also with no direct
        payments: the orders' charges are on the stream too."""
        async with EventHubProducerClient.from_connection_string(
                cloud.devstack.connection_string, eventhub_name=entities.PAYMENTS_HUB) as producer:
            for partition in await producer.get_partition_ids():
                payment = PlannedPayment(f"chaos-fraud-close-{partition}-{uuid.uuid4().hex[:6]}",
                                         f"tok-fraud-close-{partition}", 1500, timedelta(0),
                                         False)
                self.closing.append(payment)
                await self._send(producer, self._event(payment), partition_id=partition)
        self.closed = True

    def _positions(self, cloud: ChaosCloud) -> tuple[dict[str, int | None], dict[str, int]]:
        table = cloud.tables.get_table_client(bootstrap.STATE_TABLE)
        marks: dict[str, int | None] = {}
        consumer = EventHubConsumerClient.from_connection_string(
            cloud.devstack.connection_string, consumer_group="$default",
            eventhub_name=entities.PAYMENTS_HUB)
        with consumer:
            last = last_sequence_numbers(consumer)
        for partition in last:
            rows = list(table.query_entities(
                "PartitionKey eq @p and RowKey eq @r",
                parameters={"p": table_key(partition), "r": MARK_ROW}))
            marks[partition] = int(rows[0]["Sequence"]) if rows else None
        return marks, last

    async def unfinished(self, cloud: ChaosCloud) -> int:
        """Before `close`, nothing to wait for; after it, the partitions not scored to the
        end of the stream."""
        if not self.closed:
            return 0
        marks, last = await asyncio.to_thread(self._positions, cloud)
        return len(behind(marks, last))

    def _alerts(self, cloud: ChaosCloud) -> tuple[dict[str, list[AlertSeen]], Counter[str]]:
        table = cloud.tables.get_table_client(bootstrap.STATE_TABLE)
        alerts: dict[str, list[AlertSeen]] = {}
        for row in table.query_entities("EventType eq @type",
                                        parameters={"type": fraud_contracts.ALERT_RAISED}):
            if not str(row["RowKey"]).startswith(OUTBOX_PREFIX):
                continue
            envelope = json.loads(row["Envelope"])
            data = envelope.get("data") or {}
            alerts.setdefault(str(data.get("orderId")), []).append(
                AlertSeen(str(envelope.get("id")), str(data.get("orderId")), str(row["Status"]),
                          data))
        delivered = Counter(str(letter.data().get("orderId"))
                            for letter in peek(cloud, ALERTS_SUBSCRIPTION, dead_letter=True))
        return alerts, delivered

    def _answers(self, cloud: ChaosCloud) -> Counter[str]:
        """The recorded explanations by source (model, fallback)."""
        table = cloud.tables.get_table_client(bootstrap.STATE_TABLE)
        return Counter(str(row.get("Source")) for row in table.query_entities(
            "RowKey ge 'answer|' and RowKey lt 'answer}'", select=["Source"]))

    async def collect(self, cloud: ChaosCloud) -> Report:
        stream = await asyncio.to_thread(read_stream, cloud.devstack.connection_string,
                                         entities.PAYMENTS_HUB)
        poison_by_body = {poison.body: poison for poison in self.poison}
        poison = {(event.partition, event.sequence_number): (event, poison_by_body[event.body])
                  for event in stream if event.body in poison_by_body}
        cards: dict[str, str] = {}
        copies = Counter[str]()
        for event in stream:
            parsed = event.parsed()
            data = parsed.get("data") if parsed else None
            if isinstance(data, dict) and parsed and \
                    parsed.get("type") == orders_contracts.PAYMENT_CHARGED:
                cards[str(data.get("orderId"))] = str(data.get("card"))
                copies[str(parsed.get("id"))] += 1
        alerts, delivered = await asyncio.to_thread(self._alerts, cloud)
        parked = [_parked(message) for message in
                  await asyncio.to_thread(peek, cloud, entities.POISON_QUEUE)]
        marks, last = await asyncio.to_thread(self._positions, cloud)
        expected = {payment.order_id: payment for payment in self.planned}
        evidence = FraudEvidence(expected, cards, alerts, delivered, poison, parked, marks, last)
        promised = [Promise(ALERTS_SUBSCRIPTION, "UnknownOrder",
                            f"the alert for direct payment {order_id} (no such order)",
                            message_id=rows[0].alert_id)
                    for order_id, rows in alerts.items()
                    if order_id in expected and expected[order_id].flagged and len(rows) == 1]
        answers = await asyncio.to_thread(self._answers, cloud)
        explained = Counter(str(alert.data.get("explainedBy"))
                            for rows in alerts.values() for alert in rows)
        kinds = Counter(card.kind for card in self.cards)
        return Report(self.name, judge(FRAUD_INVARIANTS, evidence), {
            "fraud: cards by kind": ", ".join(f"{kind} {count}" for kind, count
                                              in sorted(kinds.items())) or "none",
            "fraud: direct payments (flagged by construction)":
                f"{len(self.planned)} ({sum(p.flagged for p in self.planned)} flagged, "
                f"{sum(p.copies - 1 for p in self.planned)} published twice, "
                f"{len(self.closing)} closing), {self.publish_retries} publish retries",
            "fraud: payment stream": f"{len(stream)} events, {len(cards)} distinct charges, "
                                     f"{sum(n - 1 for n in copies.values())} copies of one "
                                     f"event id, {len(poison)} poison",
            "fraud: alerts (fraud table)": f"{sum(len(rows) for rows in alerts.values())} "
                                           "(explained by " + (", ".join(
                                               f"{by} {n}" for by, n in sorted(explained.items()))
                                               or "-") + ")",
            "fraud: recorded explanations by source": ", ".join(
                f"{source} {count}" for source, count in sorted(answers.items())) or "none",
            "fraud: parked poison events": str(len(parked)),
            "fraud: marks / last sequence numbers": ", ".join(
                f"p{partition} {marks.get(partition)}/{seq}"
                for partition, seq in sorted(last.items())),
        }, promised)


def hash_seconds(card: str) -> int:
    """A card's first payment time, spread over an hour (stable across runs of a seed)."""
    return int(hashed(card), 16) % 3600


def _parked(message: Peeked) -> ParkedSeen:
    data = message.data()
    sequence = data.get("sequenceNumber")
    return ParkedSeen(message.message_id, str(data.get("partitionId")),
                      int(sequence) if sequence is not None else None,
                      None if data.get("offset") is None else str(data.get("offset")),
                      str(data.get("reason") or ""), str(data.get("description") or ""),
                      str(data.get("body") or ""))

