"""Fraud benchmark: payments scored per second against Azurite and storage requests per event,
the batch handler side by side with a one-event-at-a-time baseline in one run; then how a
Zipf card workload spreads over the hub's partitions.

Both sides parse the same Event Hubs events and run the same `score` rules on the same
workload (one partition, 200 cards, bursts), on the same Azurite, with publishing to a list:

- ours: `score_batch` on batches of 100: card windows and the high-water mark in the
  partition's Table partition, a handful of entity-group transactions per batch, no reads
  while the instance's cache matches the mark's ETag;
- baseline (the common way): each event in its own unit of work keyed by the card
  (`MessageProcessor.handle`: read the card's state, one transaction with the inbox marker
  for the event id, the state and any alert), i.e. effectively once per event.

Storage requests are counted with the SDK's public `raw_request_hook`. Targets: ours >= 10x
the baseline's events/s, <= 0.1 storage requests per event; missing one exits 1.

Hot partitions: 100,000 payments over 10,000 cards drawn Zipf(s) (rank k has weight 1/k^s),
keyed as the backbone keys them (`partitions.hashed(card)`) and routed with the service's
hash (`devstack.eventhubs.partition_key`); max/mean per partition for 4 (infra) and 32
partitions; and a merchant-level aggregate, where salting does apply.

    python -m bench.fraud_bench [--events 2000]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from azure.data.tables import TableServiceClient

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # `python bench/fraud_bench.py` works too

from agents.backbone import (  # noqa: E402
    MessageProcessor,
    OutboxRelay,
    OutboxRow,
    RequestCounter,
    UnitOfWork,
    parse_eventhub,
    state_table,
)
from agents.backbone.envelope import Envelope  # noqa: E402
from agents.backbone.partitions import hashed  # noqa: E402
from agents.backbone.wire import encode_body  # noqa: E402
from agents.contracts import fraud, orders  # noqa: E402
from agents.fraud import bootstrap, entities  # noqa: E402
from agents.fraud.handlers import Batch, RawEvent, score_batch  # noqa: E402
from agents.fraud.model import CardWindow, Payment, Rules, score  # noqa: E402
from devstack.azurite import Azurite  # noqa: E402
from devstack.eventhubs.partition_key import partition_index_for_key  # noqa: E402

BATCH = 100
CARDS = 200
T0 = datetime(2026, 1, 1, tzinfo=UTC)


class ListPublisher:
    def __init__(self) -> None:
        self.rows: list[OutboxRow] = []

    def publish(self, rows: Any) -> None:
        self.rows.extend(rows)

    def close(self) -> None:
        return None


@dataclass(frozen=True)
class Figures:
    name: str
    events: int
    seconds: float
    requests: int
    alerts: int

    @property
    def per_second(self) -> float:
        return self.events / self.seconds

    @property
    def requests_per_event(self) -> float:
        return self.requests / self.events


def workload(count: int, seed: int = 7) -> list[RawEvent]:
    """One partition's events in sequence order: random cards, some in bursts."""
    rng = random.Random(seed)
    events: list[RawEvent] = []
    for n in range(count):
        card = f"tok-{rng.randrange(CARDS) if rng.random() > 0.05 else 0}"
        data: dict[str, Any] = {"orderId": f"o-{n}", "chargeId": f"c-{n}", "customerId": "cu",
                "card": card, "amountCents": rng.randrange(500, 20_000)}
        envelope = Envelope.new(orders.PAYMENT_CHARGED, data, source="/bench",
                                subject=data["orderId"], partitionkey=card,
                                time=T0 + timedelta(seconds=n * 0.5))
        events.append(RawEvent(encode_body(envelope), {}, n, str(n)))
    return events


def measure_ours(tables: TableServiceClient, counter: RequestCounter,
                 events: list[RawEvent]) -> Figures:
    table = state_table(tables, f"fraudbench{uuid.uuid4().hex[:8]}")
    publisher = ListPublisher()
    agent = bootstrap.build(table, publisher)
    before, started = counter.total, time.perf_counter()
    for start in range(0, len(events), BATCH):
        score_batch(agent, Batch("0", events[start:start + BATCH]))
    agent.relay.flush()
    seconds = time.perf_counter() - started
    return Figures("ours: batch of 100", len(events), seconds, counter.total - before,
                   len(publisher.rows))


