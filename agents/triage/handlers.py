"""Handlers of the triage agent, each in a unit of work on one ticket's partition (state +
inbox by CloudEvent id + outbox in one transaction). No Azure Functions types here.

The model is asked BEFORE the unit of work (a handler re-runs after a 412), and its answer is
recorded in the same transaction as the routing decision, so a redelivery never asks again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from agents.backbone.envelope import Envelope
from agents.backbone.errors import BackboneError, PublishFailed
from agents.backbone.processing import MessageProcessor, Outcome
from agents.backbone.publishers import Publisher
from agents.backbone.ratelimit import RateLimiter
from agents.backbone.schemas import SchemaRegistry
from agents.backbone.tables import STATE_ROW, inbox_row, table_key
from agents.backbone.unit_of_work import UnitOfWork
from agents.contracts import triage as contracts
from agents.reasoning import Answer, Reasoner, ReasoningError, RecordedAnswers, Task, Usage, record
from agents.triage.model import (
    Classification,
    Routing,
    Status,
    Ticket,
    TicketState,
    route,
    unclassified,
)

log = logging.getLogger(__name__)

TICKETS_TOPIC = "triage-tickets"
HELPDESK_TOPIC = "triage-helpdesk"
REJECTED_PARTITION = "rejected:"
REJECTED_PREFIX = "rejected|"
# A Table string property holds 32K UTF-16 characters; the rest of a huge body is cut.
_BODY_LIMIT = 30_000


@dataclass(frozen=True)
class TriageAgent:
    """The composed triage agent `bootstrap` returns and the Blueprint keeps."""

    schemas: SchemaRegistry
    tickets: MessageProcessor
    answers: RecordedAnswers
    task: Task
    threshold: float
    ingress: bool
    """Whether the webhook's Event Grid topic is configured."""
    publisher: Publisher
    limiter: RateLimiter | None = None
    """Per caller at the webhook (`HELPDESK_WEBHOOK_RATE_LIMIT`); None when `off`."""

    def close(self) -> None:
        """Write the relay's remaining marks, then close the publisher and its clients."""
        self.tickets.relay.close()
        self.publisher.close()

    def __enter__(self) -> TriageAgent:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def reasoner(self) -> Reasoner | None:
        return self.answers.reasoner


@dataclass(frozen=True)
class Triaged:
    """What handling one ticket event did."""

    ticket_id: str
    changed: bool
    state: TicketState | None


def ticket_partition(ticket_id: str) -> str:
    """Tickets, the rejected events and the webhook's deliveries never share a partition."""
    return f"ticket:{ticket_id}"


def current(agent: TriageAgent, ticket_id: str) -> TicketState | None:
    row = agent.tickets.store.get(table_key(ticket_partition(ticket_id)), STATE_ROW)
    return None if row is None else TicketState.from_state(json.loads(row.entity["state"]))


def classify(agent: TriageAgent, ticket_id: str, input: Mapping[str, Any], message_id: str
             ) -> Answer:
    """The recorded answer, else the model's, else the fallback with the model's error as
    its summary (so manual triage says why). Never inside a unit of work.

    `RecordedAnswers.answer` would hide the error from the fallback, so this asks the model
    itself and keeps `RecordedAnswers` for the lookup and `record` for the write."""
    recorded = agent.answers.lookup(ticket_partition(ticket_id), message_id, agent.task)
    if recorded is not None:
        return recorded
    if agent.reasoner is None:
        return _fallback("no model configured (LLM_PROVIDER=none)")
    try:
        return agent.reasoner.answer(agent.task, input)
    except ReasoningError as error:
        log.warning("ticket %s: classification failed: %s (%s); manual triage",
                    ticket_id, error.reason, error.description)
        return _fallback(f"{error.reason}: {error.description}")


def _fallback(reason: str) -> Answer:
    return Answer(unclassified(reason), "fallback", "", Usage(0, 0, 0))


