"""An in-memory triage agent: MemoryStore, a recording publisher and a scripted model."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from agents.backbone.envelope import Envelope
from agents.backbone.memory import MemoryStore
from agents.backbone.outbox import OutboxRow
from agents.contracts import triage as contracts
from agents.reasoning import Completion, Reasoner, Usage
from agents.triage import bootstrap
from agents.triage.handlers import TriageAgent


class ScriptedModel:
    """A ChatModel answering from a script: a dict is the answer, an exception is raised."""

    def __init__(self, *script: Mapping[str, Any] | Exception) -> None:
        self.script = list(script)
        self.calls = 0

    def complete(self, name: str, messages: Sequence[Mapping[str, str]],
                 schema: Mapping[str, Any]) -> Completion:
        self.calls += 1
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return Completion(json.dumps(step), "scripted", Usage(10, 5, 15))


class RecordingPublisher:
    def __init__(self) -> None:
        self.sent: list[OutboxRow] = []

    def publish(self, rows: Sequence[OutboxRow]) -> None:
        self.sent.extend(rows)

    def close(self) -> None:
        return None

    def events(self, event_type: str | None = None) -> list[Envelope]:
        return [row.envelope for row in self.sent
                if event_type is None or row.envelope.type == event_type]


def answer(team: str = "billing", priority: str = "high", confidence: float = 0.9,
           category: str = "billing") -> dict[str, Any]:
    return {"category": category, "team": team, "priority": priority,
            "confidence": confidence, "summary": f"{category} ticket for {team}"}


def agent(model: ScriptedModel | None, store: MemoryStore | None = None,
          publisher: RecordingPublisher | None = None) -> tuple[TriageAgent, MemoryStore,
                                                                RecordingPublisher]:
    store = store or MemoryStore()
    publisher = publisher or RecordingPublisher()
    reasoner = None if model is None else Reasoner(model)
    return bootstrap.build(store, publisher, reasoner), store, publisher


def ticket_event(ticket_id: str = "T-1", version: int = 1,
                 event_type: str = contracts.TICKET_CREATED, *, id: str | None = None,
                 title: str = "Charged twice", description: str = "My invoice shows two "
                 "charges for March.", **extra: Any) -> Envelope:
    data: dict[str, Any] = {"ticketId": ticket_id, "version": version, "title": title,
                            "description": description,
                            "requester": {"email": "ana@example.com", "tier": "standard"},
                            **extra}
    return Envelope.new(event_type, data, source=contracts.HELPDESK_SOURCE,
                        subject=f"tickets/{ticket_id}", id=id)


def payload(event: Envelope) -> dict[str, Any]:
    return event.to_dict()
