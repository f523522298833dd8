"""AMQP messages as sections of raw bytes, decoded only where a field is needed.

A received message is split into its sections without decoding the body, so a broker can
keep the bare message (properties, application properties, body) as the exact bytes the
client sent and re-send them with new header and annotations.
"""

from __future__ import annotations

import struct
from typing import Any

from devstack.amqp.codec import (
    DecodeError,
    Symbol,
    UByte,
    UInt,
    decode_value,
    encode_value,
)

HEADER = 0x70
DELIVERY_ANNOTATIONS = 0x71
MESSAGE_ANNOTATIONS = 0x72
PROPERTIES = 0x73
APPLICATION_PROPERTIES = 0x74
DATA = 0x75
AMQP_SEQUENCE = 0x76
AMQP_VALUE = 0x77
FOOTER = 0x78

BATCH_FORMAT = 0x80013700
"""message-format of a transfer that carries a batch: one message per data section."""

PROPERTY_FIELDS = (
    "message_id",
    "user_id",
    "to",
    "subject",
    "reply_to",
    "correlation_id",
    "content_type",
    "content_encoding",
    "absolute_expiry_time",
    "creation_time",
    "group_id",
    "group_sequence",
    "reply_to_group_id",
)
HEADER_FIELDS = ("durable", "priority", "ttl", "first_acquirer", "delivery_count")

_unpack_from = struct.unpack_from


def skip_value(buf: bytes, pos: int) -> int:
    """The position just after the value at `pos`, found from its width, not decoded."""
    code = buf[pos]
    if code == 0x00:
        return skip_value(buf, skip_value(buf, pos + 1))
    width = code >> 4
    pos += 1
    if width == 4:
        return pos
    if width == 5:
        return pos + 1
    if width == 6:
        return pos + 2
    if width == 7:
        return pos + 4
    if width == 8:
        return pos + 8
    if width == 9:
        return pos + 16
    if width in (0xA, 0xC, 0xE):
        return pos + 1 + buf[pos]
    if width in (0xB, 0xD, 0xF):
        return pos + 4 + int(_unpack_from(">I", buf, pos)[0])
    raise DecodeError(f"unknown constructor 0x{code:02x}")


def _section_code(buf: bytes, pos: int) -> tuple[int, int]:
    """The section descriptor code at `pos` and where its value starts."""
    if buf[pos] != 0x00:
        raise DecodeError("message section is not described")
    kind = buf[pos + 1]
    if kind == 0x53:
        return buf[pos + 2], pos + 3
    if kind == 0x80:
        return _unpack_from(">Q", buf, pos + 2)[0], pos + 10
    if kind == 0xA3:
        n = buf[pos + 2]
        name = bytes(buf[pos + 3 : pos + 3 + n])
        return _SECTION_NAMES.get(name, -1), pos + 3 + n
    raise DecodeError("unsupported section descriptor")


_SECTION_NAMES = {
    b"amqp:header:list": HEADER,
    b"amqp:delivery-annotations:map": DELIVERY_ANNOTATIONS,
    b"amqp:message-annotations:map": MESSAGE_ANNOTATIONS,
    b"amqp:properties:list": PROPERTIES,
    b"amqp:application-properties:map": APPLICATION_PROPERTIES,
    b"amqp:data:binary": DATA,
    b"amqp:amqp-sequence:list": AMQP_SEQUENCE,
    b"amqp:amqp-value:*": AMQP_VALUE,
    b"amqp:footer:map": FOOTER,
}


