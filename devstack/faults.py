"""Fault injection for tests: make devstack misbehave the way Azure sometimes does.

`Faults` holds what the broker consults on its hot paths; `FaultInjector` (as
`DevStack.faults`) is the thread-safe API tests call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from devstack.amqp.frames import AmqpError

if TYPE_CHECKING:
    from devstack.server import DevStack

SERVER_BUSY = "com.microsoft:server-busy"
ANY_ENTITY = "*"


class Faults:
    """Pending faults, per entity path (lower case) or for any entity."""

    def __init__(self) -> None:
        self.busy: dict[str, int] = {}
        self.duplicates: dict[str, int] = {}

    @staticmethod
    def _take(counts: dict[str, int], path: str) -> bool:
        for key in (path, ANY_ENTITY):
            left = counts.get(key, 0)
            if left > 0:
                counts[key] = left - 1
                return True
        return False

    def before_send(self, path: str) -> None:
        """Raise server-busy if a busy fault is pending for this entity."""
        if self.busy and self._take(self.busy, path):
            raise AmqpError(
                SERVER_BUSY,
                "The request was terminated because the entity is being throttled "
                "(devstack fault injection).",
            )

    def take_duplicate(self, path: str) -> bool:
        """True if this delivery should be delivered again after it is settled."""
        return bool(self.duplicates) and self._take(self.duplicates, path)

    def clear(self) -> None:
        self.busy.clear()
        self.duplicates.clear()


class FaultInjector:
    """Thread-safe fault API of a running DevStack."""

    def __init__(self, stack: DevStack) -> None:
        self._stack = stack

    def drop_connections(self) -> int:
        """Abort every client TCP connection without a close frame; returns how many."""
        return self._stack.call(lambda: self._stack.amqp.drop_connections())

    def expire_locks(self, entity: str | None = None) -> int:
        """Expire every message lock now (on `entity`, e.g. `q1` or `t1/subscriptions/s1`):
        the messages are redelivered and a late settle fails with MessageLockLostError."""
        node = self._stack.servicebus
        if node is None:
            return 0
        return self._stack.call(lambda: node.broker.expire_locks(entity))

    def server_busy(self, entity: str | None = None, times: int = 1) -> None:
        """Answer the next `times` sends (to `entity`, or any) with server-busy."""
        key = entity.lower() if entity else ANY_ENTITY
        faults = self._stack.fault_state

        def arm() -> None:
            faults.busy[key] = faults.busy.get(key, 0) + times

        self._stack.call(arm)

    def deliver_twice(self, entity: str | None = None, times: int = 1) -> None:
        """The next `times` peek-lock deliveries come back once more after being completed,
        as a duplicate delivery (same MessageId and body, new sequence number)."""
        key = entity.lower() if entity else ANY_ENTITY
        faults = self._stack.fault_state

        def arm() -> None:
            faults.duplicates[key] = faults.duplicates.get(key, 0) + times

        self._stack.call(arm)

    def add_latency(self, seconds: float) -> None:
        """Hold every frame the server writes for `seconds` (0 removes the latency)."""

        def apply() -> None:
            self._stack.amqp.write_delay = seconds
            for connection in self._stack.amqp.connections:
                connection.write_delay = seconds

        self._stack.call(apply)

    def clear(self) -> None:
        """Remove pending faults and latency."""
        self.add_latency(0)
        self._stack.call(self._stack.fault_state.clear)