def ticket_received(event: Envelope, agent: TriageAgent) -> Outcome[Triaged]:
    """A helpdesk ticket event (created, updated, commented), already valid for its schema.

    An event whose version is not newer than the triaged one is recorded in the inbox and
    changes nothing (Event Grid delivers unordered); the model is not asked for it."""
    ticket = Ticket.from_event_data(event.data)
    known = current(agent, ticket.ticket_id)
    stale = known is not None and not known.is_newer(ticket.version)
    answer = None if stale else classify(agent, ticket.ticket_id,
                                         ticket.classification_input(), event.id)
    return agent.tickets.handle(event, partial(_triage, ticket=ticket, answer=answer,
                                               agent=agent),
                                partition_key=ticket_partition(ticket.ticket_id))


def _triage(event: Envelope, uow: UnitOfWork, *, ticket: Ticket, answer: Answer | None,
            agent: TriageAgent) -> Triaged:
    state = uow.load()
    known = None if state is None else TicketState.from_state(state)
    if known is not None and not known.is_newer(ticket.version):
        return Triaged(ticket.ticket_id, changed=False, state=known)
    assert answer is not None, "a ticket's triaged version only grows"
    record(uow, event.id, agent.task, answer)
    decided = apply_answer(uow, event, ticket.ticket_id, ticket.version,
                           ticket.classification_input(), answer, known, agent)
    return Triaged(ticket.ticket_id, changed=True, state=decided)


def apply_answer(uow: UnitOfWork, cause: Envelope | None, ticket_id: str, version: int,
                 input: Mapping[str, Any], answer: Answer, known: TicketState | None,
                 agent: TriageAgent) -> TicketState:
    """Route by the answer, save the ticket and emit what changed: `classified` when the
    routing is new or different, `page` when the ticket newly needs one. `cause` is the
    ticket event (None for a re-classification, which starts its own conversation)."""
    classification = Classification.from_answer(answer.value)
    from_model = answer.source != "fallback"
    routing = route(classification, from_model=from_model, threshold=agent.threshold,
                    unavailable_reason=None if from_model else classification.summary)
    decided = TicketState(
        ticket_id=ticket_id, version=version, input=dict(input), status=routing.status,
        team=routing.team, priority=routing.priority,
        category=classification.category, confidence=classification.confidence,
        summary=classification.summary, manual_reason=routing.manual_reason,
        classified_by=answer.source)
    uow.save(decided.to_state())
    if known is None or known.routing() != routing:
        uow.emit(classified_event(cause, decided, routing), destination=TICKETS_TOPIC)
    if routing.pages and (known is None or not known.routing().pages):
        uow.emit(_event(cause, contracts.PAGE_RAISED, {
            "ticketId": ticket_id, "team": routing.team, "summary": decided.summary},
            ticket_id=ticket_id, team=routing.team), destination=TICKETS_TOPIC)
    if routing.status is Status.MANUAL:
        log.warning("ticket %s to manual triage: %s", ticket_id, routing.manual_reason)
    return decided


def _event(cause: Envelope | None, type: str, data: Mapping[str, Any], *, ticket_id: str,
           team: str) -> Envelope:
    # Each team's subscription filters on the subject's first segment.
    subject = f"{team}/{ticket_id}"
    if cause is None:
        return Envelope.new(type, data, source=contracts.SOURCE, subject=subject,
                            partitionkey=ticket_id)
    return cause.follow(type, data, source=contracts.SOURCE, subject=subject,
                        partitionkey=ticket_id)


def classified_event(cause: Envelope | None, state: TicketState, routing: Routing
                     ) -> Envelope:
    data: dict[str, Any] = {
        "ticketId": state.ticket_id, "version": state.version, "team": routing.team,
        "priority": routing.priority, "category": state.category,
        "confidence": state.confidence, "summary": state.summary,
        "manual": routing.status is Status.MANUAL}
    if routing.manual_reason is not None:
        data["manualReason"] = routing.manual_reason
    return _event(cause, contracts.TICKET_CLASSIFIED, data, ticket_id=state.ticket_id,
                  team=routing.team)


