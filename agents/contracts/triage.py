"""Events of the triage path: the helpdesk's ticket events it accepts (published to the Event
Grid topic `triage-helpdesk` by its webhook ingress or by a SaaS partner topic) and the events
the triage agent publishes on the Service Bus topic `triage-tickets`."""

from __future__ import annotations

from typing import Any, Final

SOURCE: Final = "/agents/triage"
HELPDESK_SOURCE: Final = "/helpdesk"

# The helpdesk's ticket events (each carries the whole ticket at `version`; a later version
# of one ticket has a higher number).
TICKET_CREATED: Final = "com.helpdesk.ticket.created"
TICKET_UPDATED: Final = "com.helpdesk.ticket.updated"
TICKET_COMMENTED: Final = "com.helpdesk.ticket.commented"
HELPDESK_TYPES: Final = (TICKET_CREATED, TICKET_UPDATED, TICKET_COMMENTED)

_TEXT: Final[dict[str, Any]] = {"type": "string", "minLength": 1, "maxLength": 20000}
TICKET_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["ticketId", "version", "title", "description", "requester"],
    "properties": {
        "ticketId": {"type": "string", "minLength": 1, "maxLength": 200},
        "version": {"type": "integer", "minimum": 1},
        "title": _TEXT,
        "description": _TEXT,
        "requester": {"type": "object", "required": ["email"],
                      "properties": {"email": {"type": "string", "minLength": 3},
                                     "tier": {"enum": ["free", "standard", "enterprise"]}}},
        "comment": {"type": "object", "required": ["author", "body"],
                    "properties": {"author": {"type": "string"}, "body": _TEXT}},
    },
}
TICKET_COMMENTED_SCHEMA: Final[dict[str, Any]] = {
    **TICKET_SCHEMA, "required": [*TICKET_SCHEMA["required"], "comment"]}

# A ticket's routing decided (first time, or changed by a later version): on `triage-tickets`
# with subject `<team>/<ticketId>`, which each team's subscription filters on.
TICKET_CLASSIFIED: Final = "triage.ticket.classified"
TICKET_CLASSIFIED_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["ticketId", "version", "team", "priority", "manual"],
    "properties": {
        "ticketId": {"type": "string"}, "version": {"type": "integer"},
        "team": {"type": "string"}, "category": {"type": "string"},
        "priority": {"enum": ["urgent", "high", "normal", "low"]},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "summary": {"type": "string"},
        "manual": {"type": "boolean"},
        "manualReason": {"type": "string"},
    },
}

# An urgent ticket: someone on call for `team` is paged (the `urgent` subscription).
PAGE_RAISED: Final = "triage.page.raised"
PAGE_RAISED_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["ticketId", "team", "summary"],
    "properties": {"ticketId": {"type": "string"}, "team": {"type": "string"},
                   "summary": {"type": "string"}},
}

HELPDESK_SCHEMAS: Final[dict[str, dict[str, Any]]] = {
    TICKET_CREATED: TICKET_SCHEMA, TICKET_UPDATED: TICKET_SCHEMA,
    TICKET_COMMENTED: TICKET_COMMENTED_SCHEMA,
}
# What the triage agent publishes (the helpdesk's types above are the helpdesk's own).
SCHEMAS: Final[dict[str, dict[str, Any]]] = {
    TICKET_CLASSIFIED: TICKET_CLASSIFIED_SCHEMA, PAGE_RAISED: PAGE_RAISED_SCHEMA,
}
