"""Scoring rules a user can read and tune: each rule that fires adds a named reason with a
score; the verdict's score is their sum (capped at 100) and the thresholds are settings.

A card's recent history lives in its `CardWindow` (one state row per card, see handlers):
the payments inside the longest sliding window, the card's long-run amount statistics and
its last known location. `score` is pure: the same window and payment give the same verdict.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any, Self

from agents.backbone.errors import ConfigurationError, InvalidEvent

log = logging.getLogger(__name__)
# The fraud agent's connection settings (agents/fraud/entities.py) share the FRAUD_ prefix.
CONNECTION_SETTINGS = frozenset({"FRAUD_EVENTHUBS", "FRAUD_SERVICEBUS"})
# The Earth's mean radius, for the great-circle distance between two payments.
EARTH_RADIUS_KM = 6371.0
# A card window keeps at most this many recent payments (bounds the row's size).
MAX_RECENT = 50


@dataclass(frozen=True)
class Rules:
    """The thresholds and scores; every field is a `FRAUD_<FIELD>` app setting."""

    velocity_window_seconds: float = 60.0
    velocity_count: int = 5
    """More than this many payments of one card inside the velocity window fires `velocity`."""
    velocity_score: int = 60
    amount_window_seconds: float = 3600.0
    amount_window_cents: int = 500_000
    """More than this total for one card inside the amount window fires `amount_velocity`."""
    amount_window_score: int = 30
    unusual_amount_factor: float = 5.0
    """A payment above this multiple of the card's own mean fires `unusual_amount`..."""
    unusual_amount_min_history: int = 3
    """...once the card has at least this many earlier payments."""
    unusual_amount_score: int = 30
    travel_max_kmh: float = 900.0
    """Faster than an airliner between two consecutive payments fires `impossible_travel`."""
    travel_score: int = 70
    alert_score: int = 60
    """A verdict at or above this score raises `fraud.alert.raised`."""
    explain_score: int = 60
    """A verdict at or above this score asks the Reasoner for an explanation."""

    @classmethod
    def from_settings(cls, env: Mapping[str, str]) -> Self:
        """`FRAUD_VELOCITY_COUNT=3` etc.; a value that is not a number is a ConfigurationError,
        a `FRAUD_*` setting that is neither a rule nor a connection is a warning naming it."""
        known = {f"FRAUD_{spec.name.upper()}" for spec in fields(cls)}
        for name in sorted(env):
            if (name.startswith("FRAUD_") and name not in known
                    and name.split("__")[0] not in CONNECTION_SETTINGS):
                log.warning("%s is not a fraud rule setting and is ignored", name)
        values: dict[str, Any] = {}
        for spec in fields(cls):
            name = f"FRAUD_{spec.name.upper()}"
            raw = env.get(name)
            if raw is None or raw == "":
                continue
            kind = float if spec.type == "float" else int
            try:
                values[spec.name] = kind(raw)
            except ValueError:
                raise ConfigurationError(f"{name}={raw!r} is not a {kind.__name__}") from None
            if values[spec.name] < 0:
                raise ConfigurationError(f"{name}={raw!r} must not be negative")
        return cls(**values)


@dataclass(frozen=True)
class Location:
    country: str
    lat: float
    lon: float

    def km_to(self, other: Location) -> float:
        """Great-circle (haversine) distance."""
        p1, p2 = math.radians(self.lat), math.radians(other.lat)
        dp, dl = p2 - p1, math.radians(other.lon - self.lon)
        h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
        return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


@dataclass(frozen=True)
class Payment:
    """One `orders.payment.charged` event, with where it sits in its Event Hubs partition."""

    event_id: str
    order_id: str
    card: str
    amount_cents: int
    at: datetime
    sequence_number: int
    location: Location | None = None

    @classmethod
    def from_event(cls, event_id: str, data: Mapping[str, Any], at: datetime,
                   sequence_number: int) -> Self:
        """The envelope's data (already valid for the orders schema); an optional `location`
        `{country, lat, lon}` must be well formed, else InvalidEvent (the event is parked)."""
        return cls(event_id, str(data["orderId"]), str(data["card"]), int(data["amountCents"]),
                   at, sequence_number, _location(event_id, data.get("location")))


def _location(event_id: str, value: object) -> Location | None:
    if value is None:
        return None
    try:
        assert isinstance(value, Mapping)
        location = Location(str(value["country"]), float(value["lat"]), float(value["lon"]))
    except (AssertionError, KeyError, TypeError, ValueError):
        raise InvalidEvent(f"payment {event_id}: location {value!r:.80} is not "
                           "{country, lat, lon}", reason="InvalidLocation") from None
    if not (-90 <= location.lat <= 90 and -180 <= location.lon <= 180):
        raise InvalidEvent(f"payment {event_id}: coordinates out of range",
                           reason="InvalidLocation")
    return location


@dataclass(frozen=True)
class Reason:
    name: str
    score: int
    detail: str


