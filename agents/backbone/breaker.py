"""A circuit breaker whose state every instance shares through one Table entity.

Hand-written because no library fits: pybreaker 1.4.1 shares state only through Redis, counts
consecutive failures (no failure ratio over a window) and holds one RLock across every guarded
call; Polly-style breakers elsewhere keep state per process; none grants one probe across
instances.

Semantics follow Polly v8: closed -> open when, within `sampling_duration`, at least
`minimum_throughput` calls were made and the failed share reached `failure_ratio`; open for
`break_duration`; then half-open, where exactly one call (the probe) runs: success closes,
failure opens again. Calls refused while open are not counted.

Sharing: PartitionKey `breaker`, RowKey = the breaker's name; the entity holds the state, the
end of the break, the probe lease (owner + expiry) and per-bucket counts of the window. Each
instance keeps a cached copy and refreshes it at most every `sync_interval` (on a call that
finds it stale), writing its counts as deltas merged under the entity's ETag. So the closed hot
path touches storage about once per `sync_interval` whatever the call rate, and an open breaker
not at all until its break ends. A failure that trips the window syncs at once. The probe is an
ETag-guarded lease with an expiry (`probe_timeout`), so a probe whose instance died is retaken.
If Table fails, the breaker goes on alone on its local counts (logged), and retries Table every
`storage_retry` seconds. No lock is held across the guarded call or across a storage request.
"""

from __future__ import annotations

import enum
import json
import logging
import math
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ParamSpec, TypeVar

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from agents.backbone import telemetry
from agents.backbone.errors import RetryLater, TransientError, map_storage_error
from agents.backbone.tables import table_key

log = logging.getLogger("agents.breaker")
P = ParamSpec("P")
T = TypeVar("T")

PARTITION = "breaker"
_WRITE_ATTEMPTS = 5


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


_STATE_VALUES = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}
_breakers: weakref.WeakSet[CircuitBreaker] = weakref.WeakSet()


def _breaker_states() -> list[tuple[str, int]]:
    """Each live breaker's state as this instance last saw it, for the state gauge."""
    return [(breaker.name, _STATE_VALUES[breaker.state]) for breaker in list(_breakers)]


class BreakerOpen(RetryLater):
    """The breaker refuses the call: fail fast and use the fallback; `retry_after` in seconds.
    Left to reach a Service Bus trigger's `settle`, it reschedules the message (RetryLater)."""

    reason = "BreakerOpen"

    def __init__(self, name: str, retry_after: float) -> None:
        super().__init__(f"circuit {name!r} is open; retry after {retry_after:.3f} s",
                         retry_after=retry_after)
        self.name = name


