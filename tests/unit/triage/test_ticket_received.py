"""Triage of one ticket event, in memory: classification, routing, inbox, ordering."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from agents.backbone.errors import StorageError
from agents.backbone.memory import MemoryStore
from agents.backbone.store import Operation
from agents.contracts import triage as contracts
from agents.reasoning import InvalidAnswer, ReasonerUnavailable
from agents.triage import handlers
from agents.triage.blueprint import on_ticket_event
from agents.triage.model import Status
from tests.unit.triage.support import ScriptedModel, agent, answer, payload, ticket_event


def test_a_confident_classification_routes_the_ticket_to_its_team() -> None:
    triage, _, published = agent(ScriptedModel(answer("billing", "high")))
    handlers.ticket_received(ticket_event("T-1"), triage)
    [classified] = published.events(contracts.TICKET_CLASSIFIED)
    assert classified.subject == "billing/T-1"
    assert classified.data["team"] == "billing" and classified.data["manual"] is False
    assert published.events(contracts.PAGE_RAISED) == []


def test_an_urgent_ticket_also_pages_its_team() -> None:
    triage, _, published = agent(ScriptedModel(answer("platform", "urgent",
                                                      category="outage")))
    handlers.ticket_received(ticket_event("T-2", title="Site down"), triage)
    [page] = published.events(contracts.PAGE_RAISED)
    assert page.subject == "platform/T-2" and page.data["team"] == "platform"


def test_low_confidence_sends_the_ticket_to_manual_triage_with_the_reason() -> None:
    triage, _, published = agent(ScriptedModel(answer(confidence=0.2)))
    handlers.ticket_received(ticket_event("T-3"), triage)
    [classified] = published.events(contracts.TICKET_CLASSIFIED)
    assert classified.subject == "manual/T-3" and classified.data["manual"] is True
    assert classified.data["manualReason"] == "low confidence 0.20 < 0.50"


def test_a_model_failure_sends_the_ticket_to_manual_triage_at_once() -> None:
    triage, _, published = agent(ScriptedModel(ReasonerUnavailable("timeout after 10 s")))
    handlers.ticket_received(ticket_event("T-4"), triage)
    state = handlers.current(triage, "T-4")
    assert state is not None and state.status is Status.MANUAL
    assert state.manual_reason == "model unavailable: ReasonerUnavailable: timeout after 10 s"
    assert published.events(contracts.TICKET_CLASSIFIED)[0].data["manual"] is True


def test_an_invalid_answer_sends_the_ticket_to_manual_triage() -> None:
    triage, _, _ = agent(ScriptedModel(InvalidAnswer("answer is not JSON")))
    handlers.ticket_received(ticket_event("T-5"), triage)
    state = handlers.current(triage, "T-5")
    assert state is not None and state.manual_reason is not None
    assert "InvalidAnswer" in state.manual_reason


def test_an_urgent_ticket_in_manual_triage_pages_no_team() -> None:
    triage, _, published = agent(ScriptedModel(answer(priority="urgent", confidence=0.1)))
    handlers.ticket_received(ticket_event("T-6"), triage)
    assert published.events(contracts.PAGE_RAISED) == []


def test_a_redelivered_event_changes_nothing_and_asks_the_model_once() -> None:
    model = ScriptedModel(answer())
    triage, _, published = agent(model)
    event = ticket_event("T-7")
    first = handlers.ticket_received(event, triage)
    again = handlers.ticket_received(event, triage)
    assert not first.duplicate and again.duplicate
    assert model.calls == 1
    assert len(published.events(contracts.TICKET_CLASSIFIED)) == 1


def test_an_older_update_arriving_after_a_newer_one_changes_nothing() -> None:
    model = ScriptedModel(answer("account", category="account"), answer("billing"))
    triage, _, published = agent(model)
    handlers.ticket_received(ticket_event("T-8", 3, contracts.TICKET_UPDATED), triage)
    late = handlers.ticket_received(ticket_event("T-8", 2, contracts.TICKET_UPDATED), triage)
    assert late.result is not None and late.result.changed is False
    state = handlers.current(triage, "T-8")
    assert state is not None and state.version == 3 and state.team == "account"
    assert model.calls == 1
    assert len(published.events(contracts.TICKET_CLASSIFIED)) == 1


def test_a_newer_version_with_the_same_routing_publishes_nothing_more() -> None:
    triage, _, published = agent(ScriptedModel(answer(), answer()))
    handlers.ticket_received(ticket_event("T-9", 1), triage)
    handlers.ticket_received(ticket_event("T-9", 2, contracts.TICKET_COMMENTED,
                                          comment={"author": "ana", "body": "Any news?"}),
                             triage)
    assert handlers.current(triage, "T-9").version == 2  # type: ignore[union-attr]
    assert len(published.events(contracts.TICKET_CLASSIFIED)) == 1


def test_a_newer_version_that_changes_the_team_is_routed_again() -> None:
    triage, _, published = agent(ScriptedModel(answer("billing"),
                                               answer("account", category="account")))
    handlers.ticket_received(ticket_event("T-10", 1), triage)
    handlers.ticket_received(ticket_event("T-10", 2, contracts.TICKET_UPDATED), triage)
    subjects = [e.subject for e in published.events(contracts.TICKET_CLASSIFIED)]
    assert subjects == ["billing/T-10", "account/T-10"]


def test_the_classified_event_continues_the_ticket_events_trace() -> None:
    triage, _, published = agent(ScriptedModel(answer()))
    event = ticket_event("T-11")
    handlers.ticket_received(event, triage)
    [classified] = published.events(contracts.TICKET_CLASSIFIED)
    assert classified.causationid == event.id
    assert classified.correlationid == event.correlationid
    assert event.traceparent is not None and classified.traceparent is not None
    assert classified.traceparent.split("-")[1] == event.traceparent.split("-")[1]


def test_an_invalid_event_is_recorded_with_its_reason_and_the_delivery_ends() -> None:
    triage, _, published = agent(ScriptedModel())
    bad = payload(ticket_event("T-12"))
    del bad["data"]["title"]
    on_ticket_event(bad, triage)  # returns: the host answers 2xx, Event Grid stops
    [rejected] = handlers.rejected_events(triage)
    assert rejected["EventId"] == bad["id"] and rejected["Reason"] == "SchemaViolation"
    assert "title" in rejected["Description"]
    assert published.sent == []


def test_an_event_of_a_type_triage_does_not_take_is_recorded_as_unknown() -> None:
    triage, _, _ = agent(ScriptedModel())
    odd = {**payload(ticket_event("T-13")), "type": "com.helpdesk.ticket.deleted"}
    on_ticket_event(odd, triage)
    assert [r["Reason"] for r in handlers.rejected_events(triage)] == ["UnknownEventType"]


def test_an_invalid_event_delivered_twice_is_recorded_once() -> None:
    triage, _, _ = agent(ScriptedModel())
    bad = {**payload(ticket_event("T-14")), "data": {"ticketId": "T-14"}}
    on_ticket_event(bad, triage)
    on_ticket_event(bad, triage)
    assert len(handlers.rejected_events(triage)) == 1


def test_no_model_configured_sends_every_ticket_to_manual_triage() -> None:
    triage, _, _ = agent(None)
    handlers.ticket_received(ticket_event("T-15"), triage)
    assert [t.ticket_id for t in handlers.manual_tickets(triage)] == ["T-15"]


class StorageDown(MemoryStore):
    def submit(self, operations: Sequence[Operation]) -> list[str]:
        raise StorageError("table service unavailable (503)")


def test_storage_down_raises_so_event_grid_retries_the_delivery() -> None:
    triage, _, published = agent(ScriptedModel(answer()), store=StorageDown())
    with pytest.raises(StorageError):
        on_ticket_event(payload(ticket_event("T-16")), triage)
    assert published.sent == []
