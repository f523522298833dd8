"""AMQP 1.0 type system: encode Python values to wire bytes and decode them back.

Written by hand because no maintained pure-Python AMQP 1.0 codec exists outside the SDKs'
private modules, which product code may not import.

Decoding maps AMQP types to Python: null -> None, boolean -> bool, integers -> int,
float/double -> float, timestamp -> `Timestamp` (int ms), uuid -> uuid.UUID,
binary -> bytes, string -> str, symbol -> `Symbol` (a str), list/array -> list, map -> dict,
described -> `Described` (which keeps its raw bytes, so it can be echoed unchanged).
Encoding uses the wrappers below to choose an unsigned or narrower type; a plain `int`
is sent as a long, a plain `float` as a double.
"""

from __future__ import annotations

import datetime
import struct
import uuid
from collections.abc import Callable
from typing import Any

__all__ = [
    "Array",
    "Byte",
    "DecodeError",
    "Described",
    "Int",
    "Short",
    "Symbol",
    "Timestamp",
    "UByte",
    "UInt",
    "ULong",
    "UShort",
    "decode_value",
    "encode_value",
    "encoded",
]


class DecodeError(ValueError):
    """The bytes are not a valid AMQP 1.0 encoding."""


class Symbol(str):
    """An AMQP symbol (ASCII), distinct from a string on the wire."""

    __slots__ = ()


class UByte(int):
    __slots__ = ()


class UShort(int):
    __slots__ = ()


class UInt(int):
    __slots__ = ()


class ULong(int):
    __slots__ = ()


class Byte(int):
    __slots__ = ()


class Short(int):
    __slots__ = ()


class Int(int):
    """A signed 32-bit integer (a plain int is sent as a 64-bit long)."""

    __slots__ = ()


class Timestamp(int):
    """Milliseconds since the Unix epoch, the AMQP timestamp type."""

    __slots__ = ()

    @classmethod
    def now(cls) -> Timestamp:
        return cls(int(datetime.datetime.now(datetime.UTC).timestamp() * 1000))


class Described:
    """A described value; `raw` holds its exact encoding when it came off the wire."""

    __slots__ = ("descriptor", "raw", "value")

    def __init__(self, descriptor: Any, value: Any, raw: bytes | None = None) -> None:
        self.descriptor = descriptor
        self.value = value
        self.raw = raw

    def __repr__(self) -> str:
        return f"Described({self.descriptor!r}, {self.value!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Described)
            and self.descriptor == other.descriptor
            and self.value == other.value
        )

    __hash__ = None  # type: ignore[assignment]


class Array:
    """An AMQP array: every element has the same type, named by its constructor code."""

    __slots__ = ("code", "items")

    def __init__(self, code: int, items: list[Any]) -> None:
        self.code = code
        self.items = items


# ---------------------------------------------------------------- decoding

_unpack_from = struct.unpack_from
_Decoder = Callable[[bytes, int], tuple[Any, int]]


def _fixed(fmt: str) -> _Decoder:
    size = struct.calcsize(fmt)
    full = ">" + fmt

    def decode(buf: bytes, pos: int) -> tuple[Any, int]:
        return _unpack_from(full, buf, pos)[0], pos + size

    return decode


def _timestamp(buf: bytes, pos: int) -> tuple[Any, int]:
    return Timestamp(_unpack_from(">q", buf, pos)[0]), pos + 8


def _uuid(buf: bytes, pos: int) -> tuple[Any, int]:
    return uuid.UUID(bytes=bytes(buf[pos : pos + 16])), pos + 16


def _vbin8(buf: bytes, pos: int) -> tuple[Any, int]:
    n = buf[pos]
    return bytes(buf[pos + 1 : pos + 1 + n]), pos + 1 + n


def _vbin32(buf: bytes, pos: int) -> tuple[Any, int]:
    (n,) = _unpack_from(">I", buf, pos)
    return bytes(buf[pos + 4 : pos + 4 + n]), pos + 4 + n


