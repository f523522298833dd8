"""The metrics a user watches, read back through an in-memory metric reader."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from agents.backbone import Envelope, telemetry
from agents.backbone.breaker import BreakerOptions, CircuitBreaker
from agents.backbone.memory import MemoryStore
from agents.backbone.outbox import OutboxRelay, OutboxRow
from agents.backbone.processing import MessageProcessor
from agents.backbone.schemas import SchemaRegistry
from agents.backbone.store import Operation, Write
from agents.backbone.unit_of_work import UnitOfWork
from tests.telemetry_capture import installed, metric_value

NOW = datetime(2026, 12, 2, 5, 0, tzinfo=UTC)
EVENT = "tests.counter.incremented"


class Recording:
    def __init__(self) -> None:
        self.published: list[OutboxRow] = []

    def publish(self, rows: Sequence[OutboxRow]) -> None:
        self.published.extend(rows)

    def close(self) -> None:
        pass


@pytest.fixture(autouse=True)
def sdk() -> None:
    installed()


def processor(name: str) -> MessageProcessor:
    store = MemoryStore(name)
    registry = SchemaRegistry({EVENT: {"type": "object"}})
    return MessageProcessor(store, OutboxRelay(store, Recording(), now=lambda: NOW),
                            registry=registry, now=lambda: NOW)


def event() -> Envelope:
    return Envelope.new(EVENT, {}, source="/tests", subject="counter-1")


def count(event: Envelope, uow: UnitOfWork) -> None:
    uow.save({"count": 1})


def give_up(event: Envelope, uow: UnitOfWork) -> None:
    uow.request_dead_letter("Exhausted", "compensation gave up")


def test_handled_and_duplicate_messages_are_counted_per_function() -> None:
    name = f"fn-{uuid.uuid4().hex[:6]}"
    handler, message = processor(name), event()
    handler.handle(message, count)
    handler.handle(message, count)
    handler.handle(message, count)
    function = {"backbone.function": name}
    assert metric_value(telemetry.HANDLED, function) == 1
    assert metric_value(telemetry.DUPLICATES, function) == 2


def test_a_message_the_handler_dead_letters_is_counted_with_its_function() -> None:
    name = f"fn-{uuid.uuid4().hex[:6]}"
    processor(name).handle(event(), give_up)
    assert metric_value(telemetry.DEAD_LETTERED, {"backbone.function": name}) == 1


def test_a_poison_message_is_counted_dead_lettered_with_its_reason() -> None:
    name = f"fn-{uuid.uuid4().hex[:6]}"
    nameless = Envelope.new(EVENT, {}, source="/tests")
    with pytest.raises(Exception, match="partition"):
        processor(name).handle(nameless, count)
    assert metric_value(telemetry.DEAD_LETTERED, {"backbone.function": name,
                                                  "backbone.reason": "NoPartitionKey"}) == 1


def test_breaker_state_reads_0_closed_and_2_open() -> None:
    name = f"breaker-{uuid.uuid4().hex[:6]}"
    breaker = CircuitBreaker(name, clock=lambda: 100.0, options=BreakerOptions(
        failure_ratio=0.5, minimum_throughput=2, break_duration=30))
    assert metric_value(telemetry.BREAKER_STATE, {"backbone.breaker": name}) == 0
    for _ in range(2):
        with pytest.raises(OSError):
            breaker.call(_refuse)
    assert metric_value(telemetry.BREAKER_STATE, {"backbone.breaker": name}) == 2


def _refuse() -> None:
    raise OSError("refused")


def test_the_sweeper_reports_the_oldest_pending_row_and_the_dispatch_age() -> None:
    store = MemoryStore(f"outbox-{uuid.uuid4().hex[:6]}")
    destination = f"queue-{uuid.uuid4().hex[:6]}"
    row = OutboxRow.new("p-1", event(), destination=destination, scheduled_at=None,
                        created_at=NOW - timedelta(seconds=90))
    store.submit([Operation(Write.INSERT, row.to_entity())])
    relay = OutboxRelay(store, Recording(), now=lambda: NOW)

    relay.sweep(older_than=timedelta(minutes=1))
    assert metric_value(telemetry.OUTBOX_PENDING_AGE, {"backbone.table": store.name}) == 90
    assert metric_value(telemetry.OUTBOX_DISPATCH_AGE,
                        {"messaging.destination.name": destination}) == 90

    relay.sweep(older_than=timedelta(minutes=1))
    assert metric_value(telemetry.OUTBOX_PENDING_AGE, {"backbone.table": store.name}) == 0
