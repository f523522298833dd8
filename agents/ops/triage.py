"""The triage agent's operator views: tickets waiting in manual triage, invalid events it
recorded (with their reasons), and re-classification of manual tickets once the model is
back. Reads and writes go through the agent composed from the same app settings."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from agents.triage import bootstrap, handlers
from agents.triage.handlers import TriageAgent
from agents.triage.model import TicketState

MANUAL_COLUMNS = ("ticketId", "version", "priority", "manualReason", "classifiedBy")
REJECTED_COLUMNS = ("EventId", "EventType", "Reason", "Description", "RejectedAt")
RECLASSIFIED_COLUMNS = ("ticketId", "outcome", "team", "priority", "manualReason")


@contextmanager
def triage_agent(env: Mapping[str, str]) -> Iterator[TriageAgent]:
    with bootstrap.bootstrap(env) as agent:
        yield agent


def manual_row(state: TicketState) -> dict[str, Any]:
    return {"ticketId": state.ticket_id, "version": state.version,
            "priority": state.priority, "manualReason": state.manual_reason,
            "classifiedBy": state.classified_by, "team": state.team}


def manual(env: Mapping[str, str]) -> list[dict[str, Any]]:
    with triage_agent(env) as agent:
        return [manual_row(state) for state in handlers.manual_tickets(agent)]


def rejected(env: Mapping[str, str]) -> list[dict[str, Any]]:
    with triage_agent(env) as agent:
        return handlers.rejected_events(agent)


def reclassify(env: Mapping[str, str], ticket_ids: Collection[str] | None
               ) -> list[dict[str, Any]]:
    """Re-classify the named tickets (every manual one when None): `routed` when the model
    now routes it to a team, `still manual` with the reason otherwise."""
    with triage_agent(env) as agent:
        chosen = ticket_ids if ticket_ids is not None else [
            state.ticket_id for state in handlers.manual_tickets(agent)]
        rows = []
        for ticket_id in chosen:
            result = handlers.reclassify(ticket_id, agent)
            state = result.state
            outcome = ("unknown ticket" if state is None else
                       "routed" if state.manual_reason is None else "still manual")
            rows.append({**(manual_row(state) if state else {"ticketId": ticket_id}),
                         "outcome": outcome})
        return rows
