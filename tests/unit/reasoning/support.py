"""The example task of the reasoning tests, and a clock the tests move by hand."""

from __future__ import annotations

import threading
from pathlib import Path

from agents.reasoning import Task, load_task

PROMPTS = Path(__file__).resolve().parent / "prompts"


def classify_ticket() -> Task:
    return load_task(PROMPTS, "classify-ticket")


class FakeClock:
    """Wall-clock seconds that only move when a test says so (shared by threads)."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds
