"""Handlers: one per incoming message kind. Each runs in a unit of work on one partition
(state + inbox + outbox in one transaction) through the backbone's `MessageProcessor`.

No Azure Functions types here; `blueprint` translates triggers into these calls.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from agents.backbone.envelope import Envelope
from agents.backbone.errors import InvalidEvent, PoisonMessage, PublishFailed
from agents.backbone.processing import Closeable, Composed, MessageProcessor, Outcome
from agents.backbone.ratelimit import RateLimiter
from agents.backbone.saga import REPLY, TIMEOUT, SagaEngine, SagaView
from agents.backbone.schemas import SchemaRegistry
from agents.backbone.unit_of_work import UnitOfWork
from agents.contracts import fraud
from agents.orders.model import Order

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OrdersAgent(Composed):
    """The composed orders agent that `bootstrap` returns and the Blueprint keeps (tests build
    their own): its schema registry, saga engine and adapters.

    One `MessageProcessor` per table: it runs a handler in a unit of work on one partition
    and relays the outbox before the trigger settles the message.
    """

    schemas: SchemaRegistry
    sagas: MessageProcessor
    engine: SagaEngine
    limiter: RateLimiter | None = None
    """Callers' rate at `POST /api/orders` (None: not limited)."""
    owned: Sequence[Closeable] = ()
    """The clients this agent opened (`bootstrap`), closed after the relays; `build` leaves
    the adapters it was given to their owner."""

    @property
    def processors(self) -> list[MessageProcessor]:
        return [self.sagas]



@dataclass(frozen=True)
class Placement:
    created: bool
    conflict: bool


def place_order(order: Order, agent: OrdersAgent) -> Placement:
    """Start the saga for a new Idempotency-Key, or find the order it already named.

    Two racing requests with one key both try to insert the same state row; the loser's
    conflict makes the unit of work re-decide, and it then finds the winner's order. A
    retried request re-publishes what a crashed first attempt left in the outbox. If the
    broker is down after the commit, the order stands and the outbox sweeper publishes.
    """
    decisions: list[Placement] = []

    def decide(uow: UnitOfWork) -> Placement:
        existing = uow.load()
        if existing is None:
            agent.engine.start(uow, order.saga_data())
            decisions.append(Placement(created=True, conflict=False))
        else:
            conflict = existing["data"]["requestHash"] != order.request_hash
            decisions.append(Placement(created=False, conflict=conflict))
        return decisions[-1]

    try:
        agent.sagas.run(order.order_id, decide, inbox_id=None)
        if not decisions[-1].created:
            relay = agent.sagas.relay
            relay.dispatch(relay.pending(order.order_id))
    except PublishFailed as error:
        if not decisions:
            raise
        log.warning("order %s stored, publishing deferred to the sweeper: %s",
                    order.order_id, error)
    return decisions[-1]


def get_order(order_id: str, agent: OrdersAgent) -> SagaView | None:
    """The order's saga and step log, each entry with its own time (two storage requests)."""
    return SagaEngine.view(agent.sagas.store, order_id)


def handle_saga_event(event: Envelope, agent: OrdersAgent) -> Outcome[Any]:
    """A service reply, a step deadline or a fraud alert, applied to its order's saga."""
    if event.type in (REPLY, TIMEOUT):
        return agent.sagas.handle(event, agent.engine.handle,
                                    partition_key=str(event.data["sagaId"]))
    if event.type == fraud.ALERT_RAISED:
        return agent.sagas.handle(event, partial(_abort_for_fraud, engine=agent.engine),
                                    partition_key=str(event.data["orderId"]))
    raise InvalidEvent(f"the order saga does not handle {event.type}", reason="UnexpectedType")


def _abort_for_fraud(event: Envelope, uow: UnitOfWork, *, engine: SagaEngine) -> bool:
    if uow.load() is None:
        raise PoisonMessage(f"fraud alert {event.id}: no order {uow.partition_key}",
                            reason="UnknownOrder")
    reason = str(event.data.get("reason") or "fraud alert")
    return engine.abort(uow, f"fraud alert: {reason}", cause=event)
