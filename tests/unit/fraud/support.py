"""Payments as Event Hubs events, a recording publisher and a scripted model, for the fraud
agent's unit tests on the in-memory store."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from agents.backbone.breaker import CircuitBreaker
from agents.backbone.envelope import Envelope
from agents.backbone.memory import MemoryStore
from agents.backbone.outbox import OutboxRow
from agents.backbone.tables import RequestCounter
from agents.backbone.wire import encode_body
from agents.contracts import orders
from agents.fraud import bootstrap, entities
from agents.fraud.handlers import FraudAgent, RawEvent
from agents.fraud.model import Rules
from agents.reasoning import Completion, Reasoner, Usage

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
EXPLANATION = ('{"riskLevel":"high","rationale":"Six payments in a minute.",'
               '"recommendedAction":"block"}')


class RecordingPublisher:
    def __init__(self) -> None:
        self.published: list[OutboxRow] = []

    def publish(self, rows: Sequence[OutboxRow]) -> None:
        self.published.extend(rows)

    def close(self) -> None:
        return None

    def to(self, destination: str) -> list[Envelope]:
        return [row.envelope for row in self.published if row.destination == destination]

    @property
    def alerts(self) -> list[Envelope]:
        return self.to(entities.ALERTS_TOPIC)


class ScriptedModel:
    """A ChatModel that answers `answer` (or raises it) and counts its calls."""

    def __init__(self, answer: str | Exception = EXPLANATION) -> None:
        self.answer = answer
        self.calls = 0

    def complete(self, name: str, messages: Sequence[Mapping[str, str]],
                 schema: Mapping[str, Any]) -> Completion:
        self.calls += 1
        if isinstance(self.answer, Exception):
            raise self.answer
        return Completion(self.answer, "scripted", Usage(10, 5, 15))


def charge(n: int, *, card: str = "card-1", seconds: float | None = None, cents: int = 1_000,
           location: Mapping[str, object] | None = None, event_id: str | None = None
           ) -> RawEvent:
    """Payment `n` at sequence number `n` (`seconds` after T0, default n)."""
    data: dict[str, Any] = {"orderId": f"o-{n}", "chargeId": f"c-{n}", "customerId": "cu-1",
                            "card": card, "amountCents": cents}
    if location is not None:
        data["location"] = dict(location)
    at = T0 + timedelta(seconds=n if seconds is None else seconds)
    envelope = Envelope.new(orders.PAYMENT_CHARGED, data, source="/tests",
                            subject=data["orderId"], partitionkey=card,
                            id=event_id or f"pay-{n}", time=at)
    return RawEvent(encode_body(envelope), {}, n, str(n * 100))


def agent(store: MemoryStore, publisher: RecordingPublisher, *,
          model: ScriptedModel | None = None, rules: Rules | None = None,
          breaker: CircuitBreaker | None = None) -> FraudAgent:
    return bootstrap.build(store, publisher, rules=rules,
                           reasoner=None if model is None else Reasoner(model, breaker=breaker))


def counted_store() -> tuple[MemoryStore, RequestCounter]:
    counter = RequestCounter()
    return MemoryStore(counter=counter), counter
