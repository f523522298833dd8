"""AMQP 1.0 frames and performatives: descriptor codes, field counts, encode and decode.

Every performative is sent with ALL its fields present (nulls where unset): azure-eventhub's
decoder reads fields by position and does not pad omitted trailing fields.
"""

from __future__ import annotations

import struct
from typing import Any

from devstack.amqp.codec import (
    DecodeError,
    Described,
    Symbol,
    ULong,
    decode_value,
    encode_value,
)

OPEN = 0x10
BEGIN = 0x11
ATTACH = 0x12
FLOW = 0x13
TRANSFER = 0x14
DISPOSITION = 0x15
DETACH = 0x16
END = 0x17
CLOSE = 0x18
ERROR = 0x1D
RECEIVED = 0x23
ACCEPTED = 0x24
REJECTED = 0x25
RELEASED = 0x26
MODIFIED = 0x27
SOURCE = 0x28
TARGET = 0x29

SASL_MECHANISMS = 0x40
SASL_INIT = 0x41
SASL_OUTCOME = 0x44

FIELD_COUNTS = {
    OPEN: 10,
    BEGIN: 8,
    ATTACH: 14,
    FLOW: 11,
    TRANSFER: 11,
    DISPOSITION: 6,
    DETACH: 3,
    END: 1,
    CLOSE: 1,
    SASL_MECHANISMS: 1,
    SASL_INIT: 3,
    SASL_OUTCOME: 2,
}

FRAME_AMQP = 0
FRAME_SASL = 1

_HEADER = struct.Struct(">IBBH")


class AmqpError(Exception):
    """An AMQP error condition, sent to the peer on detach, end, close or rejection."""

    def __init__(
        self, condition: str, description: str | None = None, info: dict[Any, Any] | None = None
    ) -> None:
        super().__init__(f"{condition}: {description}")
        self.condition = condition
        self.description = description
        self.info = info

    def described(self) -> Described:
        return Described(ULong(ERROR), [Symbol(self.condition), self.description, self.info])


def performative(code: int, fields: list[Any]) -> bytes:
    """Encode a performative, padding its field list to full length with nulls."""
    count = FIELD_COUNTS[code]
    if len(fields) < count:
        fields = fields + [None] * (count - len(fields))
    out = bytearray(b"\x00\x53")
    out.append(code)
    encode_value(out, fields)
    return bytes(out)


def frame(channel: int, body: bytes, frame_type: int = FRAME_AMQP) -> bytes:
    return _HEADER.pack(len(body) + 8, 2, frame_type, channel) + body


def decode_performative(body: bytes, pos: int = 0) -> tuple[int, list[Any], int]:
    """Decode a frame body's performative: its code, its fields (padded), and where the
    payload starts."""
    value, end = decode_value(body, pos)
    if not isinstance(value, Described) or not isinstance(value.value, list):
        raise DecodeError("frame body is not a described list")
    code = value.descriptor
    fields = value.value
    count = FIELD_COUNTS.get(code)
    if count is None:
        raise DecodeError(f"unknown performative 0x{code:02x}")
    if len(fields) < count:
        fields = fields + [None] * (count - len(fields))
    return code, fields, end


def outcome(code: int, fields: list[Any] | None = None) -> Described:
    return Described(ULong(code), fields or [])


ACCEPTED_STATE = outcome(ACCEPTED)
RELEASED_STATE = outcome(RELEASED)


def rejected(error: AmqpError | None) -> Described:
    return outcome(REJECTED, [error.described() if error else None])


def state_code(state: Any) -> int | None:
    """The descriptor code of a delivery state, or None when there is none."""
    if isinstance(state, Described):
        return int(state.descriptor) if isinstance(state.descriptor, int) else None
    return None