@dataclass(frozen=True)
class Verdict:
    payment: Payment
    reasons: tuple[Reason, ...]
    score: int
    alert: bool
    explain: bool

    def summary(self) -> str:
        """`velocity (6 payments in 60s) + impossible_travel (...)`, or `no rule fired`."""
        return " + ".join(f"{r.name} ({r.detail})" for r in self.reasons) or "no rule fired"

    def risk_level(self) -> str:
        return "high" if self.alert else "medium" if self.reasons else "low"

    def explain_input(self) -> dict[str, Any]:
        """What the Reasoner sees: the rules' findings, never the raw card number."""
        return {"amountCents": self.payment.amount_cents, "score": self.score,
                "reasons": [{"name": r.name, "score": r.score, "detail": r.detail}
                            for r in self.reasons]}

    def rules_only(self, why: str) -> dict[str, Any]:
        """The explanation when the model is not asked or not available."""
        return {"riskLevel": self.risk_level(),
                "rationale": f"rules only ({why}): {self.summary()}",
                "recommendedAction": "block" if self.alert else "allow"}


@dataclass
class CardWindow:
    """One card's state row: recent payments (time, amount, event id) inside the longest
    window, the count and total of all its payments, and the last location seen with its
    time. The event ids recognise a payment the orders relay published twice (Event Hubs has
    no duplicate detection; a copy gets a new sequence number)."""

    recent: list[tuple[datetime, int, str]] = field(default_factory=list)
    count: int = 0
    total_cents: int = 0
    last_location: Location | None = None
    last_location_at: datetime | None = None

    def to_state(self) -> dict[str, Any]:
        return {"recent": [[at.isoformat(), cents, event] for at, cents, event in self.recent],
                "count": self.count, "totalCents": self.total_cents,
                "lastLocation": None if self.last_location is None else {
                    "country": self.last_location.country, "lat": self.last_location.lat,
                    "lon": self.last_location.lon},
                "lastLocationAt": None if self.last_location_at is None
                else self.last_location_at.isoformat()}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Self:
        where = state.get("lastLocation")
        at = state.get("lastLocationAt")
        return cls([(datetime.fromisoformat(a), int(c), str(e)) for a, c, e in state["recent"]],
                   int(state["count"]), int(state["totalCents"]),
                   None if where is None else Location(where["country"], where["lat"],
                                                       where["lon"]),
                   None if at is None else datetime.fromisoformat(at))

    def has_seen(self, payment: Payment) -> bool:
        return any(event == payment.event_id for _, _, event in self.recent)

    def add(self, payment: Payment, rules: Rules) -> None:
        """Remember `payment` (after it was scored); drop what left every window."""
        keep = timedelta(seconds=max(rules.velocity_window_seconds,
                                     rules.amount_window_seconds))
        self.recent = [entry for entry in self.recent if payment.at - entry[0] <= keep]
        self.recent = [*self.recent, (payment.at, payment.amount_cents, payment.event_id)
                       ][-MAX_RECENT:]
        self.count += 1
        self.total_cents += payment.amount_cents
        if payment.location is not None:
            self.last_location, self.last_location_at = payment.location, payment.at


def score(window: CardWindow, payment: Payment, rules: Rules) -> Verdict:
    """The verdict on `payment` given its card's history before it."""
    reasons: list[Reason] = []
    velocity = timedelta(seconds=rules.velocity_window_seconds)
    in_velocity = 1 + sum(1 for at, _, _ in window.recent if timedelta(0) <= payment.at - at
                          <= velocity)
    if in_velocity > rules.velocity_count:
        reasons.append(Reason("velocity", rules.velocity_score,
                              f"{in_velocity} payments in {rules.velocity_window_seconds:g}s, "
                              f"limit {rules.velocity_count}"))
    amount_window = timedelta(seconds=rules.amount_window_seconds)
    in_amount = payment.amount_cents + sum(
        cents for at, cents, _ in window.recent if timedelta(0) <= payment.at - at <= amount_window)
    if in_amount > rules.amount_window_cents:
        reasons.append(Reason("amount_velocity", rules.amount_window_score,
                              f"{in_amount} cents in {rules.amount_window_seconds:g}s, "
                              f"limit {rules.amount_window_cents}"))
    if window.count >= rules.unusual_amount_min_history:
        mean = window.total_cents / window.count
        if payment.amount_cents > rules.unusual_amount_factor * mean:
            reasons.append(Reason("unusual_amount", rules.unusual_amount_score,
                                  f"{payment.amount_cents} cents is "
                                  f"{payment.amount_cents / max(mean, 1):.1f}x the card's mean "
                                  f"{mean:.0f}"))
    if (payment.location is not None and window.last_location is not None
            and window.last_location_at is not None):
        km = window.last_location.km_to(payment.location)
        hours = (payment.at - window.last_location_at).total_seconds() / 3600
        kmh = math.inf if hours <= 0 else km / hours
        if km > 0 and kmh > rules.travel_max_kmh:
            speed = "at once" if math.isinf(kmh) else f"{kmh:.0f} km/h"
            reasons.append(Reason("impossible_travel", rules.travel_score,
                                  f"{window.last_location.country} -> "
                                  f"{payment.location.country}: {km:.0f} km, {speed}"))
    total = min(100, sum(r.score for r in reasons))
    return Verdict(payment, tuple(reasons), total, total >= rules.alert_score,
                   total >= rules.explain_score)
