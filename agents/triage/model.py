"""The triage domain: a ticket at a version, its classification, and the routing rules.

Rules (no I/O here): a classification routes the ticket to its team unless it came from the
fallback (no model answer) or its confidence is below the threshold; then the ticket goes to
manual triage at once, with the reason. An urgent ticket routed to a team also pages it. A
ticket event whose version is not newer than the one already triaged changes nothing.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

TEAMS = ("billing", "platform", "account")
MANUAL_TEAM = "manual"
URGENT = "urgent"
DEFAULT_CONFIDENCE_THRESHOLD = 0.5


class Status(enum.StrEnum):
    ROUTED = "routed"
    MANUAL = "manual"


@dataclass(frozen=True)
class Ticket:
    """The helpdesk's ticket as one event carries it."""

    ticket_id: str
    version: int
    title: str
    description: str
    requester_email: str
    tier: str
    latest_comment: str | None

    @classmethod
    def from_event_data(cls, data: Mapping[str, Any]) -> Ticket:
        """From an event's data, already valid for the helpdesk schema."""
        requester = data["requester"]
        comment = data.get("comment")
        return cls(str(data["ticketId"]), int(data["version"]), str(data["title"]),
                   str(data["description"]), str(requester["email"]),
                   str(requester.get("tier", "standard")),
                   None if comment is None else str(comment["body"]))

    def classification_input(self) -> dict[str, Any]:
        """What the model reads: the customer's words and tier, no personal data."""
        values: dict[str, Any] = {"title": self.title, "description": self.description,
                                  "tier": self.tier}
        if self.latest_comment is not None:
            values["latestComment"] = self.latest_comment
        return values


@dataclass(frozen=True)
class Classification:
    category: str
    team: str
    priority: str
    confidence: float
    summary: str

    @classmethod
    def from_answer(cls, value: Mapping[str, Any]) -> Classification:
        return cls(str(value["category"]), str(value["team"]), str(value["priority"]),
                   float(value["confidence"]), str(value["summary"]))


def unclassified(reason: str) -> dict[str, Any]:
    """The fallback answer (valid for the task's schema) when the model gave none: zero
    confidence, and the reason in the summary, so manual triage shows why."""
    return {"category": "question", "team": TEAMS[0], "priority": "normal",
            "confidence": 0.0, "summary": reason[:200]}


@dataclass(frozen=True)
class Routing:
    """Where a ticket goes: its team's queue, or manual triage with the reason."""

    status: Status
    team: str
    priority: str
    manual_reason: str | None = None

    @property
    def pages(self) -> bool:
        return self.status is Status.ROUTED and self.priority == URGENT


def route(classification: Classification, *, from_model: bool, threshold: float,
          unavailable_reason: str | None = None) -> Routing:
    """The routing rules; `from_model=False` means the fallback answered (`unavailable_reason`
    says why the model did not)."""
    if not from_model:
        return Routing(Status.MANUAL, MANUAL_TEAM, classification.priority,
                       f"model unavailable: {unavailable_reason or 'no answer'}")
    if classification.team not in TEAMS:
        return Routing(Status.MANUAL, MANUAL_TEAM, classification.priority,
                       f"unknown team {classification.team!r}")
    if classification.confidence < threshold:
        return Routing(Status.MANUAL, MANUAL_TEAM, classification.priority,
                       f"low confidence {classification.confidence:.2f} < {threshold:.2f}")
    return Routing(Status.ROUTED, classification.team, classification.priority)


@dataclass(frozen=True)
class TicketState:
    """What the triage table keeps per ticket (its state row)."""

    ticket_id: str
    version: int
    input: dict[str, Any]
    """The classification input of that version (a re-classification reads it back)."""
    status: Status
    team: str
    priority: str
    category: str
    confidence: float
    summary: str
    manual_reason: str | None
    classified_by: str
    """`model`, `recorded` (a redelivery's recorded answer) or `fallback`."""

    def is_newer(self, version: int) -> bool:
        """True when `version` would change this ticket (older or equal changes nothing)."""
        return version > self.version

    def routing(self) -> Routing:
        return Routing(self.status, self.team, self.priority, self.manual_reason)

    def to_state(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status.value}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> TicketState:
        return cls(**{**state, "status": Status(state["status"])})
