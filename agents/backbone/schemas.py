"""JSON Schemas per event type: the gate that keeps invalid input away from agents.

Each agent builds its own registry when it is composed (never at import), from the contracts
it publishes and consumes (`agents/contracts/`) plus its saga's commands::

    schemas = SchemaRegistry({"orders.order.placed": {"type": "object", "required": [...]}})
    schemas.register("orders.stock.reserve", {...})

`schemas.parse(obj)` checks the CloudEvents envelope, then the type's data schema, and
returns an `Envelope`; anything wrong raises `InvalidEvent` with the reason and the path.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from agents.backbone.envelope import Envelope
from agents.backbone.errors import InvalidEvent

# jsonschema loads when the first registry is built, not at import (cold start).
if TYPE_CHECKING:
    from jsonschema import Draft202012Validator

_TRACEPARENT = "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"
_TEXT = {"type": "string", "minLength": 1}

ENVELOPE_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "CloudEvents 1.0 envelope with backbone extensions",
    "type": "object",
    "required": ["id", "source", "type", "specversion"],
    "properties": {
        "id": _TEXT,
        "source": _TEXT,
        "type": _TEXT,
        "specversion": {"const": "1.0"},
        "subject": {"type": ["string", "null"]},
        "time": {"type": "string", "format": "date-time"},
        "datacontenttype": {"type": "string", "pattern": "^application/(cloudevents\\+)?json"},
        "partitionkey": {"type": ["string", "null"]},
        "correlationid": {"type": ["string", "null"]},
        "causationid": {"type": ["string", "null"]},
        "traceparent": {"type": ["string", "null"], "pattern": _TRACEPARENT},
        "data": {"type": ["object", "null"]},
    },
}


class SchemaRegistry:
    """Event type -> validator for its `data`. Thread-safe; registration is idempotent."""

    def __init__(self, schemas: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        """`schemas`: event type -> schema of its `data`, registered at once."""
        from jsonschema import Draft202012Validator

        self._lock = threading.Lock()
        self._validators: dict[str, Draft202012Validator] = {}
        self._envelope = Draft202012Validator(
            ENVELOPE_SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER
        )
        for event_type, data_schema in (schemas or {}).items():
            self.register(event_type, data_schema)

    def register(self, event_type: str, data_schema: Mapping[str, Any]) -> None:
        """Add (or replace) the schema of `data` for `event_type`; a broken schema raises."""
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import SchemaError

        try:
            Draft202012Validator.check_schema(data_schema)
        except SchemaError as error:
            raise ValueError(f"schema for {event_type} is invalid: {error.message}") from error
        with self._lock:
            self._validators[event_type] = Draft202012Validator(
                dict(data_schema), format_checker=Draft202012Validator.FORMAT_CHECKER
            )

    def types(self) -> list[str]:
        return sorted(self._validators)

    def parse(self, value: object) -> Envelope:
        """Validate a structured-mode CloudEvent object and return its `Envelope`."""
        if not isinstance(value, Mapping):
            raise InvalidEvent(
                f"a CloudEvent must be a JSON object, got {type(value).__name__}",
                reason="InvalidEnvelope",
            )
        _raise_first(self._envelope, value, "InvalidEnvelope", "envelope")
        envelope = Envelope.from_dict(value)
        self.validate(envelope)
        return envelope

    def validate(self, envelope: Envelope) -> None:
        """Check `envelope.data` against its type's schema (outgoing events too)."""
        validator = self._validators.get(envelope.type)
        if validator is None:
            raise InvalidEvent(
                f"event {envelope.id}: no schema registered for type {envelope.type!r}",
                reason="UnknownEventType",
            )
        _raise_first(validator, envelope.data, "SchemaViolation", f"{envelope.type} data")


def _raise_first(validator: Draft202012Validator, value: object, reason: str, what: str) -> None:
    from jsonschema.exceptions import best_match

    error = best_match(validator.iter_errors(value))
    if error is not None:
        path = "/".join(str(part) for part in error.absolute_path) or "(root)"
        raise InvalidEvent(f"{what} invalid at {path}: {error.message}", reason=reason)
