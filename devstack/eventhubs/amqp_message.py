"""Work on encoded AMQP messages as bytes: split batches, read and add message annotations.

Events are stored as the bytes the producer sent, plus the service's annotations. A full
decode and re-encode per event would cost most of the send path's time, so this module
walks the section boundaries (AMQP 1.0 part 3.2) and splices bytes instead.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from devstack.amqp.codec import DecodeError
from devstack.amqp.message import skip_value

_HEADER = 0x70
_DELIVERY_ANNOTATIONS = 0x71
_MESSAGE_ANNOTATIONS = 0x72
_DATA = 0x75

SEQUENCE_NUMBER = b"x-opt-sequence-number"
OFFSET = b"x-opt-offset"
ENQUEUED_TIME = b"x-opt-enqueued-time"
PARTITION_KEY = b"x-opt-partition-key"
_SERVICE_KEYS = frozenset({SEQUENCE_NUMBER, OFFSET, ENQUEUED_TIME})


class InvalidMessage(ValueError):
    """The bytes are not a well-formed AMQP message."""


def _value_end(buffer: bytes, position: int) -> int:
    """Index just past the encoded AMQP value starting at `position`."""
    try:
        end = skip_value(buffer, position)
    except (IndexError, struct.error, DecodeError) as error:
        raise InvalidMessage(f"malformed AMQP value at byte {position}: {error}") from error
    if end > len(buffer):
        raise InvalidMessage(f"truncated AMQP value at byte {position}")
    return end


def _sections(message: bytes) -> Iterator[tuple[int, int, int]]:
    """(section code, start, end) of each top-level section of an encoded message."""
    position = 0
    while position < len(message):
        if message[position] != 0x00 or position + 2 >= len(message):
            raise InvalidMessage(f"expected a described section at byte {position}")
        if message[position + 1] == 0x53:  # smallulong descriptor, as every encoder writes
            code = message[position + 2]
        elif message[position + 1] == 0x80:
            code = int.from_bytes(message[position + 2 : position + 10], "big")
        else:
            raise InvalidMessage(f"section at byte {position} has no numeric descriptor")
        end = _value_end(message, position)
        yield code, position, end
        position = end


def _decode_text(buffer: bytes, position: int) -> tuple[bytes | None, int]:
    """Bytes of a string/symbol/binary value (None for other types) and the value's end."""
    code = buffer[position]
    end = _value_end(buffer, position)
    if code in (0xA0, 0xA1, 0xA3):
        return buffer[position + 2 : end], end
    if code in (0xB0, 0xB1, 0xB3):
        return buffer[position + 5 : end], end
    return None, end