def _str8(buf: bytes, pos: int) -> tuple[Any, int]:
    n = buf[pos]
    return str(buf[pos + 1 : pos + 1 + n], "utf-8"), pos + 1 + n


def _str32(buf: bytes, pos: int) -> tuple[Any, int]:
    (n,) = _unpack_from(">I", buf, pos)
    return str(buf[pos + 4 : pos + 4 + n], "utf-8"), pos + 4 + n


def _sym8(buf: bytes, pos: int) -> tuple[Any, int]:
    n = buf[pos]
    return Symbol(str(buf[pos + 1 : pos + 1 + n], "ascii")), pos + 1 + n


def _sym32(buf: bytes, pos: int) -> tuple[Any, int]:
    (n,) = _unpack_from(">I", buf, pos)
    return Symbol(str(buf[pos + 4 : pos + 4 + n], "ascii")), pos + 4 + n


def _items(buf: bytes, pos: int, count: int) -> tuple[list[Any], int]:
    out = []
    for _ in range(count):
        value, pos = decode_value(buf, pos)
        out.append(value)
    return out, pos


def _list8(buf: bytes, pos: int) -> tuple[Any, int]:
    return _items(buf, pos + 2, buf[pos + 1])


def _list32(buf: bytes, pos: int) -> tuple[Any, int]:
    (_, count) = _unpack_from(">II", buf, pos)
    return _items(buf, pos + 8, count)


def _pairs(items: list[Any]) -> dict[Any, Any]:
    it = iter(items)
    return {_hashable(k): v for k, v in zip(it, it, strict=True)}