@dataclass(frozen=True)
class BreakerOptions:
    """Polly v8's defaults for the four breaker figures; the rest is about sharing."""

    failure_ratio: float = 0.1
    minimum_throughput: int = 100
    sampling_duration: float = 30.0
    break_duration: float = 5.0
    sync_interval: float = 1.0
    """The local cache's lifetime: counts are flushed and shared state re-read this often."""
    probe_timeout: float = 30.0
    """How long the half-open lease holds (longer than the guarded call's own timeout)."""
    storage_retry: float = 30.0
    """While Table fails: how long to run local-only before trying Table again."""
    buckets: int = 10
    """The sampling window is counted in this many time buckets (it slides bucket by bucket)."""

    def __post_init__(self) -> None:
        if not 0 < self.failure_ratio <= 1:
            raise ValueError("failure_ratio must be in (0, 1]")
        if self.minimum_throughput < 2:
            raise ValueError("minimum_throughput must be at least 2")
        for name in ("sampling_duration", "break_duration", "sync_interval", "probe_timeout",
                     "storage_retry"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.buckets < 1:
            raise ValueError("buckets must be at least 1")


Counts = dict[int, tuple[int, int]]
"""Bucket index -> (successes, failures)."""


@dataclass(frozen=True)
class _Shared:
    """The breaker entity as last read or written (`etag` None: not read yet)."""

    state: BreakerState = BreakerState.CLOSED
    open_until: float = 0.0
    lease_owner: str = ""
    lease_until: float = 0.0
    counts: Counts = field(default_factory=dict)
    etag: str | None = None

    def entity(self, row_key: str) -> dict[str, Any]:
        return {
            "PartitionKey": PARTITION, "RowKey": row_key, "State": self.state.value,
            "OpenUntil": float(self.open_until), "LeaseOwner": self.lease_owner,
            "LeaseUntil": float(self.lease_until),
            "Counts": json.dumps({str(k): list(v) for k, v in sorted(self.counts.items())}),
        }

    @classmethod
    def from_entity(cls, entity: Mapping[str, Any], etag: str) -> _Shared:
        counts = {int(k): (int(v[0]), int(v[1]))
                  for k, v in json.loads(entity.get("Counts") or "{}").items()}
        return cls(BreakerState(entity["State"]), float(entity.get("OpenUntil", 0.0)),
                   str(entity.get("LeaseOwner", "")), float(entity.get("LeaseUntil", 0.0)),
                   counts, etag)


class _Lease(enum.Enum):
    PROBE = "probe"
    PASS = "pass"
    REFUSED = "refused"


class CircuitBreaker:
    """Guard calls with `breaker.call(fn, *args)`; raises `BreakerOpen` instead of calling.

    `table` None: a local-only breaker. `is_failure` says which exceptions count (default:
    every `Exception`); other outcomes count as successes. `clock` is wall time in seconds
    (shared entities compare instants across instances); tests inject their own.
    """

    def __init__(
        self,
        name: str,
        *,
        table: TableClient | None = None,
        options: BreakerOptions | None = None,
        clock: Callable[[], float] = time.time,
        is_failure: Callable[[BaseException], bool] = lambda error: isinstance(error, Exception),
        instance: str | None = None,
    ) -> None:
        self.name = name
        self.options = options or BreakerOptions()
        self.instance = instance or uuid.uuid4().hex
        self._table = table
        self._row_key = table_key(name)
        self._clock = clock
        self._is_failure = is_failure
        self._bucket_seconds = self.options.sampling_duration / self.options.buckets
        self._lock = threading.Lock()
        self._shared = _Shared()
        self._pending: dict[int, list[int]] = {}
        self._next_sync = -math.inf
        self._syncing = False
        self._probing = False
        self._degraded = False
        _breakers.add(self)
        telemetry.observe_breakers(_breaker_states)

    @property
    def state(self) -> BreakerState:
        """The state as this instance last saw it."""
        return self._shared.state

    @property
    def shared(self) -> bool:
        """True while state is shared through Table (False: local-only, by choice or because
        Table failed)."""
        return self._table is not None and not self._degraded

    def call(self, operation: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        probe = self._admit()
        try:
            result = operation(*args, **kwargs)
        except BaseException as error:
            self._record(probe, failed=self._is_failure(error))
            raise
        self._record(probe, failed=False)
        return result

    # ------------------------------------------------------------------ admission

    def _admit(self) -> bool:
        """Let the call through (True if it is the probe) or raise BreakerOpen."""
        now = self._clock()
        with self._lock:
            shared = self._shared
            in_break = shared.state is BreakerState.OPEN and now < shared.open_until
            sync = (self._table is not None and not self._syncing and not in_break
                    and now >= self._next_sync)
            if sync:
                self._syncing = True
        if sync:
            self._sync(now)
        with self._lock:
            shared = self._shared
            if shared.state is BreakerState.CLOSED:
                return False
            if shared.state is BreakerState.OPEN and now < shared.open_until:
                raise BreakerOpen(self.name, shared.open_until - now)
            if self._probing or (shared.state is BreakerState.HALF_OPEN
                                 and now < shared.lease_until):
                raise BreakerOpen(self.name, self.options.sync_interval)
            self._probing = True
            if not self.shared:
                self._shared = replace(shared, state=BreakerState.HALF_OPEN,
                                       lease_owner=self.instance,
                                       lease_until=now + self.options.probe_timeout)
                return True
        lease = self._take_lease(now)
        if lease is _Lease.PROBE:
            return True
        with self._lock:
            self._probing = False
        if lease is _Lease.PASS:
            return False
        raise BreakerOpen(self.name, self.options.sync_interval)

    def _take_lease(self, now: float) -> _Lease:
        """Become the one probe across instances: an ETag-guarded write of the lease."""
        try:
            current = self._read()
            if current.state is BreakerState.CLOSED:
                self._adopt(current, now)
                return _Lease.PASS
            if (current.state is BreakerState.OPEN and now < current.open_until) or (
                    current.state is BreakerState.HALF_OPEN and now < current.lease_until):
                self._adopt(current, now)
                return _Lease.REFUSED
            leased = replace(current, state=BreakerState.HALF_OPEN, lease_owner=self.instance,
                             lease_until=now + self.options.probe_timeout)
            written = self._write(leased)
        except _StorageFailed as failure:
            self._degrade(failure, now)
            with self._lock:
                self._shared = replace(self._shared, state=BreakerState.HALF_OPEN,
                                       lease_owner=self.instance,
                                       lease_until=now + self.options.probe_timeout)
            return _Lease.PROBE
        if written is None:  # another instance changed the entity first: it probes
            return _Lease.REFUSED
        self._adopt(written, now)
        log.info("breaker %s: half-open, %s probes", self.name, self.instance)
        return _Lease.PROBE

    # ------------------------------------------------------------------ outcomes

    def _record(self, probe: bool, *, failed: bool) -> None:
        now = self._clock()
        if probe:
            self._finish_probe(now, failed=failed)
            return
        with self._lock:
            cell = self._pending.setdefault(self._bucket(now), [0, 0])
            cell[1 if failed else 0] += 1
            trips = (failed and self._shared.state is BreakerState.CLOSED
                     and self._trips(self._window(now)))
            if not trips:
                return
            if not self.shared:
                self._open_locally(now)
                return
            sync = not self._syncing
            if sync:
                self._syncing = True
        if sync:
            self._sync(now)

    def _finish_probe(self, now: float, *, failed: bool) -> None:
        try:
            if self.shared:
                try:
                    self._settle_probe(now, failed=failed)
                    return
                except _StorageFailed as failure:
                    self._degrade(failure, now)
            with self._lock:
                self._shared = self._after_probe(self._shared, now, failed=failed)
                self._pending.clear()
        finally:
            with self._lock:
                self._probing = False

    def _settle_probe(self, now: float, *, failed: bool) -> None:
        current = self._shared
        for _ in range(_WRITE_ATTEMPTS):
            if current.lease_owner != self.instance or current.state is not BreakerState.HALF_OPEN:
                log.warning("breaker %s: probe outcome dropped, the lease was taken over",
                            self.name)
                self._adopt(current, now)
                return
            written = self._write(self._after_probe(current, now, failed=failed))
            if written is not None:
                with self._lock:
                    self._pending.clear()
                self._adopt(written, now)
                log.info("breaker %s: probe %s, %s", self.name,
                         "failed" if failed else "succeeded", written.state.value)
                return
            current = self._read()
        raise _StorageFailed(TransientError("breaker entity kept changing during the probe"))

    def _after_probe(self, current: _Shared, now: float, *, failed: bool) -> _Shared:
        if failed:
            return replace(current, state=BreakerState.OPEN,
                           open_until=now + self.options.break_duration,
                           lease_owner="", lease_until=0.0, counts={})
        return replace(current, state=BreakerState.CLOSED, open_until=0.0, lease_owner="",
                       lease_until=0.0, counts={})

    # ------------------------------------------------------------------ window

    def _bucket(self, now: float) -> int:
        return math.floor(now / self._bucket_seconds)

    def _window(self, now: float) -> tuple[int, int]:
        """(calls, failures) in the sampling window: shared counts plus unflushed ones."""
        first = self._bucket(now) - self.options.buckets + 1
        calls = failures = 0
        for counts in (self._shared.counts, self._pending):
            for bucket, (ok, failed) in counts.items():
                if bucket >= first:
                    calls += ok + failed
                    failures += failed
        return calls, failures

    def _trips(self, window: tuple[int, int]) -> bool:
        calls, failures = window
        return (calls >= self.options.minimum_throughput
                and failures >= self.options.failure_ratio * calls)

    def _open_locally(self, now: float) -> None:
        calls, failures = self._window(now)
        self._shared = replace(self._shared, state=BreakerState.OPEN,
                               open_until=now + self.options.break_duration, counts={})
        self._pending.clear()
        log.warning("breaker %s: opened (local-only) after %d failures in %d calls",
                    self.name, failures, calls)

    # ------------------------------------------------------------------ sharing

    def _sync(self, now: float) -> None:
        """Flush this instance's counts as deltas and refresh the cached shared state."""
        with self._lock:
            pending = {bucket: (cell[0], cell[1]) for bucket, cell in self._pending.items()}
            self._pending.clear()
            cached = self._shared
        try:
            # With deltas to add, try the cached ETag first: one request if no one else wrote.
            fresh = not (pending and cached.etag is not None
                         and cached.state is BreakerState.CLOSED)
            current = self._read() if fresh else cached
            for _ in range(_WRITE_ATTEMPTS):
                merged = self._merge(current, pending, now)
                if merged is current:
                    if not fresh:
                        current = self._read()
                    pending = {}
                    break
                written = self._write(merged)
                if written is not None:
                    current = written
                    pending = {}
                    break
                current, fresh = self._read(), True
        except _StorageFailed as failure:
            self._give_back(pending)
            self._degrade(failure, now)
            return
        self._give_back(pending)  # still contended after the attempts: next sync adds them
        if self._degraded:
            log.warning("breaker %s: Table reachable again, sharing state", self.name)
            self._degraded = False
        self._adopt(current, now)

    def _give_back(self, pending: Mapping[int, tuple[int, int]]) -> None:
        with self._lock:
            for bucket, (ok, failed) in pending.items():
                cell = self._pending.setdefault(bucket, [0, 0])
                cell[0] += ok
                cell[1] += failed

    def _merge(self, current: _Shared, pending: Mapping[int, tuple[int, int]],
               now: float) -> _Shared:
        """`current` plus the deltas, old buckets dropped, opened if the window trips.
        Counts made before a break are dropped: they belong to the period that ended."""
        if current.state is not BreakerState.CLOSED or not pending:
            return current
        first = self._bucket(now) - self.options.buckets + 1
        counts = {bucket: value for bucket, value in current.counts.items() if bucket >= first}
        for bucket, (ok, failed) in pending.items():
            if bucket >= first:
                before = counts.get(bucket, (0, 0))
                counts[bucket] = (before[0] + ok, before[1] + failed)
        calls = sum(ok + failed for ok, failed in counts.values())
        failures = sum(failed for _, failed in counts.values())
        if self._trips((calls, failures)):
            log.warning("breaker %s: opened by %s after %d failures in %d calls",
                        self.name, self.instance, failures, calls)
            return replace(current, state=BreakerState.OPEN,
                           open_until=now + self.options.break_duration, counts={})
        return replace(current, counts=counts)

    def _adopt(self, shared: _Shared, now: float) -> None:
        with self._lock:
            before = self._shared.state
            self._shared = shared
            self._syncing = False
            self._next_sync = now + self.options.sync_interval
        if before is not shared.state:
            log.info("breaker %s: %s -> %s (shared)", self.name, before.value,
                     shared.state.value)

    def _degrade(self, failure: _StorageFailed, now: float) -> None:
        with self._lock:
            was = self._degraded
            self._degraded = True
            self._syncing = False
            self._next_sync = now + self.options.storage_retry
        if not was:
            log.warning("breaker %s: Table unavailable (%s); degrading to a local-only "
                        "breaker, retrying Table in %.0f s", self.name, failure.cause,
                        self.options.storage_retry)

    def _read(self) -> _Shared:
        assert self._table is not None
        try:
            entity = self._table.get_entity(PARTITION, self._row_key)
        except ResourceNotFoundError:
            return self._create()
        except AzureError as error:
            raise _StorageFailed(map_storage_error(error)) from error
        return _Shared.from_entity(entity, str(entity.metadata["etag"]))

    def _create(self) -> _Shared:
        assert self._table is not None
        fresh = _Shared()
        try:
            metadata = self._table.create_entity(fresh.entity(self._row_key))
        except ResourceExistsError:
            return self._read()
        except AzureError as error:
            raise _StorageFailed(map_storage_error(error)) from error
        return replace(fresh, etag=metadata["etag"])

    def _write(self, shared: _Shared) -> _Shared | None:
        """Replace the entity if unchanged since `shared` was read; None if it changed."""
        assert self._table is not None
        try:
            metadata = self._table.update_entity(
                shared.entity(self._row_key), mode=UpdateMode.REPLACE, etag=shared.etag,
                match_condition=MatchConditions.IfNotModified)
        except AzureError as error:
            if getattr(error, "status_code", None) == 412:
                return None
            raise _StorageFailed(map_storage_error(error)) from error
        return replace(shared, etag=metadata["etag"])


class _StorageFailed(Exception):
    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause
