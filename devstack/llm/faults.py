"""Faults of the local model endpoint, per deployment (or for all): what an LLM provider does
on a bad day. `ModelFaults` is thread-safe: tests arm it in-process, `routes()` over HTTP.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

ANY_DEPLOYMENT = "*"


class FaultKind(enum.Enum):
    HANG = "hang"
    THROTTLE = "throttle"
    ERROR = "error"
    MALFORMED = "malformed"
    WRONG_SCHEMA = "wrong-schema"
    OUTAGE = "outage"


@dataclass
class Fault:
    kind: FaultKind
    times: int | None = 1
    """Requests left to hit (None: until cleared or, for an outage, until `until`)."""
    status: int = 503
    retry_after: float | None = None
    until: float | None = None


@dataclass(frozen=True)
class Planned:
    """What to do with one request: wait `delay` first, then answer with `fault` (or not)."""

    delay: float
    fault: Fault | None


class ModelFaults:
    """Armed faults and latency; `clock` decides when an outage ends (tests move it)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._faults: dict[str, list[Fault]] = {}
        self._latency: dict[str, float] = {}

    def _arm(self, fault: Fault, deployment: str | None) -> None:
        with self._lock:
            self._faults.setdefault(deployment or ANY_DEPLOYMENT, []).append(fault)

    def latency(self, seconds: float, *, deployment: str | None = None) -> None:
        """Delay every answer by `seconds` (0 removes it)."""
        with self._lock:
            self._latency[deployment or ANY_DEPLOYMENT] = seconds

    def hang(self, *, deployment: str | None = None, times: int = 1) -> None:
        """Never answer the next `times` requests: the client's own timeout ends them."""
        self._arm(Fault(FaultKind.HANG, times), deployment)

    def throttle(self, *, retry_after: float = 1.0, deployment: str | None = None,
                 times: int = 1) -> None:
        """429 with `retry-after` (whole seconds, rounded up) and `retry-after-ms`."""
        self._arm(Fault(FaultKind.THROTTLE, times, 429, retry_after), deployment)

    def error(self, status: int = 500, *, deployment: str | None = None, times: int = 1) -> None:
        """Answer 500 or 503 (any 5xx) for the next `times` requests."""
        if not 500 <= status <= 599:
            raise ValueError("error faults are 5xx; use throttle() for 429")
        self._arm(Fault(FaultKind.ERROR, times, status), deployment)

    def malformed(self, *, deployment: str | None = None, times: int = 1) -> None:
        """200, but the message content is cut-off JSON."""
        self._arm(Fault(FaultKind.MALFORMED, times, 200), deployment)

    def wrong_schema(self, *, deployment: str | None = None, times: int = 1) -> None:
        """200 with JSON content that does not match the requested schema."""
        self._arm(Fault(FaultKind.WRONG_SCHEMA, times, 200), deployment)

    def outage(self, seconds: float, *, deployment: str | None = None) -> None:
        """503 for every request until `seconds` have passed on the server's clock."""
        self._arm(Fault(FaultKind.OUTAGE, None, 503, until=self._clock() + seconds),
                  deployment)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self._latency.clear()

    def plan(self, deployment: str) -> Planned:
        """Take the fault this request meets (its own deployment's first, then any's)."""
        now = self._clock()
        with self._lock:
            delay = self._latency.get(deployment, self._latency.get(ANY_DEPLOYMENT, 0.0))
            for key in (deployment, ANY_DEPLOYMENT):
                pending = self._faults.get(key, [])
                pending[:] = [f for f in pending if f.until is None or now < f.until]
                if pending:
                    fault = pending[0]
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times <= 0:
                            pending.pop(0)
                    return Planned(delay, fault)
        return Planned(delay, None)

    def routes(self) -> list[web.RouteDef]:
        """`POST /faults/<kind>?deployment=&times=&seconds=&status=&retry_after=`: latency,
        hang, throttle, error, malformed, wrong-schema, outage, clear."""

        def arm(action: Callable[[web.Request, str | None, int], None], name: str
                ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
            async def handler(request: web.Request) -> web.Response:
                try:
                    action(request, request.query.get("deployment") or None,
                           int(request.query.get("times", "1")))
                except ValueError as error:
                    return web.json_response({"error": str(error)}, status=400)
                return web.json_response({"armed": name})
            return handler

        def number(request: web.Request, name: str, default: float) -> float:
            return float(request.query.get(name, default))

        actions: dict[str, Callable[[web.Request, str | None, int], None]] = {
            "latency": lambda r, d, t: self.latency(number(r, "seconds", 0), deployment=d),
            "hang": lambda r, d, t: self.hang(deployment=d, times=t),
            "throttle": lambda r, d, t: self.throttle(
                retry_after=number(r, "retry_after", 1), deployment=d, times=t),
            "error": lambda r, d, t: self.error(int(number(r, "status", 500)), deployment=d,
                                                times=t),
            "malformed": lambda r, d, t: self.malformed(deployment=d, times=t),
            "wrong-schema": lambda r, d, t: self.wrong_schema(deployment=d, times=t),
            "outage": lambda r, d, t: self.outage(number(r, "seconds", 30), deployment=d),
            "clear": lambda r, d, t: self.clear(),
        }
        return [web.post(f"/faults/{name}", arm(action, name))
                for name, action in actions.items()]
