"""Partition-key routing with the Event Hubs service's own hash.

The service (and its .NET and Java clients) hash the key's UTF-8 bytes with Bob Jenkins'
lookup3 `hashlittle2` (seeds 0, 0), fold the two 32-bit results into a signed 16-bit value
and take `abs(hash % partition_count)` with truncated (C-style) remainder. Doing the same
here means a key lands on the same partition locally as in Azure.
"""

from __future__ import annotations

_MASK = 0xFFFFFFFF


def _rotate(value: int, count: int) -> int:
    return ((value << count) | (value >> (32 - count))) & _MASK


def _mix(a: int, b: int, c: int) -> tuple[int, int, int]:
    a = ((a - c) & _MASK) ^ _rotate(c, 4)
    c = (c + b) & _MASK
    b = ((b - a) & _MASK) ^ _rotate(a, 6)
    a = (a + c) & _MASK
    c = ((c - b) & _MASK) ^ _rotate(b, 8)
    b = (b + a) & _MASK
    a = ((a - c) & _MASK) ^ _rotate(c, 16)
    c = (c + b) & _MASK
    b = ((b - a) & _MASK) ^ _rotate(a, 19)
    a = (a + c) & _MASK
    c = ((c - b) & _MASK) ^ _rotate(b, 4)
    b = (b + a) & _MASK
    return a, b, c


def _final(a: int, b: int, c: int) -> tuple[int, int, int]:
    c = ((c ^ b) - _rotate(b, 14)) & _MASK
    a = ((a ^ c) - _rotate(c, 11)) & _MASK
    b = ((b ^ a) - _rotate(a, 25)) & _MASK
    c = ((c ^ b) - _rotate(b, 16)) & _MASK
    a = ((a ^ c) - _rotate(c, 4)) & _MASK
    b = ((b ^ a) - _rotate(a, 14)) & _MASK
    c = ((c ^ b) - _rotate(b, 24)) & _MASK
    return a, b, c


def lookup3_pair(data: bytes) -> tuple[int, int]:
    """Jenkins lookup3 `hashlittle2` with both seeds 0: the pair (primary, secondary)."""
    a = b = c = (0xDEADBEEF + len(data)) & _MASK
    position, remaining = 0, len(data)
    while remaining > 12:
        a = (a + int.from_bytes(data[position : position + 4], "little")) & _MASK
        b = (b + int.from_bytes(data[position + 4 : position + 8], "little")) & _MASK
        c = (c + int.from_bytes(data[position + 8 : position + 12], "little")) & _MASK
        a, b, c = _mix(a, b, c)
        position += 12
        remaining -= 12
    if remaining == 0:
        return c, b
    # The last 1..12 bytes, zero-padded, fill a, b, c little-endian, as lookup3's switch does.
    tail = data[position:].ljust(12, b"\0")
    a = (a + int.from_bytes(tail[0:4], "little")) & _MASK
    b = (b + int.from_bytes(tail[4:8], "little")) & _MASK
    c = (c + int.from_bytes(tail[8:12], "little")) & _MASK
    a, b, c = _final(a, b, c)
    return c, b


def partition_key_hash(partition_key: str) -> int:
    """The service's signed 16-bit hash code of a partition key."""
    if not partition_key:
        return 0
    primary, secondary = lookup3_pair(partition_key.encode("utf-8"))
    folded = (primary ^ secondary) & 0xFFFF
    return folded - 0x10000 if folded & 0x8000 else folded


def partition_index_for_key(partition_key: str, partition_count: int) -> int:
    """Index (0-based) of the partition the service assigns `partition_key` to."""
    if partition_count < 1:
        raise ValueError(f"partition_count must be at least 1, got {partition_count}")
    hash_code = partition_key_hash(partition_key)
    # The service's C# computes abs(hash % count) with a truncated remainder, which is
    # abs(hash) % count; Python's own % floors, and would differ for negative hashes.
    return abs(hash_code) % partition_count
