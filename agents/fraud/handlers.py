"""The batch unit of work: one Event Hubs batch of one partition, scored and committed in a
handful of entity-group transactions, with the partition's high-water mark in each.

State layout (one table, `fraud`): a card lives in one Event Hubs partition and a partition has
one reader at a time, so all the state of partition P is in Table partition P:

    (P, "mark")        the high-water mark: the last sequence number whose effects are stored
    (P, "card|<card>") the card's `CardWindow`
    (P, "outbox|...")  alerts to `fraud-alerts`, inserted with the decision
    (P, "answer|...")  the Reasoner's explanation, recorded with the decision

Every transaction replaces the mark row (ETag-guarded), so the mark's ETag is a version of
the whole partition: while it is the ETag this instance last wrote, its cached card rows are
exact and a batch costs no read at all. A re-read batch (crash, lost lease, checkpoint that did
not happen) finds its events at or below the mark and has no second effect; a refused mark
means another reader wrote the partition: reload, re-score what is above the new mark.

No Azure Functions types here; `blueprint` turns the trigger's events into a `Batch`.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from agents.backbone.envelope import Envelope
from agents.backbone.errors import ConcurrencyConflict, PoisonMessage
from agents.backbone.outbox import OutboxRelay, OutboxRow
from agents.backbone.parking import park, parked_event
from agents.backbone.publishers import Publisher
from agents.backbone.schemas import SchemaRegistry
from agents.backbone.store import MAX_ENTITIES, Operation, Store, TransactionRefused, Write
from agents.backbone.tables import table_key
from agents.backbone.unit_of_work import UnitOfWork
from agents.backbone.wire import parse_eventhub
from agents.contracts import fraud, orders
from agents.fraud import entities
from agents.fraud.model import CardWindow, Payment, Rules, Verdict, score
from agents.reasoning import Answer, ReasoningError, RecordedAnswers, Task, Usage, record

log = logging.getLogger(__name__)

MARK_ROW = "mark"
CARD_PREFIX = "card|"
_ALERT_NAMESPACE = uuid.UUID("0b6f3c1e-2a4d-4e8b-9c7f-1d2e3f4a5b6c")


@dataclass(frozen=True)
class RawEvent:
    """One Event Hubs event as read: body, application properties and its position."""

    body: bytes
    properties: Mapping[str, Any]
    sequence_number: int
    offset: str


@dataclass(frozen=True)
class Batch:
    partition_id: str
    events: Sequence[RawEvent]


@dataclass
class BatchResult:
    """What scoring one batch did."""

    verdicts: list[Verdict] = field(default_factory=list)
    explanations: dict[str, Answer] = field(default_factory=dict)
    """By payment event id, for the verdicts the Reasoner was asked about."""
    alerts: list[OutboxRow] = field(default_factory=list)
    parked: list[Envelope] = field(default_factory=list)
    already_applied: int = 0
    """Events at or below the high-water mark (a re-read batch) or seen before (a copy)."""
    transactions: int = 0


@dataclass
class _Partition:
    """One partition's state as this instance last read or wrote it."""

    mark: int
    mark_etag: str | None
    cards: dict[str, tuple[CardWindow, str | None]]


@dataclass
class FraudAgent:
    """The composed fraud agent that `bootstrap` returns and the Blueprint keeps."""

    schemas: SchemaRegistry
    store: Store
    relay: OutboxRelay
    parking: Publisher
    """Sends parked poison events now (not through the outbox: the checkpoint waits)."""
    answers: RecordedAnswers
    task: Task
    rules: Rules = field(default_factory=Rules)
    hub: str = entities.PAYMENTS_HUB
    consumer_group: str = entities.CONSUMER_GROUP
    attempts: int = 4
    """Reloads after another reader wrote the partition, before ConcurrencyConflict."""
    _cache: dict[str, _Partition] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def forget(self, partition_id: str) -> None:
        """Drop the cached state (the next batch reads it again)."""
        with self._lock:
            self._cache.pop(partition_id, None)

    def cached(self, partition_id: str) -> _Partition | None:
        with self._lock:
            return self._cache.get(partition_id)

    def keep(self, partition_id: str, state: _Partition) -> None:
        with self._lock:
            self._cache[partition_id] = state


