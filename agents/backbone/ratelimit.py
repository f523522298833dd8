"""Rate limiting at an HTTP edge: GCRA per caller, shared by every instance through Table.

pyrate-limiter supplies the algorithm (`GCRA`: one theoretical arrival time per key, exact
integer microseconds); this module supplies the shared state it has no store for: one Table
entity per (policy, caller) written with its ETag, so two instances never both spend one slot.

Storage requests: an admitted request costs one conditional write when this instance wrote the
key last (its cached ETag still holds), else a read and a write. A refused caller is refused
from the local cache until the moment it may try again: a cached arrival time is never ahead of
the stored one (arrival times only move forward), so a refusal decided locally is always right,
and a storm against one key costs no storage request per refused request.

If Table itself fails, the limiter falls back to a bucket per key in this process and logs it
once; it tries Table again after `retry_storage_after`. An outage of the limiter's storage
slows nothing and refuses no one who would have been admitted by one instance.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from agents.backbone import telemetry
from agents.backbone.errors import ConfigurationError
from agents.backbone.tables import table_key

if TYPE_CHECKING:
    from azure.data.tables import TableClient
    from pyrate_limiter import GCRA, Rate

log = logging.getLogger(__name__)

STATE_ROW = "gcra"
CALLER_KEYS = ("function-key", "client-id", "ip")
_UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60,
          "h": 3600, "hour": 3600}


@dataclass(frozen=True)
class RatePolicy:
    """`limit` requests per `window` per caller, up to `burst` at once (default: `limit`);
    `caller` says what identifies a caller: its function key, its client id, or its IP."""

    name: str
    limit: int
    window: timedelta
    burst: int | None = None
    caller: str = "ip"

    def __post_init__(self) -> None:
        if self.limit < 1 or self.window <= timedelta(0) or (self.burst or 1) < 1:
            raise ConfigurationError(f"rate policy {self.name}: limit, window and burst must "
                                     "be positive")
        if self.caller not in CALLER_KEYS:
            raise ConfigurationError(f"rate policy {self.name}: caller must be one of "
                                     f"{', '.join(CALLER_KEYS)}, not {self.caller!r}")

    @property
    def capacity(self) -> int:
        return self.burst or self.limit

    @classmethod
    def from_setting(cls, name: str, env: Mapping[str, str], setting: str, default: str
                     ) -> RatePolicy | None:
        """The policy `env[setting]` (else `default`) describes; None for `off`."""
        spec = env.get(setting) or default
        return None if spec.strip().lower() == "off" else cls.parse(name, spec)

    @classmethod
    def parse(cls, name: str, spec: str) -> RatePolicy:
        """A policy from a setting such as `20/s`, `600/min burst=50 caller=function-key`.
        An unknown field is an error naming it, never silently ignored."""
        head, *options = spec.split()
        match = re.fullmatch(r"(\d+)/(\d*)\s*([a-z]+)", head.strip().lower())
        if match is None or match.group(3) not in _UNITS:
            raise ConfigurationError(f"rate limit {name}: {spec!r} is not '<count>/<s|min|h>'")
        window = timedelta(seconds=int(match.group(2) or 1) * _UNITS[match.group(3)])
        fields: dict[str, str] = {}
        for option in options:
            key, _, value = option.partition("=")
            if key not in ("burst", "caller") or not value:
                raise ConfigurationError(f"rate limit {name}: unknown field {option!r} in "
                                         f"{spec!r} (known: burst=<n>, caller=<kind>)")
            fields[key] = value
        burst = int(fields["burst"]) if "burst" in fields else None
        return cls(name, int(match.group(1)), window, burst, fields.get("caller", "ip"))


@dataclass(frozen=True)
class Admission:
    """The limiter's answer for one request, and the headers that tell the caller."""

    policy: RatePolicy
    allowed: bool
    remaining: int
    reset_seconds: int
    retry_after_seconds: int | None = None

    def headers(self) -> dict[str, str]:
        """`RateLimit-Policy` / `RateLimit` (IETF httpapi-ratelimit-headers, structured
        fields: quota `q` per window `w`, remaining `r`, seconds `t` until it is whole again),
        and `Retry-After` on a refusal."""
        name = self.policy.name
        window = int(self.policy.window.total_seconds())
        headers = {
            "RateLimit-Policy": f'"{name}";q={self.policy.capacity};w={window}',
            "RateLimit": f'"{name}";r={self.remaining};t={self.reset_seconds}',
        }
        if self.retry_after_seconds is not None:
            headers["Retry-After"] = str(self.retry_after_seconds)
        return headers


def caller_key(policy: RatePolicy, headers: Mapping[str, str], params: Mapping[str, str]
               ) -> str:
    """Who is calling, as the Functions HTTP edge tells: the function key (header
    `x-functions-key` or query `code`), the App Service authentication client id, or the
    client IP (the first `X-Forwarded-For` hop, which the front end sets). Keys are hashed
    before they are stored."""
    lowered = {k.lower(): v for k, v in headers.items()}
    if policy.caller == "function-key":
        value = lowered.get("x-functions-key") or params.get("code") or ""
    elif policy.caller == "client-id":
        value = lowered.get("x-ms-client-principal-id", "")
    else:
        value = lowered.get("x-forwarded-for", "").split(",")[0].strip()
        value = value.rsplit(":", 1)[0] if value.count(":") == 1 else value  # drop ip:port
    return value or "anonymous"


