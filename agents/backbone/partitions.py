"""Partition keys: hashed so raw ids never leak into broker metadata and spread evenly; a
key seen as hot is salted over N sub-keys (only where per-key ordering does not matter)."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping

from agents.backbone.envelope import Envelope


def hashed(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


class PartitionKeys:
    """Maps an envelope to the broker partition key.

    `salted` names hot keys and how many sub-keys each spreads over; an event's sub-key is
    chosen from its id, so a re-send of the same event lands on the same partition.
    """

    def __init__(self, salted: Mapping[str, int] | None = None) -> None:
        self._salted = dict(salted or {})

    def salt(self, key: str, spread: int) -> None:
        """Spread `key` over `spread` sub-keys from now on (1 turns salting off)."""
        self._salted[key] = spread

    def for_event(self, envelope: Envelope) -> str:
        key = envelope.partitionkey or envelope.subject or envelope.id
        spread = self._salted.get(key, 1)
        if spread <= 1:
            return hashed(key)
        slot = int(hashlib.sha256(envelope.id.encode("utf-8")).hexdigest(), 16) % spread
        return hashed(f"{key}#{slot}")


class HotKeyDetector:
    """Counts keys per time window; a key over `threshold` in a window is reported hot once."""

    def __init__(
        self, *, threshold: int, window_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold = threshold
        self._window = window_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._started = clock()
        self._counts: Counter[str] = Counter()

    def seen(self, key: str) -> bool:
        """Record one event for `key`; True the first time it crosses the threshold."""
        with self._lock:
            if self._clock() - self._started >= self._window:
                self._started, self._counts = self._clock(), Counter()
            self._counts[key] += 1
            return self._counts[key] == self._threshold + 1