def reclassify(ticket_id: str, agent: TriageAgent) -> Triaged:
    """Ask the model again for a ticket in manual triage (the ops command, once the model is
    back). A fallback answer changes nothing: the ticket stays in manual triage as it was."""
    known = current(agent, ticket_id)
    if known is None or known.status is not Status.MANUAL:
        return Triaged(ticket_id, changed=False, state=known)
    run = f"reclassify:{uuid.uuid4()}"
    answer = classify(agent, ticket_id, known.input, run)
    if answer.source == "fallback":
        return Triaged(ticket_id, changed=False, state=known)

    def decide(uow: UnitOfWork) -> Triaged:
        state = uow.load()
        now = None if state is None else TicketState.from_state(state)
        if now is None or now.status is not Status.MANUAL or now.version != known.version:
            return Triaged(ticket_id, changed=False, state=now)
        record(uow, run, agent.task, answer)
        return Triaged(ticket_id, changed=True, state=apply_answer(
            uow, None, ticket_id, now.version, now.input, answer, now, agent))

    outcome = agent.tickets.run(ticket_partition(ticket_id), decide, inbox_id=run)
    assert outcome.result is not None, "a new run id is never a duplicate"
    return outcome.result


def manual_tickets(agent: TriageAgent) -> list[TicketState]:
    """Every ticket in manual triage (a scan of the state rows: an operator's query)."""
    states = (TicketState.from_state(json.loads(row.entity["state"]))
              for row in agent.tickets.store.query(STATE_ROW))
    return [state for state in states if state.status is Status.MANUAL]


def rejected_events(agent: TriageAgent) -> list[dict[str, Any]]:
    """Every recorded invalid event, oldest key first."""
    return [{key: value for key, value in row.entity.items()
             if key not in ("PartitionKey", "RowKey", "Kind")}
            for row in agent.tickets.store.query(REJECTED_PREFIX,
                                                 partition_key=REJECTED_PARTITION)]


@dataclass(frozen=True)
class Rejection:
    """An event that can never be triaged, recorded with why (listed by `agents.ops`)."""

    key: str
    reason: str
    description: str
    duplicate: bool


def reject(payload: Mapping[str, Any] | None, body: bytes, error: BackboneError,
           agent: TriageAgent) -> Rejection:
    """Record an invalid event in the `rejected` partition, once per event id (or per body
    when it has no id), so the delivery can end without losing it."""
    event_id = payload.get("id") if isinstance(payload, Mapping) else None
    key = str(event_id) if event_id else "sha256:" + hashlib.sha256(body).hexdigest()
    text = body.decode("utf-8", "replace")

    def decide(uow: UnitOfWork) -> None:
        uow.append(REJECTED_PREFIX + table_key(key), {
            "Kind": "rejected", "EventId": key, "Reason": error.reason,
            "Description": error.description[:_BODY_LIMIT],
            "EventType": str(payload.get("type", "")) if isinstance(payload, Mapping) else "",
            "Body": text[:_BODY_LIMIT], "BodyTruncated": len(text) > _BODY_LIMIT,
            "RejectedAt": uow.now()})

    outcome = agent.tickets.run(REJECTED_PARTITION, decide, inbox_id=f"rejected:{key}")
    log.error("triage event %s rejected: %s: %s", key, error.reason, error.description)
    return Rejection(key, error.reason, error.description, outcome.duplicate)


def accept_helpdesk_event(event: Envelope, agent: TriageAgent) -> bool:
    """Stage a webhook's ticket event for the Event Grid topic, once per delivery id, in its
    ticket's webhook partition; the relay publishes it at once, or the sweeper later if Event
    Grid is down (the event is stored either way). True when it is a new delivery."""
    agent.schemas.validate(event)
    partition = f"webhook:{event.data['ticketId']}"
    # The event keeps the delivery's id, so a repeat would stage an outbox row with the key
    # of the first one (whose "dispatched" mark may ride in the same batch: one row written
    # twice, which Table refuses). A repeat is found first and only re-publishes.
    def decide(uow: UnitOfWork) -> None:
        uow.emit(event, destination=HELPDESK_TOPIC)

    try:
        if agent.tickets.store.get(table_key(partition), inbox_row(event.id)) is not None:
            relay = agent.tickets.relay
            relay.dispatch(relay.pending(partition))
            return False
        outcome = agent.tickets.run(partition, decide, inbox_id=event.id)
    except PublishFailed as error:
        log.warning("helpdesk event %s stored, publishing deferred to the sweeper: %s",
                    event.id, error)
        return True
    return not outcome.duplicate
