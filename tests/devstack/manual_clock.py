"""A manual clock for devstack's Event Grid (`LocalEventGrid(clock=...)`): time stands still
until a test moves it, so retry schedules and TTLs are checked without waiting."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

START = datetime(2026, 1, 1, tzinfo=UTC)


class ManualClock:
    """Time stands still until `advance`; sleepers wake when their moment has come."""

    def __init__(self, moment: datetime = START) -> None:
        self.moment = moment
        self.sleepers: list[tuple[datetime, asyncio.Event]] = []
        self.slept: list[float] = []

    def now(self) -> datetime:
        return self.moment

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        woken = asyncio.Event()
        self.sleepers.append((self.moment + timedelta(seconds=seconds), woken))
        await woken.wait()

    def advance_to_next_wake(self) -> None:
        wake, _ = min(self.sleepers, key=lambda sleeper: sleeper[0])
        self.moment = max(self.moment, wake)
        for entry in [s for s in self.sleepers if s[0] <= self.moment]:
            self.sleepers.remove(entry)
            entry[1].set()


async def until(condition: Callable[[], Any], what: str, clock: ManualClock | None = None) -> None:
    """Wait for `condition`, moving `clock` to the next wake-up whenever delivery sleeps
    (the webhook is a real HTTP server, so its answers take real, bounded time)."""
    deadline = time.monotonic() + 15
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen"
        if clock is not None and clock.sleepers:
            clock.advance_to_next_wake()
        await asyncio.sleep(0.01)