def score_batch(agent: FraudAgent, batch: Batch) -> BatchResult:
    """Score one batch effectively once. Invalid events are parked before this returns;
    a transient failure raises (the trigger's retry policy retries the whole batch)."""
    events = sorted(batch.events, key=lambda event: event.sequence_number)
    payments: list[Payment] = []
    poison: list[tuple[RawEvent, PoisonMessage]] = []
    for event in events:
        try:
            payments.append(_payment(agent, event))
        except PoisonMessage as error:
            poison.append((event, error))
    for _ in range(agent.attempts):
        state = agent.cached(batch.partition_id) or _load(agent.store, batch.partition_id)
        result = BatchResult()
        result.parked = [_park(agent.parking, batch.partition_id, event, error, hub=agent.hub,
                               consumer_group=agent.consumer_group)
                         for event, error in poison if event.sequence_number > state.mark]
        fresh = [p for p in payments if p.sequence_number > state.mark]
        result.already_applied = len(payments) - len(fresh)
        if result.already_applied:
            # A re-read: what its first reading committed may not have been published.
            agent.relay.dispatch(agent.relay.pending(batch.partition_id))
        try:
            _apply(agent, batch.partition_id, state, fresh, result)
        except TransactionRefused as refused:
            log.warning("partition %s was written by another reader (%s): reloading",
                        batch.partition_id, refused)
            agent.forget(batch.partition_id)
            continue
        agent.relay.flush_idle()
        return result
    raise ConcurrencyConflict(f"partition {batch.partition_id}: the state kept changing under "
                              f"{agent.attempts} attempts")


def park_batch(agent: FraudAgent, batch: Batch, error: BaseException) -> list[Envelope]:
    """Retries exhausted: park every event above the (last known) mark with the error, so
    the checkpoint that follows loses nothing; `agents.ops poison` replays them."""
    state = agent.cached(batch.partition_id)
    mark = -1 if state is None else state.mark
    return [_park(agent.parking, batch.partition_id, event, error, hub=agent.hub,
                  consumer_group=agent.consumer_group)
            for event in sorted(batch.events, key=lambda e: e.sequence_number)
            if event.sequence_number > mark]


def park_uncomposed(parking: Publisher, batch: Batch, error: BaseException) -> list[Envelope]:
    """Retries exhausted and the agent could not even be composed (a bad setting, storage
    down at start): park every event of the batch through `parking`, composed on its own.
    Nothing is known of the mark, so a re-read event may be parked too; replayed, its card
    window knows its event id, and a second alert would carry the first one's id."""
    return [_park(parking, batch.partition_id, event, error)
            for event in sorted(batch.events, key=lambda e: e.sequence_number)]


def _payment(agent: FraudAgent, event: RawEvent) -> Payment:
    envelope = parse_eventhub(event.body, event.properties, registry=agent.schemas)
    if envelope.type != orders.PAYMENT_CHARGED:
        raise PoisonMessage(f"event {envelope.id}: the fraud agent does not score "
                            f"{envelope.type}", reason="UnexpectedType")
    return Payment.from_event(envelope.id, envelope.data, envelope.time, event.sequence_number)


def _park(parking: Publisher, partition_id: str, event: RawEvent, error: BaseException, *,
          hub: str = entities.PAYMENTS_HUB, consumer_group: str = entities.CONSUMER_GROUP
          ) -> Envelope:
    parked = parked_event(source=fraud.SOURCE, hub=hub, consumer_group=consumer_group,
                          partition_id=partition_id, offset=event.offset,
                          sequence_number=event.sequence_number, body=event.body,
                          properties=event.properties, error=error)
    park(parking, entities.POISON_QUEUE, parked)
    log.error("parked event %s/%s seq %d on %s: %s", hub, partition_id, event.sequence_number,
              entities.POISON_QUEUE, parked.data["reason"])
    return parked


