"""Stored Service Bus messages: the client's bare bytes plus the broker's bookkeeping."""

from __future__ import annotations

import time
import uuid
from enum import IntEnum
from typing import Any

from devstack.amqp.codec import Symbol, Timestamp, UByte, UInt, encode_value
from devstack.amqp.message import (
    APPLICATION_PROPERTIES,
    PROPERTIES,
    Message,
    section,
    skip_value,
)

SEQUENCE_NUMBER = Symbol("x-opt-sequence-number")
ENQUEUED_TIME = Symbol("x-opt-enqueued-time")
LOCKED_UNTIL = Symbol("x-opt-locked-until")
LOCK_TOKEN = Symbol("x-opt-lock-token")
MESSAGE_STATE = Symbol("x-opt-message-state")
DEAD_LETTER_SOURCE = Symbol("x-opt-deadletter-source")
SCHEDULED_ENQUEUE_TIME = Symbol("x-opt-scheduled-enqueue-time")
PARTITION_KEY = Symbol("x-opt-partition-key")
_NO_ANNOTATIONS: dict[Any, Any] = {}
_BROKER_ANNOTATIONS = frozenset(
    {SEQUENCE_NUMBER, ENQUEUED_TIME, LOCKED_UNTIL, LOCK_TOKEN, MESSAGE_STATE}
)


def now_ms() -> int:
    return int(time.time() * 1000)


class State(IntEnum):
    """x-opt-message-state values, as the SDK reads them."""

    ACTIVE = 0
    DEFERRED = 1
    SCHEDULED = 2


class StoredMessage:
    """One message in one entity. `bare` is the client's properties, application
    properties and body, byte for byte."""

    __slots__ = (
        "annotations",
        "attempts",
        "bare",
        "dead_letter_source",
        "deferred",
        "durable",
        "enqueued_ms",
        "expires_ms",
        "lock_token",
        "locked_until_ms",
        "priority",
        "replay_twice",
        "scheduled_ms",
        "sequence_number",
        "session_id",
        "ttl_ms",
    )

    def __init__(
        self,
        *,
        bare: bytes,
        annotations: dict[Any, Any],
        session_id: str | None,
        ttl_ms: int | None,
        durable: bool | None = None,
        priority: int | None = None,
    ) -> None:
        self.bare = bare
        self.annotations = annotations or _NO_ANNOTATIONS
        """Never changed in place: the empty case is one shared dict, to save memory."""
        self.session_id = session_id
        self.ttl_ms = ttl_ms
        self.durable = durable
        self.priority = priority
        self.sequence_number = 0
        self.enqueued_ms = 0
        self.expires_ms = 0
        self.scheduled_ms = 0
        self.attempts = 0
        self.lock_token: uuid.UUID | None = None
        self.locked_until_ms = 0
        self.deferred = False
        self.dead_letter_source: str | None = None
        self.replay_twice = False

    @classmethod
    def from_payload(cls, payload: bytes) -> StoredMessage:
        message = Message(payload)
        props = message.properties
        annotations = {
            key: value
            for key, value in message.annotations.items()
            if key not in _BROKER_ANNOTATIONS
        } if message.annotations else _NO_ANNOTATIONS
        ttl = message.header_field("ttl")
        group_id = props[10]
        bare = message.bare if props[0] is not None else _with_message_id(message.bare, props)
        return cls(
            bare=bare,
            annotations=annotations,
            session_id=str(group_id) if group_id is not None else None,
            ttl_ms=ttl,
            durable=message.header_field("durable"),
            priority=message.header_field("priority"),
        )

    def copy(self) -> StoredMessage:
        twin = StoredMessage(
            bare=self.bare,
            annotations=self.annotations,
            session_id=self.session_id,
            ttl_ms=self.ttl_ms,
            durable=self.durable,
            priority=self.priority,
        )
        twin.scheduled_ms = self.scheduled_ms
        return twin

    def encode(self, *, state: State = State.ACTIVE, locked: bool = False,
               lock_expiry: bool = True) -> bytes:
        """The message as the broker delivers it: header + annotations + the bare bytes
        (`lock_expiry=False` leaves out x-opt-locked-until: the malformed-delivery fault)."""
        out = bytearray(b"\x00\x53\x70")
        delivery_count = max(self.attempts - 1, 0)
        encode_value(
            out,
            [
                self.durable,
                UByte(self.priority) if self.priority is not None else None,
                UInt(self.ttl_ms) if self.ttl_ms is not None else None,
                None,
                UInt(delivery_count),
            ],
        )
        annotations = dict(self.annotations)
        annotations[SEQUENCE_NUMBER] = self.sequence_number
        annotations[ENQUEUED_TIME] = Timestamp(self.enqueued_ms)
        if locked and self.lock_token is not None:
            if lock_expiry:
                annotations[LOCKED_UNTIL] = Timestamp(self.locked_until_ms)
            annotations[LOCK_TOKEN] = self.lock_token
        if state is not State.ACTIVE:
            annotations[MESSAGE_STATE] = int(state)
        if self.dead_letter_source is not None:
            annotations[DEAD_LETTER_SOURCE] = self.dead_letter_source
        out += b"\x00\x53\x72"
        encode_value(out, annotations)
        out += self.bare
        return bytes(out)

    @property
    def message_id(self) -> Any:
        """Decoded from the bare bytes when needed (duplicate detection), not kept."""
        return Message(self.bare).properties[0]

    def user_properties(self) -> dict[Any, Any]:
        return Message(self.bare).application_properties

    def system_properties(self) -> list[Any]:
        return Message(self.bare).properties


def _with_message_id(bare: bytes, props: list[Any]) -> bytes:
    """The bare message with a broker-assigned MessageId, as the service assigns one to a
    message sent without: a GUID as 32 hex digits."""
    fields = list(props)
    fields[0] = uuid.uuid4().hex
    if fields[11] is not None:
        fields[11] = UInt(fields[11])  # group-sequence is a uint; decoding gave a plain int
    return replace_sections(bare, properties=fields)


def _split(bare: bytes) -> list[tuple[int, bytes]]:
    """The bare message as (section code, encoded section) pairs."""
    out = []
    pos = 0
    while pos < len(bare):
        code = bare[pos + 2]
        end = skip_value(bare, pos + 3)
        out.append((code, bare[pos:end]))
        pos = end
    return out


def replace_sections(bare: bytes, *, properties: list[Any] | None = None,
                     application_properties: dict[Any, Any] | None = None) -> bytes:
    """The bare message with its properties and/or application-properties replaced."""
    parts = _split(bare)
    codes = [code for code, _ in parts]
    if application_properties is not None:
        encoded = section(APPLICATION_PROPERTIES, application_properties)
        if APPLICATION_PROPERTIES in codes:
            parts[codes.index(APPLICATION_PROPERTIES)] = (APPLICATION_PROPERTIES, encoded)
        else:
            at = codes.index(PROPERTIES) + 1 if PROPERTIES in codes else 0
            parts.insert(at, (APPLICATION_PROPERTIES, encoded))
            codes.insert(at, APPLICATION_PROPERTIES)
    if properties is not None:
        encoded = section(PROPERTIES, properties)
        if PROPERTIES in codes:
            parts[codes.index(PROPERTIES)] = (PROPERTIES, encoded)
        else:
            parts.insert(0, (PROPERTIES, encoded))
    return b"".join(data for _, data in parts)