class Message:
    """One AMQP message, parsed into sections; decoded fields are cached."""

    __slots__ = (
        "_app_props",
        "_props",
        "annotations",
        "bare",
        "delivery_annotations",
        "header",
        "payload",
        "sections",
    )

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.header: list[Any] | None = None
        self.delivery_annotations: dict[Any, Any] | None = None
        self.annotations: dict[Any, Any] = {}
        self.sections: dict[int, tuple[int, int]] = {}
        bare_start = len(payload)
        pos = 0
        end = len(payload)
        while pos < end:
            code, value_at = _section_code(payload, pos)
            after = skip_value(payload, value_at)
            if code == HEADER:
                self.header = _padded(decode_value(payload, value_at)[0], 5)
            elif code == DELIVERY_ANNOTATIONS:
                self.delivery_annotations = decode_value(payload, value_at)[0]
            elif code == MESSAGE_ANNOTATIONS:
                self.annotations = decode_value(payload, value_at)[0] or {}
            else:
                if bare_start > pos:
                    bare_start = pos
                if code not in self.sections:
                    self.sections[code] = (value_at, after)
            pos = after
        if pos != end:
            raise DecodeError("message sections overrun the payload")
        self.bare = payload[bare_start:] if bare_start else payload
        self._props: list[Any] | None = None
        self._app_props: dict[Any, Any] | None = None

    @property
    def properties(self) -> list[Any]:
        """The 13 properties fields, in order (see PROPERTY_FIELDS)."""
        if self._props is None:
            span = self.sections.get(PROPERTIES)
            value = decode_value(self.payload, span[0])[0] if span else None
            self._props = _padded(value, 13)
        return self._props

    def prop(self, name: str) -> Any:
        return self.properties[PROPERTY_FIELDS.index(name)]

    @property
    def application_properties(self) -> dict[Any, Any]:
        if self._app_props is None:
            span = self.sections.get(APPLICATION_PROPERTIES)
            value = decode_value(self.payload, span[0])[0] if span else None
            self._app_props = value or {}
        return self._app_props

    def body_value(self) -> Any:
        """The amqp-value body, decoded (management requests carry a map here)."""
        span = self.sections.get(AMQP_VALUE)
        return decode_value(self.payload, span[0])[0] if span else None

    def data_sections(self) -> list[bytes]:
        """Every data section's bytes, in order (a batch holds one message in each)."""
        out = []
        pos = 0
        payload = self.payload
        end = len(payload)
        while pos < end:
            code, value_at = _section_code(payload, pos)
            after = skip_value(payload, value_at)
            if code == DATA:
                out.append(decode_value(payload, value_at)[0])
            pos = after
        return out

    def header_field(self, name: str) -> Any:
        return self.header[HEADER_FIELDS.index(name)] if self.header else None


def _padded(value: Any, count: int) -> list[Any]:
    fields = list(value) if isinstance(value, list) else []
    if len(fields) < count:
        fields.extend([None] * (count - len(fields)))
    return fields


def section(code: int, value: Any) -> bytes:
    out = bytearray(b"\x00\x53")
    out.append(code)
    encode_value(out, value)
    return bytes(out)


def encode_header(
    *, durable: bool | None = None, priority: int | None = None, ttl: int | None = None,
    first_acquirer: bool | None = None, delivery_count: int = 0,
) -> bytes:
    return section(
        HEADER,
        [
            durable,
            UByte(priority) if priority is not None else None,
            UInt(ttl) if ttl is not None else None,
            first_acquirer,
            UInt(delivery_count),
        ],
    )


def encode_properties(**fields: Any) -> bytes:
    """A properties section from keyword fields named as in PROPERTY_FIELDS."""
    values = [fields.get(name) for name in PROPERTY_FIELDS]
    while values and values[-1] is None:
        values.pop()
    return section(PROPERTIES, values)


def build_message(
    *,
    body: Any = None,
    application_properties: dict[Any, Any] | None = None,
    annotations: dict[Any, Any] | None = None,
    **properties: Any,
) -> bytes:
    """Encode a complete message with an amqp-value body (as management replies use)."""
    out = bytearray()
    if annotations:
        out += section(MESSAGE_ANNOTATIONS, annotations)
    if properties:
        out += encode_properties(**properties)
    if application_properties:
        out += section(APPLICATION_PROPERTIES, application_properties)
    out += section(AMQP_VALUE, body)
    return bytes(out)


def symbol_keys(mapping: dict[str, Any]) -> dict[Symbol, Any]:
    return {Symbol(k): v for k, v in mapping.items()}


def data_section(data: bytes) -> bytes:
    return section(DATA, data)