def _load(store: Store, partition_id: str) -> _Partition:
    """Two requests: the mark, and the partition's card rows (one page per 1,000)."""
    partition = table_key(partition_id)
    mark = store.get(partition, MARK_ROW)
    cards: dict[str, tuple[CardWindow, str | None]] = {
        str(row.entity["Card"]): (CardWindow.from_state(json.loads(row.entity["state"])),
                                  row.etag)
        for row in store.query(CARD_PREFIX, partition_key=partition)}
    if mark is None:
        return _Partition(-1, None, cards)
    return _Partition(int(mark.entity["Sequence"]), mark.etag, cards)


def _apply(agent: FraudAgent, partition_id: str, state: _Partition, payments: list[Payment],
           result: BatchResult) -> None:
    """Score in sequence order, explain the high-risk verdicts (outside any transaction),
    then commit in chunks of at most 100 operations, each moving the mark forward."""
    cards = dict(state.cards)
    # Copies of the touched cards only: one to score on, one to commit chunk by chunk.
    windows: dict[str, CardWindow] = {}
    scored: list[Verdict] = []
    for payment in payments:
        if payment.card not in windows:
            windows[payment.card] = _copy(cards.get(payment.card))
        window = windows[payment.card]
        if window.has_seen(payment):
            result.already_applied += 1
            continue
        verdict = score(window, payment, agent.rules)
        window.add(payment, agent.rules)
        scored.append(verdict)
    for verdict in scored:
        if verdict.explain:
            result.explanations[verdict.payment.event_id] = _explain(agent, partition_id,
                                                                     verdict)
    # Replay each chunk's payments onto the stored windows, so a chunk's card rows hold
    # exactly the payments up to its mark.
    committed = {card: _copy(cards.get(card)) for card in windows}
    mark, mark_etag = state.mark, state.mark_etag
    for chunk in _chunks(scored, result.explanations):
        uow = UnitOfWork(agent.store, partition_id, inbox_id=None, registry=agent.schemas)
        touched: list[str] = []
        for verdict in chunk:
            payment = verdict.payment
            committed[payment.card].add(payment, agent.rules)
            if payment.card not in touched:
                touched.append(payment.card)
            answer = result.explanations.get(payment.event_id)
            if answer is not None:
                record(uow, payment.event_id, agent.task, answer)
            if verdict.alert:
                uow.emit(_alert(verdict, answer), destination=entities.ALERTS_TOPIC)
        chunk_mark = chunk[-1].payment.sequence_number
        operations = [_mark_operation(uow.table_partition, chunk_mark, mark_etag)]
        operations += [_card_operation(uow.table_partition, card, committed[card],
                                       cards.get(card, (None, None))[1]) for card in touched]
        operations += uow.operations()
        etags = agent.store.submit(operations)
        result.transactions += 1
        mark, mark_etag = chunk_mark, etags[0]
        for card, etag in zip(touched, etags[1:1 + len(touched)], strict=True):
            cards[card] = (CardWindow.from_state(committed[card].to_state()), etag)
        outbox = uow.staged_outbox
        for row, etag in zip(outbox, etags[len(etags) - len(outbox):], strict=True):
            row.etag = etag
        agent.keep(partition_id, _Partition(mark, mark_etag, dict(cards)))
        agent.relay.publish(outbox)
        result.alerts += outbox
        result.verdicts += chunk
    if not scored and payments:
        # Every fresh event was a copy: nothing to write, the mark may stay behind.
        agent.keep(partition_id, _Partition(mark, mark_etag, cards))


