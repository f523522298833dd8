"""Re-classification of tickets in manual triage once the model is back."""

from __future__ import annotations

from agents.backbone.memory import MemoryStore
from agents.contracts import triage as contracts
from agents.reasoning import ReasonerOpen
from agents.triage import handlers
from agents.triage.model import Status
from tests.unit.triage.support import RecordingPublisher, ScriptedModel, agent, answer, ticket_event


def outage_then(*later: dict[str, object] | Exception) -> ScriptedModel:
    return ScriptedModel(ReasonerOpen("breaker open", retry_after=30.0), *later)


def test_a_manual_ticket_is_routed_to_its_team_once_the_model_answers() -> None:
    triage, _, published = agent(outage_then(answer("account", category="account")))
    handlers.ticket_received(ticket_event("T-1"), triage)
    result = handlers.reclassify("T-1", triage)
    assert result.changed and result.state is not None
    assert result.state.status is Status.ROUTED and result.state.team == "account"
    subjects = [e.subject for e in published.events(contracts.TICKET_CLASSIFIED)]
    assert subjects == ["manual/T-1", "account/T-1"]
    assert handlers.manual_tickets(triage) == []


def test_a_model_still_down_leaves_the_ticket_in_manual_triage_unchanged() -> None:
    triage, _, published = agent(outage_then(ReasonerOpen("still open", retry_after=5.0)))
    handlers.ticket_received(ticket_event("T-2"), triage)
    result = handlers.reclassify("T-2", triage)
    assert not result.changed
    assert [t.ticket_id for t in handlers.manual_tickets(triage)] == ["T-2"]
    assert len(published.events()) == 1


def test_a_routed_ticket_is_not_reclassified() -> None:
    model = ScriptedModel(answer())
    triage, _, _ = agent(model)
    handlers.ticket_received(ticket_event("T-3"), triage)
    assert not handlers.reclassify("T-3", triage).changed
    assert model.calls == 1


def test_reclassification_uses_the_ticket_text_of_its_version() -> None:
    store, publisher = MemoryStore(), RecordingPublisher()
    down, _, _ = agent(None, store, publisher)
    handlers.ticket_received(ticket_event("T-4", title="Locked out",
                                          description="password reset fails"), down)
    model = ScriptedModel(answer("account", category="account"))
    back, _, _ = agent(model, store, publisher)
    assert handlers.reclassify("T-4", back).changed
    assert model.calls == 1
