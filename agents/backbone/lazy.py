"""`Lazy`: what an agent's Blueprint keeps - its composed object, built on first invocation.

Composition opens SDK clients, so it must not run at import (cold start, indexing) and must
run once even when the host's first invocations arrive on several threads at the same time.
`functools.cache` would not do: it can call the function twice under a race.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Lazy(Generic[T]):
    """Calls `compose` on the first `get()`, once; every later call returns the same object."""

    def __init__(self, compose: Callable[[], T]) -> None:
        self._compose = compose
        self._lock = threading.Lock()
        self._value: T | None = None

    def get(self) -> T:
        if self._value is None:
            with self._lock:
                if self._value is None:
                    self._value = self._compose()
        return self._value