def _copy(stored: tuple[CardWindow, str | None] | None) -> CardWindow:
    return CardWindow() if stored is None else CardWindow.from_state(stored[0].to_state())


def _explain(agent: FraudAgent, partition_id: str, verdict: Verdict) -> Answer:
    """The Reasoner's explanation, asked outside any transaction (behind its breaker); a
    failure or an open breaker gives the rules-only one at once, naming why. Without a model
    there is nothing to look up either: an answer is only ever recorded with its event's mark.
    (Not `RecordedAnswers.answer`: its fallback is not told why the model was not used.)"""
    reasoner = agent.answers.reasoner
    if reasoner is None:
        return _rules_only(verdict, "no model configured")
    event_id = verdict.payment.event_id
    recorded = agent.answers.lookup(partition_id, event_id, agent.task)
    if recorded is not None:
        return recorded
    try:
        return reasoner.answer(agent.task, verdict.explain_input())
    except ReasoningError as error:
        log.warning("payment %s: %s (%s); the verdict is rules-only", event_id, error.reason,
                    error.description)
        return _rules_only(verdict, f"{error.reason}: {error.description}")


def _rules_only(verdict: Verdict, why: str) -> Answer:
    return Answer(verdict.rules_only(why), "fallback", "", Usage(0, 0, 0))


def _chunks(verdicts: list[Verdict], explanations: Mapping[str, Answer]
            ) -> list[list[Verdict]]:
    """Consecutive runs whose operations (mark + cards + answers + alerts) fit in one
    entity-group transaction."""
    chunks: list[list[Verdict]] = [[]]
    cards: set[str] = set()
    size = 1
    for verdict in verdicts:
        payment = verdict.payment
        answer = explanations.get(payment.event_id)
        rows = int(verdict.alert) + int(answer is not None and answer.source != "recorded")
        if chunks[-1] and size + rows + (payment.card not in cards) > MAX_ENTITIES:
            chunks.append([])
            cards, size = set(), 1
        size += rows + (payment.card not in cards)
        cards.add(payment.card)
        chunks[-1].append(verdict)
    return [chunk for chunk in chunks if chunk]


def _mark_operation(partition: str, sequence: int, etag: str | None) -> Operation:
    entity = {"PartitionKey": partition, "RowKey": MARK_ROW, "Kind": "mark",
              "Sequence": str(sequence), "UpdatedAt": datetime.now(UTC)}
    if etag is None:
        return Operation(Write.INSERT, entity)
    return Operation(Write.REPLACE, entity, etag)


def _card_operation(partition: str, card: str, window: CardWindow, etag: str | None
                    ) -> Operation:
    entity = {"PartitionKey": partition, "RowKey": CARD_PREFIX + table_key(card),
              "Kind": "state", "Card": card,
              "state": json.dumps(window.to_state(), separators=(",", ":")),
              "UpdatedAt": datetime.now(UTC)}
    if etag is None:
        return Operation(Write.INSERT, entity)
    return Operation(Write.REPLACE, entity, etag)


def _alert(verdict: Verdict, answer: Answer | None) -> Envelope:
    """`fraud.alert.raised` for the payment's order; its id comes from the payment's, so a
    re-sent alert is dropped by the topic's duplicate detection."""
    payment = verdict.payment
    explanation = answer.value if answer is not None else verdict.rules_only("not asked")
    return Envelope.new(
        fraud.ALERT_RAISED,
        {"orderId": payment.order_id, "reason": verdict.summary(), "score": verdict.score,
         "reasons": [reason.name for reason in verdict.reasons],
         "riskLevel": explanation["riskLevel"], "rationale": explanation["rationale"],
         "recommendedAction": explanation["recommendedAction"],
         "explainedBy": "rules" if answer is None or answer.source == "fallback"
         else "model"},
        source=fraud.SOURCE, subject=payment.order_id, partitionkey=payment.order_id,
        id=str(uuid.uuid5(_ALERT_NAMESPACE, payment.event_id)),
    )
