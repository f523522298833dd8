"""Orders benchmark: saga replies handled per second against Azurite, and storage requests
per handled message, ours side by side with a check-then-set baseline in one run.

Both sides run the same `SagaEngine` decisions on the same workload (every order's four
step replies, reserve -> charge -> allocate -> ship), on the same Azurite, one message at a
time. They differ only in how a handled message is made durable:

- ours: `MessageProcessor.handle` — read the saga, ONE entity-group transaction (inbox
  marker + state + step log + outbox rows + the "dispatched" marks of the partition's
  previously published rows), publish. A saga's last reply emits nothing, so every mark
  rides in a transaction; the relay's final flush (of any tail) is timed and counted anyway;
- baseline (the common style): read the idempotency key, read the saga, write the state and
  step log (one batch, generous to the baseline), write the key, publish separately.

Storage requests are counted by the SDK's public `raw_request_hook`, i.e. every HTTP request
that leaves the client. Publishing goes to an in-memory list on both sides.

    python -m bench.orders_bench [--orders 150]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, TableServiceClient, UpdateMode

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # `python bench/orders_bench.py` works too

from agents.backbone import (  # noqa: E402
    Envelope,
    MessageProcessor,
    OutboxRelay,
    OutboxRow,
    RequestCounter,
    SagaEngine,
    SchemaRegistry,
    UnitOfWork,
    reply_for,
    state_table,
)
from agents.backbone.outbox import PENDING  # noqa: E402
from agents.backbone.saga import REPLY  # noqa: E402
from agents.backbone.tables import inbox_row  # noqa: E402
from agents.orders.model import LineItem, Order, order_saga  # noqa: E402
from devstack.azurite import Azurite  # noqa: E402

STEPS_PER_ORDER = 4
ROUNDS = 3


class CapturingPublisher:
    """The Publisher port for the benchmark: keeps what was published, in order."""

    def __init__(self) -> None:
        self.sent: list[Envelope] = []

    def publish(self, rows: Sequence[OutboxRow]) -> None:
        self.sent.extend(row.envelope for row in rows)

    def close(self) -> None:
        """Holds no client."""


@dataclass
class Figures:
    name: str
    messages: int
    seconds: float
    requests: int

    @property
    def per_second(self) -> float:
        return self.messages / self.seconds

    @property
    def requests_per_message(self) -> float:
        return self.requests / self.messages


def _order() -> Order:
    return Order(str(uuid.uuid4()), "c-bench", (LineItem("sku-bench", 1, 999),), "tok-bench",
                 "bench")


def _reply(command: Envelope) -> Envelope:
    return reply_for(command, succeeded=True, source="/bench/participant")


def _commands(sent: list[Envelope]) -> list[Envelope]:
    """The step commands among what was published (not the scheduled step timeouts)."""
    return [event for event in sent if "sagaId" in event.data and "payload" in event.data]


class CheckThenSetUnitOfWork(UnitOfWork):
    """The baseline's write path: no transaction across state, key and events."""

    def __init__(self, table: TableClient, partition_key: str, publisher: CapturingPublisher,
                 message_id: str, schemas: SchemaRegistry) -> None:
        super().__init__(table, partition_key, inbox_id=None, registry=schemas)
        self.table = table
        self._publisher = publisher
        self._message_id = message_id

    def already_handled(self) -> bool:
        try:
            self.table.get_entity(self.partition_key, inbox_row(self._message_id))
        except ResourceNotFoundError:
            return False
        return True

    def commit_check_then_set(self) -> None:
        writes: list[Any] = [
            ("upsert", {"PartitionKey": self.partition_key, "RowKey": row_key,
                        "state": _json(state)}, {"mode": UpdateMode.REPLACE})
            for row_key, state in self._saved.items()]
        writes += [("upsert", row, {"mode": UpdateMode.REPLACE}) for row in self._appended]
        if writes:
            self.table.submit_transaction(writes)
        self.table.upsert_entity({"PartitionKey": self.partition_key,
                                  "RowKey": inbox_row(self._message_id)})
        self._publisher.publish(self.staged_outbox)


def _json(state: dict[str, Any]) -> str:
    return json.dumps(state, separators=(",", ":"), default=str)


def _setup(tables: TableServiceClient, name: str, orders: int
           ) -> tuple[TableClient, SagaEngine, CapturingPublisher, MessageProcessor,
                      list[Envelope]]:
    """A fresh table with `orders` started sagas; returns their first step commands."""
    table = state_table(tables, name)
    schemas = SchemaRegistry()
    engine = SagaEngine(order_saga(timedelta(seconds=30)), registry=schemas)
    publisher = CapturingPublisher()
    processor = MessageProcessor(table, OutboxRelay(table, publisher), registry=schemas)
    for _ in range(orders):
        data = _order().saga_data()

        def start(uow: UnitOfWork, data: dict[str, Any] = data) -> bool:
            return engine.start(uow, data)

        processor.run(str(data["orderId"]), start, inbox_id=None)
    first = _commands(publisher.sent)
    publisher.sent.clear()
    return table, engine, publisher, processor, first