def _map_entries(buffer: bytes, position: int) -> Iterator[tuple[bytes | None, int, int]]:
    """(key as bytes when textual, entry start, entry end) of an encoded map."""
    code = buffer[position]
    if code == 0xC1:
        count, cursor = buffer[position + 2], position + 3
    elif code == 0xD1:
        count, cursor = int.from_bytes(buffer[position + 5 : position + 9], "big"), position + 9
    else:
        raise InvalidMessage(f"message annotations are not a map (format code 0x{code:02x})")
    if count % 2:
        raise InvalidMessage("message annotations map has an odd number of items")
    for _ in range(count // 2):
        key, key_end = _decode_text(buffer, cursor)
        value_end = _value_end(buffer, key_end)
        yield key, cursor, value_end
        cursor = value_end


def batch_messages(payload: bytes) -> list[bytes]:
    """The complete messages held in the data sections of a batch (format 0x80013700)."""
    messages = []
    for code, start, _end in _sections(payload):
        if code == _DATA:
            content, _ = _decode_text(payload, start + 3)
            if content is None:
                raise InvalidMessage("a batch data section does not hold binary")
            messages.append(content)
    return messages


def partition_key_of(message: bytes) -> str | None:
    """The `x-opt-partition-key` message annotation, if the message carries one."""
    for code, start, _end in _sections(message):
        if code == _MESSAGE_ANNOTATIONS:
            for key, entry_start, _ in _map_entries(message, start + 3):
                if key == PARTITION_KEY:
                    value, _ = _decode_text(message, _value_end(message, entry_start))
                    return None if value is None else value.decode("utf-8")
            return None
        if code > _MESSAGE_ANNOTATIONS:
            return None
    return None


def _symbol(name: bytes) -> bytes:
    return b"\xa3" + bytes((len(name),)) + name


def _string(text: bytes) -> bytes:
    if len(text) < 256:
        return b"\xa1" + bytes((len(text),)) + text
    return b"\xb1" + struct.pack(">I", len(text)) + text


def _service_entries(
    sequence_number: int, offset: int, enqueued_time_ms: int, partition_key: str | None
) -> tuple[bytes, int]:
    """The encoded map entries the service adds to a stored event, and their item count."""
    entries = (
        _symbol(SEQUENCE_NUMBER)
        + b"\x81"
        + struct.pack(">q", sequence_number)
        + _symbol(OFFSET)
        + _string(str(offset).encode())
        + _symbol(ENQUEUED_TIME)
        + b"\x83"
        + struct.pack(">q", enqueued_time_ms)
    )
    if partition_key is None:
        return entries, 6
    return entries + _symbol(PARTITION_KEY) + _string(partition_key.encode("utf-8")), 8


def _annotations_section(body: bytes, item_count: int) -> bytes:
    return b"\x00\x53\x72\xd1" + struct.pack(">II", len(body) + 4, item_count) + body


def stamp_event(
    message: bytes,
    *,
    sequence_number: int,
    offset: int,
    enqueued_time_ms: int,
    partition_key: str | None,
) -> bytes:
    """`message` as the service stores it: sequence number, offset (an AMQP string) and
    enqueued time added to its message annotations, plus `partition_key` when given.

    Annotations the sender set under those names are replaced; every other byte is kept.
    """
    entries, item_count = _service_entries(sequence_number, offset, enqueued_time_ms, partition_key)
    replaced = _SERVICE_KEYS if partition_key is None else _SERVICE_KEYS | {PARTITION_KEY}
    insert_at = len(message)
    for code, start, end in _sections(message):
        if code == _MESSAGE_ANNOTATIONS:
            kept = [
                message[entry_start:entry_end]
                for key, entry_start, entry_end in _map_entries(message, start + 3)
                if key not in replaced
            ]
            section = _annotations_section(b"".join(kept) + entries, 2 * len(kept) + item_count)
            return message[:start] + section + message[end:]
        if code not in (_HEADER, _DELIVERY_ANNOTATIONS):
            insert_at = start
            break
    return message[:insert_at] + _annotations_section(entries, item_count) + message[insert_at:]


LAST_ENQUEUED_SEQUENCE_NUMBER = b"last_enqueued_sequence_number"
LAST_ENQUEUED_OFFSET = b"last_enqueued_offset"
LAST_ENQUEUED_TIME = b"last_enqueued_time_utc"
RETRIEVAL_TIME = b"runtime_info_retrieval_time_utc"


def runtime_metric_section(
    last_sequence_number: int, last_offset: str, last_enqueued_ms: int, retrieved_ms: int
) -> bytes:
    """Delivery annotations describing the partition's last event (receiver runtime metric)."""
    body = (
        _symbol(LAST_ENQUEUED_SEQUENCE_NUMBER)
        + b"\x81"
        + struct.pack(">q", last_sequence_number)
        + _symbol(LAST_ENQUEUED_OFFSET)
        + _string(last_offset.encode())
        + _symbol(LAST_ENQUEUED_TIME)
        + b"\x83"
        + struct.pack(">q", last_enqueued_ms)
        + _symbol(RETRIEVAL_TIME)
        + b"\x83"
        + struct.pack(">q", retrieved_ms)
    )
    return b"\x00\x53\x71\xd1" + struct.pack(">II", len(body) + 4, 8) + body


def with_delivery_annotations(event: bytes, section: bytes) -> bytes:
    """`event` with a delivery-annotations `section` in its place: after the header, if any.

    Stored events never carry delivery annotations (they are per delivery, and the service
    drops the sender's), so the section is inserted, not merged.
    """
    if event.startswith(b"\x00\x53\x70"):
        header_end = _value_end(event, 0)
        return event[:header_end] + section + event[header_end:]
    return section + event
