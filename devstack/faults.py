"""Fault injection for tests: make devstack misbehave the way Azure sometimes does.

`Faults` holds what the broker consults on its hot paths; `FaultInjector` (as
`DevStack.faults`) is the thread-safe API tests call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import web

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
        self.duplicate_sends: dict[str, int] = {}
        self.malformed: dict[str, int] = {}
        # entity -> (set once a send is held, the held sends' continuations)
        self.holds: dict[str, tuple[threading.Event, list[Callable[[], None]]]] = {}

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

    def take_duplicate_send(self, path: str) -> bool:
        """True if this send should be stored twice, as when a producer retries a send
        whose acknowledgement was lost."""
        return bool(self.duplicate_sends) and self._take(self.duplicate_sends, path)

    def take_malformed(self, path: str) -> bool:
        """True if this peek-lock delivery should go out without its lock expiry."""
        return bool(self.malformed) and self._take(self.malformed, path)

    def hold_send(self, path: str, resume: Callable[[], None]) -> bool:
        """True if this send is held: `resume` runs when the entity's sends are released."""
        hold = self.holds.get(path.lower())
        if hold is None:
            return False
        held, resumes = hold
        resumes.append(resume)
        held.set()
        return True

    def release(self, path: str) -> None:
        for resume in self.holds.pop(path.lower(), (None, []))[1]:
            resume()

    def clear(self) -> None:
        for path in list(self.holds):
            self.release(path)
        self.busy.clear()
        self.duplicates.clear()
        self.duplicate_sends.clear()
        self.malformed.clear()


class FaultInjector:
    """Thread-safe fault API of a running DevStack (every call runs on its event loop)."""

    def __init__(self, stack: DevStack) -> None:
        self._stack = stack

    # loop-side operations, shared by the thread-safe methods and the HTTP admin API

    def _drop_connections(self) -> int:
        return self._stack.amqp.drop_connections()

    def _expire_locks(self, entity: str | None) -> int:
        node = self._stack.servicebus
        return node.broker.expire_locks(entity) if node is not None else 0

    def _arm(self, counts: dict[str, int], entity: str | None, times: int) -> None:
        key = entity.lower() if entity else ANY_ENTITY
        counts[key] = counts.get(key, 0) + times

    def _set_latency(self, seconds: float) -> None:
        self._stack.amqp.write_delay = seconds
        for connection in self._stack.amqp.connections:
            connection.write_delay = seconds

    def _clear(self) -> None:
        self._set_latency(0)
        self._stack.fault_state.clear()

    # thread-safe API

    def drop_connections(self) -> int:
        """Abort every client TCP connection without a close frame; returns how many."""
        return self._stack.call(self._drop_connections)

    def expire_locks(self, entity: str | None = None) -> int:
        """Expire every message lock now (on `entity`, e.g. `q1` or `t1/subscriptions/s1`):
        the messages are redelivered and a late settle fails with MessageLockLostError."""
        return self._stack.call(lambda: self._expire_locks(entity))

    def server_busy(self, entity: str | None = None, times: int = 1) -> None:
        """Answer the next `times` sends (to `entity`, or any) with server-busy."""
        self._stack.call(lambda: self._arm(self._stack.fault_state.busy, entity, times))

    def deliver_twice(self, entity: str | None = None, times: int = 1) -> None:
        """The next `times` peek-lock deliveries come back once more after being completed,
        as a duplicate delivery (same MessageId and body, new sequence number)."""
        self._stack.call(lambda: self._arm(self._stack.fault_state.duplicates, entity, times))

    def duplicate_sends(self, entity: str | None = None, times: int = 1) -> None:
        """The next `times` sends (to `entity`, or any queue, topic or event hub) are stored
        twice, as when a producer retries a send whose acknowledgement was lost. Service
        Bus duplicate detection, where configured, drops the second copy, as in Azure."""
        self._stack.call(
            lambda: self._arm(self._stack.fault_state.duplicate_sends, entity, times)
        )

    def malformed_deliveries(self, entity: str | None = None, times: int = 1) -> None:
        """The next `times` peek-lock deliveries (from `entity`, or any) lack their
        `x-opt-locked-until` annotation, as from a broken peer. azure-servicebus hands such a
        message over, and its AutoLockRenewer refuses it with ValueError, not a
        ServiceBusError: the fault that once killed a host listener for good."""
        self._stack.call(lambda: self._arm(self._stack.fault_state.malformed, entity, times))

    def hold_sends(self, entity: str) -> threading.Event:
        """Leave sends to `entity` (a queue or topic) unanswered until `release_sends`; the
        sender waits as for a slow or busy entity while other entities answer. The Event is
        set once a send is being held."""
        held = threading.Event()
        self._stack.call(lambda: self._stack.fault_state.holds.setdefault(
            entity.lower(), (held, [])))
        return held

    def release_sends(self, entity: str) -> None:
        """Accept the sends held on `entity` (in order) and stop holding new ones."""
        self._stack.call(lambda: self._stack.fault_state.release(entity))

    def add_latency(self, seconds: float) -> None:
        """Hold every frame the server writes for `seconds` (0 removes the latency)."""
        self._stack.call(lambda: self._set_latency(seconds))

    def clear(self) -> None:
        """Remove pending faults and latency (held sends are released)."""
        self._stack.call(self._clear)

    # HTTP admin API

    def http_app(self) -> web.Application:
        """`POST /faults/<name>` with query parameters, answering JSON:
        drop-connections, expire-locks?entity=, server-busy?entity=&times=,
        deliver-twice?entity=&times=, duplicate-send?entity=&times=,
        malformed-delivery?entity=&times=, latency?seconds=, clear."""

        def entity_of(request: web.Request) -> str | None:
            return request.query.get("entity") or None

        def times_of(request: web.Request) -> int:
            return int(request.query.get("times", "1"))

        async def drop(request: web.Request) -> web.Response:
            return web.json_response({"dropped": self._drop_connections()})

        async def expire(request: web.Request) -> web.Response:
            return web.json_response({"expired": self._expire_locks(entity_of(request))})

        async def busy(request: web.Request) -> web.Response:
            self._arm(self._stack.fault_state.busy, entity_of(request), times_of(request))
            return web.json_response({"armed": "server-busy"})

        async def twice(request: web.Request) -> web.Response:
            self._arm(self._stack.fault_state.duplicates, entity_of(request), times_of(request))
            return web.json_response({"armed": "deliver-twice"})

        async def resend(request: web.Request) -> web.Response:
            self._arm(self._stack.fault_state.duplicate_sends, entity_of(request),
                      times_of(request))
            return web.json_response({"armed": "duplicate-send"})

        async def malformed(request: web.Request) -> web.Response:
            self._arm(self._stack.fault_state.malformed, entity_of(request), times_of(request))
            return web.json_response({"armed": "malformed-delivery"})

        async def latency(request: web.Request) -> web.Response:
            seconds = float(request.query.get("seconds", "0"))
            self._set_latency(seconds)
            return web.json_response({"latency": seconds})

        async def clear(request: web.Request) -> web.Response:
            self._clear()
            return web.json_response({"cleared": True})

        app = web.Application()
        app.router.add_post("/faults/drop-connections", drop)
        app.router.add_post("/faults/expire-locks", expire)
        app.router.add_post("/faults/server-busy", busy)
        app.router.add_post("/faults/deliver-twice", twice)
        app.router.add_post("/faults/duplicate-send", resend)
        app.router.add_post("/faults/malformed-delivery", malformed)
        app.router.add_post("/faults/latency", latency)
        app.router.add_post("/faults/clear", clear)
        return app