def _drive(handle: Callable[[Envelope], None], publisher: CapturingPublisher,
           commands: list[Envelope]) -> int:
    """Reply to every command, step after step, until every saga has completed."""
    handled = 0
    for _ in range(STEPS_PER_ORDER):
        for command in commands:
            handle(_reply(command))
            handled += 1
        commands = _commands(publisher.sent)
        publisher.sent.clear()
    return handled


def measure_ours(tables: TableServiceClient, counter: RequestCounter, orders: int) -> Figures:
    table, engine, publisher, processor, commands = _setup(
        tables, f"benchours{uuid.uuid4().hex[:8]}", orders)

    def handle(reply: Envelope) -> None:
        processor.handle(reply, engine.handle, partition_key=str(reply.data["sagaId"]))

    before, started = counter.total, time.perf_counter()
    handled = _drive(handle, publisher, commands)
    processor.relay.flush()  # any tail left unmarked: counted and timed (none here)
    seconds, requests = time.perf_counter() - started, counter.total - before
    _check_completed(table)
    _check_marked(table)
    return Figures("ours: one transaction", handled, seconds, requests)


def measure_baseline(tables: TableServiceClient, counter: RequestCounter, orders: int
                     ) -> Figures:
    table, engine, publisher, processor, commands = _setup(
        tables, f"benchbase{uuid.uuid4().hex[:8]}", orders)

    def handle(reply: Envelope) -> None:
        uow = CheckThenSetUnitOfWork(table, str(reply.data["sagaId"]), publisher, reply.id,
                                     processor.registry)
        if uow.already_handled():
            return
        engine.handle(reply, uow)
        uow.commit_check_then_set()

    before, started = counter.total, time.perf_counter()
    handled = _drive(handle, publisher, commands)
    seconds, requests = time.perf_counter() - started, counter.total - before
    _check_completed(table)
    return Figures("baseline: check-then-set", handled, seconds, requests)


def _check_completed(table: TableClient) -> None:
    """Both sides must have done the whole job, or their figures mean nothing."""
    states = list(table.query_entities("RowKey eq 'state'"))
    done = [row for row in states if '"status":"completed"' in row["state"]]
    if len(done) != len(states):
        raise RuntimeError(f"{len(states) - len(done)} of {len(states)} sagas did not complete")


def _check_marked(table: TableClient) -> None:
    """Ours must also leave no outbox row pending (every mark written, none skipped)."""
    pending = list(table.query_entities(f"Status eq '{PENDING}'"))
    if pending:
        raise RuntimeError(f"{len(pending)} outbox rows were left pending")


def _total(figures: list[Figures]) -> Figures:
    return Figures(figures[0].name, sum(f.messages for f in figures),
                   sum(f.seconds for f in figures), sum(f.requests for f in figures))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--orders", type=int, default=150)
    args = parser.parse_args(argv)
    counter = RequestCounter()
    with Azurite() as azurite:
        tables = TableServiceClient.from_connection_string(
            azurite.connection_string, raw_request_hook=counter.hook)
        measure_ours(tables, counter, 10)  # warm up connections and code paths
        # Alternate the two in rounds, so load from elsewhere on the machine hits both alike.
        rounds: list[list[Figures]] = [[], []]
        for _ in range(ROUNDS):
            rounds[0].append(measure_baseline(tables, counter, args.orders // ROUNDS))
            rounds[1].append(measure_ours(tables, counter, args.orders // ROUNDS))
        results = [_total(figures) for figures in rounds]
    print(f"\norders saga replies against Azurite ({args.orders} orders x {STEPS_PER_ORDER} "
          f"replies, {REPLY}, one at a time, {ROUNDS} alternating rounds)")
    print(f"{'variant':<28}{'messages':>9}{'msg/s':>10}{'storage req/msg':>17}")
    for figures in results:
        print(f"{figures.name:<28}{figures.messages:>9}{figures.per_second:>10.1f}"
              f"{figures.requests_per_message:>17.2f}")
    baseline, ours = results
    print(f"ours/baseline throughput: {ours.per_second / baseline.per_second:.2f}x; "
          f"storage requests per message: {ours.requests_per_message:.2f} vs "
          f"{baseline.requests_per_message:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