def measure_baseline(tables: TableServiceClient, counter: RequestCounter,
                     events: list[RawEvent]) -> Figures:
    table = state_table(tables, f"fraudbase{uuid.uuid4().hex[:8]}")
    publisher = ListPublisher()
    agent = bootstrap.build(table, publisher)  # for its schemas and rules
    rules: Rules = agent.rules
    processor = MessageProcessor(table, OutboxRelay(table, publisher), registry=agent.schemas)

    def handle(event: Envelope, uow: UnitOfWork, *, sequence: int) -> None:
        state = uow.load()
        window = CardWindow() if state is None else CardWindow.from_state(state)
        payment = Payment.from_event(event.id, event.data, event.time, sequence)
        verdict = score(window, payment, rules)
        window.add(payment, rules)
        uow.save(window.to_state())
        if verdict.alert:
            uow.emit(event.follow(fraud.ALERT_RAISED, {"orderId": payment.order_id,
                                                       "reason": verdict.summary()},
                                  source=fraud.SOURCE, partitionkey=payment.order_id),
                     destination=entities.ALERTS_TOPIC)

    before, started = counter.total, time.perf_counter()
    for raw in events:
        envelope = parse_eventhub(raw.body, raw.properties, registry=agent.schemas)
        processor.handle(envelope, partial(handle, sequence=raw.sequence_number),
                         partition_key=str(envelope.data["card"]))
    processor.relay.flush()
    seconds = time.perf_counter() - started
    return Figures("baseline: one at a time", len(events), seconds, counter.total - before,
                   len(publisher.rows))


def zipf_cards(cards: int, payments: int, s: float, seed: int = 11) -> list[str]:
    rng = random.Random(seed)
    weights = [1 / (rank ** s) for rank in range(1, cards + 1)]
    return rng.choices([f"card-{rank}" for rank in range(1, cards + 1)], weights, k=payments)


def spread(keys: list[str], partitions: int) -> tuple[float, list[int]]:
    """max/mean events per partition for these partition keys (hashed as the backbone does)."""
    counts = Counter(partition_index_for_key(hashed(key), partitions) for key in keys)
    loads = [counts.get(p, 0) for p in range(partitions)]
    return max(loads) / (sum(loads) / partitions), loads


def hot_partitions() -> None:
    print("\nhot partitions: 100,000 payments over 10,000 cards, Zipf(s), key = hashed(card)")
    print(f"{'s':>5}{'hottest card':>14}{'max/mean P=4':>14}{'max/mean P=32':>15}")
    for s in (0.0, 0.8, 1.1, 1.5):
        keys = zipf_cards(10_000, 100_000, s)
        top = Counter(keys).most_common(1)[0][1] / len(keys)
        print(f"{s:>5}{top:>13.1%}{spread(keys, 4)[0]:>14.2f}{spread(keys, 32)[0]:>15.2f}")
    merchant = ["merchant-42"] * 10_000
    salted = [f"merchant-42#{n % 16}" for n in range(10_000)]
    print(f"merchant-level aggregate (one merchant, P=32): max/mean "
          f"{spread(merchant, 32)[0]:.2f} unsalted, {spread(salted, 32)[0]:.2f} salted over 16 "
          "sub-keys (order across them does not matter for a sum)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=2000)
    args = parser.parse_args(argv)
    events = workload(args.events)
    counter = RequestCounter()
    with Azurite() as azurite:
        tables = TableServiceClient.from_connection_string(
            azurite.connection_string, raw_request_hook=counter.hook)
        measure_ours(tables, counter, events[:200])  # warm up connections and code paths
        baseline = measure_baseline(tables, counter, events)
        ours = measure_ours(tables, counter, events)
    print(f"\nfraud scoring against Azurite ({args.events} events, one partition, {CARDS} cards, "
          f"batches of {BATCH})")
    print(f"{'variant':<26}{'events':>8}{'events/s':>10}{'storage req/event':>19}{'alerts':>8}")
    for figures in (baseline, ours):
        print(f"{figures.name:<26}{figures.events:>8}{figures.per_second:>10.1f}"
              f"{figures.requests_per_event:>19.3f}{figures.alerts:>8}")
    ratio = ours.per_second / baseline.per_second
    print(f"ours/baseline: {ratio:.1f}x events/s (target >= 10x); "
          f"{ours.requests_per_event:.3f} storage requests per event (target <= 0.1)")
    hot_partitions()
    return 0 if ratio >= 10 and ours.requests_per_event <= 0.1 else 1


if __name__ == "__main__":
    sys.exit(main())