def _hashable(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key


def _map8(buf: bytes, pos: int) -> tuple[Any, int]:
    items, pos = _items(buf, pos + 2, buf[pos + 1])
    return _pairs(items), pos


def _map32(buf: bytes, pos: int) -> tuple[Any, int]:
    (_, count) = _unpack_from(">II", buf, pos)
    items, pos = _items(buf, pos + 8, count)
    return _pairs(items), pos


def _array_items(buf: bytes, pos: int, count: int) -> tuple[list[Any], int]:
    code = buf[pos]
    pos += 1
    if code == 0x00:
        descriptor, pos = decode_value(buf, pos)
        inner = buf[pos]
        decoder = _DECODERS.get(inner)
        if decoder is None:
            raise DecodeError(f"unknown array element constructor 0x{inner:02x}")
        pos += 1
        out = []
        for _ in range(count):
            value, pos = decoder(buf, pos)
            out.append(Described(descriptor, value))
        return out, pos
    decoder = _DECODERS.get(code)
    if decoder is None:
        raise DecodeError(f"unknown array element constructor 0x{code:02x}")
    out = []
    for _ in range(count):
        value, pos = decoder(buf, pos)
        out.append(value)
    return out, pos


def _array8(buf: bytes, pos: int) -> tuple[Any, int]:
    return _array_items(buf, pos + 2, buf[pos + 1])


def _array32(buf: bytes, pos: int) -> tuple[Any, int]:
    (_, count) = _unpack_from(">II", buf, pos)
    return _array_items(buf, pos + 8, count)


def _const(value: Any) -> _Decoder:
    def decode(buf: bytes, pos: int) -> tuple[Any, int]:
        return value, pos

    return decode


def _small_uint(buf: bytes, pos: int) -> tuple[Any, int]:
    return buf[pos], pos + 1


def _small_int(buf: bytes, pos: int) -> tuple[Any, int]:
    value = buf[pos]
    return (value - 256 if value > 127 else value), pos + 1


def _bool_byte(buf: bytes, pos: int) -> tuple[Any, int]:
    return buf[pos] != 0, pos + 1


def _char(buf: bytes, pos: int) -> tuple[Any, int]:
    return chr(_unpack_from(">I", buf, pos)[0]), pos + 4


def _opaque(size: int) -> _Decoder:
    """Decimal types: kept as raw bytes, since no SDK sends them in practice."""

    def decode(buf: bytes, pos: int) -> tuple[Any, int]:
        return bytes(buf[pos : pos + size]), pos + size

    return decode


_DECODERS: dict[int, _Decoder] = {
    0x40: _const(None),
    0x41: _const(True),
    0x42: _const(False),
    0x56: _bool_byte,
    0x50: _small_uint,
    0x60: _fixed("H"),
    0x70: _fixed("I"),
    0x52: _small_uint,
    0x43: _const(0),
    0x80: _fixed("Q"),
    0x53: _small_uint,
    0x44: _const(0),
    0x51: _small_int,
    0x61: _fixed("h"),
    0x71: _fixed("i"),
    0x54: _small_int,
    0x81: _fixed("q"),
    0x55: _small_int,
    0x72: _fixed("f"),
    0x82: _fixed("d"),
    0x74: _opaque(4),
    0x84: _opaque(8),
    0x94: _opaque(16),
    0x73: _char,
    0x83: _timestamp,
    0x98: _uuid,
    0xA0: _vbin8,
    0xB0: _vbin32,
    0xA1: _str8,
    0xB1: _str32,
    0xA3: _sym8,
    0xB3: _sym32,
    0x45: _const(None),
    0xC0: _list8,
    0xD0: _list32,
    0xC1: _map8,
    0xD1: _map32,
    0xE0: _array8,
    0xF0: _array32,
}
# list0 decodes to an empty list, not None
_DECODERS[0x45] = lambda buf, pos: ([], pos)


def decode_value(buf: bytes, pos: int = 0) -> tuple[Any, int]:
    """Decode one value at `pos`; return it and the position just after it."""
    try:
        code = buf[pos]
        if code == 0x00:
            start = pos
            descriptor, pos = decode_value(buf, pos + 1)
            value, pos = decode_value(buf, pos)
            return Described(descriptor, value, bytes(buf[start:pos])), pos
        return _DECODERS[code](buf, pos + 1)
    except KeyError:
        raise DecodeError(f"unknown constructor 0x{buf[pos]:02x} at {pos}") from None
    except (IndexError, struct.error) as exc:
        raise DecodeError(f"truncated value at {pos}") from exc


# ---------------------------------------------------------------- encoding

_pack = struct.pack


def _encode_int(out: bytearray, value: int) -> None:
    if -128 <= value <= 127:
        out += b"\x55" + _pack(">b", value)
    else:
        out += b"\x81" + _pack(">q", value)


def _encode_variable(out: bytearray, small: int, large: int, data: bytes) -> None:
    n = len(data)
    if n < 256:
        out.append(small)
        out.append(n)
    else:
        out.append(large)
        out += _pack(">I", n)
    out += data


def _encode_compound(out: bytearray, small: int, large: int, count: int, body: bytes) -> None:
    if len(body) < 255 and count < 256:
        out.append(small)
        out.append(len(body) + 1)
        out.append(count)
    else:
        out.append(large)
        out += _pack(">II", len(body) + 4, count)
    out += body


def _element_body(code: int, value: Any) -> bytes:
    """Encode an array element without its constructor byte."""
    if code in (0xA3, 0xB3):
        data = value.encode("ascii") if isinstance(value, str) else bytes(value)
        return _pack(">I", len(data)) + data
    if code in (0xA1, 0xB1):
        text: bytes = value.encode("utf-8")
        return _pack(">I", len(text)) + text
    if code in (0xA0, 0xB0):
        return _pack(">I", len(value)) + bytes(value)
    if code == 0x98:
        return bytes(value.bytes)
    fmt = _ARRAY_FORMATS.get(code)
    if fmt is None:
        raise TypeError(f"unsupported array element type 0x{code:02x}")
    return _pack(fmt, value)


_ARRAY_FORMATS = {
    0x81: ">q",
    0x83: ">q",
    0x71: ">i",
    0x70: ">I",
    0x80: ">Q",
    0x82: ">d",
    0x60: ">H",
    0x50: ">B",
}
# variable-width element types are always written in their 32-bit form inside arrays
_ARRAY_WIDE = {0xA3: 0xB3, 0xA1: 0xB1, 0xA0: 0xB0}


def _encode_array(out: bytearray, array: Array) -> None:
    code = _ARRAY_WIDE.get(array.code, array.code)
    body = bytearray([code])
    for item in array.items:
        body += _element_body(code, item)
    count = len(array.items)
    if len(body) < 255 and count < 256:
        out += bytes([0xE0, len(body) + 1, count])
    else:
        out += b"\xf0" + _pack(">II", len(body) + 4, count)
    out += body


def encode_value(out: bytearray, value: Any) -> None:
    """Append the encoding of `value` to `out`."""
    if value is None:
        out.append(0x40)
    elif value is True:
        out.append(0x41)
    elif value is False:
        out.append(0x42)
    elif isinstance(value, Symbol):
        _encode_variable(out, 0xA3, 0xB3, value.encode("ascii"))
    elif isinstance(value, str):
        _encode_variable(out, 0xA1, 0xB1, value.encode("utf-8"))
    elif isinstance(value, bytes | bytearray | memoryview):
        _encode_variable(out, 0xA0, 0xB0, bytes(value))
    elif isinstance(value, int):
        _encode_typed_int(out, value)
    elif isinstance(value, float):
        out += b"\x82" + _pack(">d", value)
    elif isinstance(value, uuid.UUID):
        out += b"\x98" + value.bytes
    elif isinstance(value, Described):
        if value.raw is not None:
            out += value.raw
        else:
            out.append(0x00)
            encode_value(out, value.descriptor)
            encode_value(out, value.value)
    elif isinstance(value, list | tuple):
        if not value:
            out.append(0x45)
            return
        body = bytearray()
        for item in value:
            encode_value(body, item)
        _encode_compound(out, 0xC0, 0xD0, len(value), bytes(body))
    elif isinstance(value, dict):
        body = bytearray()
        for key, item in value.items():
            encode_value(body, key)
            encode_value(body, item)
        _encode_compound(out, 0xC1, 0xD1, 2 * len(value), bytes(body))
    elif isinstance(value, Array):
        _encode_array(out, value)
    elif isinstance(value, datetime.datetime):
        out += b"\x83" + _pack(">q", int(value.timestamp() * 1000))
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as AMQP")


def _encode_typed_int(out: bytearray, value: int) -> None:
    kind = type(value)
    if kind is int:
        _encode_int(out, value)
    elif kind is UInt:
        if value == 0:
            out.append(0x43)
        elif value < 256:
            out += bytes((0x52, value))
        else:
            out += b"\x70" + _pack(">I", value)
    elif kind is ULong:
        if value == 0:
            out.append(0x44)
        elif value < 256:
            out += bytes((0x53, value))
        else:
            out += b"\x80" + _pack(">Q", value)
    elif kind is Timestamp:
        out += b"\x83" + _pack(">q", value)
    elif kind is UByte:
        out += bytes((0x50, value))
    elif kind is UShort:
        out += b"\x60" + _pack(">H", value)
    elif kind is Int:
        if -128 <= value <= 127:
            out += b"\x54" + _pack(">b", value)
        else:
            out += b"\x71" + _pack(">i", value)
    elif kind is Short:
        out += b"\x61" + _pack(">h", value)
    elif kind is Byte:
        out += b"\x51" + _pack(">b", value)
    else:
        _encode_int(out, value)


def encoded(value: Any) -> bytes:
    """The encoding of one value as bytes."""
    out = bytearray()
    encode_value(out, value)
    return bytes(out)
