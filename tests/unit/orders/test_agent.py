"""The orders agent on the in-memory store: reading an order, and leaving the agent."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta

from agents.backbone.memory import MemoryStore
from agents.backbone.outbox import OutboxRelay, OutboxRow
from agents.backbone.processing import MessageProcessor
from agents.backbone.saga import TIMEOUT, LogEvent, SagaEngine
from agents.backbone.schemas import SchemaRegistry
from agents.backbone.tables import RequestCounter
from agents.contracts import fraud
from agents.orders.edge import place_order_request
from agents.orders.handlers import OrdersAgent, get_order, place_order
from agents.orders.model import Order, order_saga


class Recording:
    """A publisher that keeps what it sent, and a client that remembers being closed; both
    note in `closed` the order things were closed in."""

    def __init__(self, name: str, closed: list[str]) -> None:
        self.name = name
        self.sent: list[OutboxRow] = []
        self._closed = closed

    def publish(self, rows: Sequence[OutboxRow]) -> None:
        self.sent.extend(rows)

    def close(self) -> None:
        self._closed.append(self.name)


def agent_on(store: MemoryStore, publisher: Recording, owned: Sequence[Recording] = ()
             ) -> OrdersAgent:
    schemas = SchemaRegistry(fraud.SCHEMAS)
    return OrdersAgent(
        schemas=schemas,
        sagas=MessageProcessor(store, OutboxRelay(store, publisher), registry=schemas),
        engine=SagaEngine(order_saga(timedelta(seconds=30)), registry=schemas),
        owned=owned)


def an_order() -> Order:
    body = (b'{"customerId": "c-1", "card": "tok-1", '
            b'"items": [{"sku": "sku-1", "quantity": 2, "unitPriceCents": 1250}]}')
    return place_order_request(str(uuid.uuid4()), body)


def test_reading_an_order_on_any_store_is_two_requests_with_each_log_entry_timed() -> None:
    counter = RequestCounter()
    store = MemoryStore(counter=counter)
    agent = agent_on(store, Recording("bus", []))
    order = an_order()
    place_order(order, agent)
    before = counter.total
    view = get_order(order.order_id, agent)
    assert counter.total - before == 2
    assert view is not None and view.saga_id == order.order_id
    assert [entry.event for entry in view.log] == [LogEvent.STARTED, LogEvent.SENT]
    assert all(entry.at is not None for entry in view.log)


def test_an_unknown_order_reads_as_none() -> None:
    assert get_order("nope", agent_on(MemoryStore(), Recording("bus", []))) is None


def test_leaving_the_agent_writes_the_relays_marks_then_closes_what_it_owns() -> None:
    closed: list[str] = []
    publisher = Recording("publisher", closed)
    tables = Recording("tables", closed)
    order = an_order()
    with agent_on(MemoryStore(), publisher, owned=(publisher, tables)) as agent:
        place_order(order, agent)
        assert [row.envelope.type for row in publisher.sent] == [
            "orders.inventory.reserve-stock", TIMEOUT]
        # Published; the "dispatched" marks still wait for the partition's next transaction.
        assert len(agent.sagas.relay.pending(order.order_id)) == 2
        assert closed == []
    assert agent.sagas.relay.pending(order.order_id) == []
    assert closed == ["publisher", "tables"]


def test_leaving_an_agent_built_on_given_adapters_leaves_them_open() -> None:
    closed: list[str] = []
    with agent_on(MemoryStore(), Recording("publisher", closed)) as agent:
        place_order(an_order(), agent)
    assert closed == []
