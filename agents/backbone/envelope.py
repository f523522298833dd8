"""The CloudEvents 1.0 envelope every event travels in, with the backbone's extensions.

Extensions: `partitionkey` (which aggregate/partition the event belongs to), `correlationid`
(the conversation, e.g. one order's whole saga), `causationid` (the event that caused this one)
and W3C `traceparent`. `Envelope.follow` derives an outgoing event from an incoming one so
correlation, causation and trace context always propagate.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from agents.backbone.errors import InvalidEvent

SPEC_VERSION = "1.0"
JSON_CONTENT_TYPE = "application/json"

ATTRIBUTES = (
    "id", "source", "type", "subject", "time", "specversion", "datacontenttype",
    "partitionkey", "correlationid", "causationid", "traceparent",
)


def new_traceparent() -> str:
    """A fresh W3C trace context root: version 00, random trace and span ids, sampled."""
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def child_traceparent(parent: str | None) -> str:
    """Same trace id as `parent`, a new span id; a new root when there is no valid parent."""
    parts = (parent or "").split("-")
    if len(parts) != 4 or len(parts[1]) != 32 or len(parts[2]) != 16:
        return new_traceparent()
    return f"{parts[0]}-{parts[1]}-{secrets.token_hex(8)}-{parts[3]}"


@dataclass(frozen=True)
class Envelope:
    """One CloudEvents 1.0 event. Build new ones with `Envelope.new` or `incoming.follow`."""

    id: str
    source: str
    type: str
    data: dict[str, Any]
    subject: str | None = None
    time: datetime = field(default_factory=lambda: datetime.now(UTC))
    partitionkey: str | None = None
    correlationid: str | None = None
    causationid: str | None = None
    traceparent: str | None = None
    specversion: str = SPEC_VERSION
    datacontenttype: str = JSON_CONTENT_TYPE

    @classmethod
    def new(
        cls,
        type: str,
        data: Mapping[str, Any],
        *,
        source: str,
        subject: str | None = None,
        partitionkey: str | None = None,
        correlationid: str | None = None,
        id: str | None = None,
        time: datetime | None = None,
    ) -> Envelope:
        """A root event (no cause): its own id is its correlation id; a new trace starts."""
        event_id = id or str(uuid.uuid4())
        return cls(
            id=event_id,
            source=source,
            type=type,
            data=dict(data),
            subject=subject,
            time=time or datetime.now(UTC),
            partitionkey=partitionkey or subject,
            correlationid=correlationid or event_id,
            causationid=None,
            traceparent=new_traceparent(),
        )

    def follow(
        self,
        type: str,
        data: Mapping[str, Any],
        *,
        source: str,
        subject: str | None = None,
        partitionkey: str | None = None,
        id: str | None = None,
        time: datetime | None = None,
    ) -> Envelope:
        """An event caused by this one: causation = this id, same correlation, child span.

        `subject` and `partitionkey` default to this event's own.
        """
        return Envelope(
            id=id or str(uuid.uuid4()),
            source=source,
            type=type,
            data=dict(data),
            subject=subject if subject is not None else self.subject,
            time=time or datetime.now(UTC),
            partitionkey=partitionkey if partitionkey is not None else self.partitionkey,
            correlationid=self.correlationid or self.id,
            causationid=self.id,
            traceparent=child_traceparent(self.traceparent),
        )

    def with_data(self, data: Mapping[str, Any]) -> Envelope:
        return replace(self, data=dict(data))

    def attributes(self) -> dict[str, str]:
        """Every context attribute that is set, as strings (for headers/application properties)."""
        values = {name: getattr(self, name) for name in ATTRIBUTES}
        values["time"] = format_time(self.time)
        return {name: str(value) for name, value in values.items() if value is not None}

    def to_dict(self) -> dict[str, Any]:
        """The structured-mode JSON object (attributes and `data` at the top level)."""
        return {**self.attributes(), "data": self.data}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> Envelope:
        """Build from a structured-mode object whose shape was already validated.

        Missing extensions are filled: `correlationid` = `id`, `partitionkey` = `subject`.
        """
        try:
            event_id = str(value["id"])
            data = value.get("data")
            if data is None:
                data = {}
            if not isinstance(data, dict):
                raise InvalidEvent(f"event {event_id}: data must be a JSON object",
                                   reason="InvalidData")
            subject = _optional_str(value.get("subject"))
            return cls(
                id=event_id,
                source=str(value["source"]),
                type=str(value["type"]),
                data=data,
                subject=subject,
                time=parse_time(value.get("time")),
                partitionkey=_optional_str(value.get("partitionkey")) or subject,
                correlationid=_optional_str(value.get("correlationid")) or event_id,
                causationid=_optional_str(value.get("causationid")),
                traceparent=_optional_str(value.get("traceparent")),
                specversion=str(value.get("specversion", SPEC_VERSION)),
                datacontenttype=str(value.get("datacontenttype") or JSON_CONTENT_TYPE),
            )
        except KeyError as missing:
            raise InvalidEvent(f"missing CloudEvents attribute {missing}",
                               reason="InvalidEnvelope") from None


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a `Z` suffix."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_time(value: object) -> datetime:
    """RFC 3339 text (or a datetime) to an aware UTC datetime; absent means now."""
    if value is None:
        return datetime.now(UTC)
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            raise InvalidEvent(f"time {value!r} is not RFC 3339",
                               reason="InvalidEnvelope") from None
    if moment.tzinfo is None:
        raise InvalidEvent(f"time {value!r} has no UTC offset", reason="InvalidEnvelope")
    return moment.astimezone(UTC)


def _optional_str(value: object) -> str | None:
    return None if value is None or value == "" else str(value)