@dataclass
class _Known:
    """What this instance last saw of one key: the arrival time, its ETag, and until when
    the key is refused without asking storage."""

    tat_us: int = 0
    etag: str | None = None
    refused_until_ms: int = 0


class RateLimiter:
    """One policy over one table; thread-safe enough for a Functions worker (each key's
    decision is a compare-and-swap on storage; the local cache only ever errs towards asking
    storage again)."""

    def __init__(
        self,
        table: TableClient,
        policy: RatePolicy,
        *,
        clock: Callable[[], float] = time.time,
        attempts: int = 10,
        retry_storage_after: timedelta = timedelta(seconds=30),
    ) -> None:
        from pyrate_limiter import GCRA, Rate  # ~0.1 s to import: on first use, not cold start

        self.table = table
        self.policy = policy
        self._clock = clock
        self._attempts = attempts
        self._retry_storage_after_ms = int(retry_storage_after.total_seconds() * 1000)
        self._gcra: GCRA = GCRA()
        self._rates: list[Rate] = [Rate(policy.limit, int(policy.window.total_seconds() * 1000),
                                        policy.capacity)]
        self._known: dict[str, _Known] = {}
        self._local_since_ms: int | None = None

    def admit_request(self, headers: Mapping[str, str], params: Mapping[str, str]
                      ) -> Admission:
        """`admit` for the caller an HTTP request names (see `caller_key`)."""
        return self.admit(caller_key(self.policy, headers, params))

    def admit(self, caller: str) -> Admission:
        now_ms = int(self._clock() * 1000)
        key = table_key(f"{self.policy.name}|{hashlib.sha256(caller.encode()).hexdigest()}")
        known = self._known.setdefault(key, _Known())
        if now_ms < known.refused_until_ms:
            return self._refusal(known, now_ms)
        if self._local_since_ms is not None:
            if now_ms - self._local_since_ms < self._retry_storage_after_ms:
                return self._decide_locally(known, now_ms)
            self._local_since_ms = None
            log.warning("rate limit %s: trying Table storage again", self.policy.name)
        from azure.core.exceptions import AzureError

        try:
            return self._decide_shared(key, known, now_ms)
        except AzureError as error:
            self._local_since_ms = now_ms
            log.warning("rate limit %s: Table storage failed (%s); limiting per instance "
                        "until it answers again", self.policy.name, error)
            return self._decide_locally(known, now_ms)

    def _decide_shared(self, key: str, known: _Known, now_ms: int) -> Admission:
        if known.etag is None:
            self._read(key, known)
        for _ in range(self._attempts):
            (tat,), decision = self._gcra.step(self._rates, (known.tat_us,), now_ms, 1)
            if not decision.allowed:
                known.refused_until_ms = now_ms + (decision.retry_after_ms or 1000)
                return self._refusal(known, now_ms)
            if self._write(key, known, int(tat)):
                return self._admission(int(tat), now_ms)
            self._read(key, known)
        # Every attempt lost a race with another instance: the key is that busy; refuse briefly.
        known.refused_until_ms = now_ms + 1000
        return self._refusal(known, now_ms)

    def _decide_locally(self, known: _Known, now_ms: int) -> Admission:
        (tat,), decision = self._gcra.step(self._rates, (known.tat_us,), now_ms, 1)
        if not decision.allowed:
            known.refused_until_ms = now_ms + (decision.retry_after_ms or 1000)
            return self._refusal(known, now_ms)
        known.tat_us, known.etag = int(tat), None  # storage must be read again when it is back
        return self._admission(int(tat), now_ms)

    def _read(self, key: str, known: _Known) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            entity = self.table.get_entity(key, STATE_ROW)
        except ResourceNotFoundError:
            known.tat_us, known.etag = 0, None
            return
        known.tat_us, known.etag = int(entity["Tat"]), entity.metadata["etag"]

    def _write(self, key: str, known: _Known, tat_us: int) -> bool:
        """Compare-and-swap the arrival time; False if another instance wrote first."""
        from azure.core import MatchConditions
        from azure.core.exceptions import (
            ResourceExistsError,
            ResourceModifiedError,
            ResourceNotFoundError,
        )
        from azure.data.tables import UpdateMode

        entity: dict[str, Any] = {"PartitionKey": key, "RowKey": STATE_ROW, "Tat": str(tat_us)}
        try:
            if known.etag is None:
                metadata = self.table.create_entity(entity)
            else:
                metadata = self.table.update_entity(
                    entity, mode=UpdateMode.REPLACE, etag=known.etag,
                    match_condition=MatchConditions.IfNotModified)
        except (ResourceExistsError, ResourceModifiedError):
            return False
        except ResourceNotFoundError:  # purged under us: insert on the next attempt
            known.etag = None
            return False
        known.tat_us, known.etag = tat_us, metadata["etag"]
        return True

    def _admission(self, tat_us: int, now_ms: int) -> Admission:
        owed = self._gcra.consumed(self._rates, (tat_us,), now_ms)
        return Admission(self.policy, True, max(0, self.policy.capacity - owed),
                         _seconds(tat_us / 1000 - now_ms))

    def _refusal(self, known: _Known, now_ms: int) -> Admission:
        telemetry.count_refusal(self.policy.name)
        return Admission(self.policy, False, 0, _seconds(known.tat_us / 1000 - now_ms),
                         max(1, _seconds(known.refused_until_ms - now_ms)))


def _seconds(milliseconds: float) -> int:
    return max(0, math.ceil(milliseconds / 1000))
