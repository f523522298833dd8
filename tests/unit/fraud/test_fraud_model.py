"""The scoring rules: each fires with a named reason and its score; thresholds are settings."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from agents.backbone.errors import ConfigurationError, InvalidEvent
from agents.fraud.model import CONNECTION_SETTINGS, CardWindow, Location, Payment, Rules, score
from tests.infra import templates

DEFAULT = Rules()
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
PARIS = {"country": "FR", "lat": 48.86, "lon": 2.35}
LYON = {"country": "FR", "lat": 45.76, "lon": 4.84}
SYDNEY = {"country": "AU", "lat": -33.87, "lon": 151.21}


def payment(n: int, *, seconds: float = 0, cents: int = 1_000,
            location: dict[str, object] | None = None) -> Payment:
    data = {"orderId": f"o-{n}", "card": "card-1", "amountCents": cents, "location": location}
    return Payment.from_event(f"e-{n}", data, T0 + timedelta(seconds=seconds), n)


def history(*payments: Payment, rules: Rules = DEFAULT) -> CardWindow:
    window = CardWindow()
    for item in payments:
        window.add(item, rules)
    return window


def names(window: CardWindow, item: Payment, rules: Rules = DEFAULT) -> list[str]:
    return [reason.name for reason in score(window, item, rules).reasons]


def test_velocity_fires_above_the_count_inside_the_window() -> None:
    window = history(*(payment(n, seconds=n) for n in range(5)))
    verdict = score(window, payment(5, seconds=5), Rules())
    assert [r.name for r in verdict.reasons] == ["velocity"]
    assert verdict.score == Rules().velocity_score
    assert "6 payments in 60s" in verdict.summary()


def test_velocity_does_not_fire_at_the_count_or_once_the_window_has_passed() -> None:
    window = history(*(payment(n, seconds=n) for n in range(4)))
    assert names(window, payment(4, seconds=4)) == []
    window = history(*(payment(n, seconds=n) for n in range(5)))
    assert names(window, payment(5, seconds=200)) == []


def test_amount_velocity_fires_when_the_card_spends_beyond_the_limit_in_the_hour() -> None:
    window = history(payment(0, cents=300_000), payment(1, seconds=600, cents=150_000))
    assert names(window, payment(2, seconds=1200, cents=100_000)) == ["amount_velocity"]


def test_an_amount_far_above_the_cards_own_mean_fires_once_it_has_history() -> None:
    short = history(payment(0, seconds=0), payment(1, seconds=100))
    assert names(short, payment(2, seconds=200, cents=9_000)) == []
    window = history(*(payment(n, seconds=n * 100) for n in range(3)))
    assert names(window, payment(3, seconds=300, cents=9_000)) == ["unusual_amount"]


def test_impossible_travel_fires_between_paris_and_sydney_an_hour_apart() -> None:
    window = history(payment(0, location=PARIS))
    verdict = score(window, payment(1, seconds=3600, location=SYDNEY), Rules())
    assert [r.name for r in verdict.reasons] == ["impossible_travel"]
    assert verdict.alert and verdict.explain
    assert "FR -> AU" in verdict.summary()


def test_a_trip_a_train_can_make_is_not_impossible_travel() -> None:
    window = history(payment(0, location=PARIS))
    assert names(window, payment(1, seconds=3 * 3600, location=LYON)) == []


def test_reasons_add_up_and_the_alert_threshold_decides() -> None:
    rules = Rules(alert_score=70)
    window = history(*(payment(n, seconds=n, location=PARIS) for n in range(5)), rules=rules)
    both = score(window, payment(5, seconds=6, location=SYDNEY), rules)
    assert [r.name for r in both.reasons] == ["velocity", "impossible_travel"]
    assert both.score == 100 and both.alert
    alone = score(history(payment(0)), payment(1, seconds=1, cents=1_000), rules)
    assert alone.score == 0 and not alone.alert and alone.risk_level() == "low"


def test_thresholds_come_from_settings_and_a_bad_value_is_refused_by_name() -> None:
    rules = Rules.from_settings({"FRAUD_VELOCITY_COUNT": "2", "FRAUD_TRAVEL_MAX_KMH": "300.5"})
    assert (rules.velocity_count, rules.travel_max_kmh) == (2, 300.5)
    assert rules.alert_score == Rules().alert_score
    with pytest.raises(ConfigurationError, match="FRAUD_ALERT_SCORE"):
        Rules.from_settings({"FRAUD_ALERT_SCORE": "high"})


def test_a_malformed_location_is_an_invalid_event() -> None:
    with pytest.raises(InvalidEvent, match="location"):
        payment(0, location={"country": "FR", "lat": "north"})
    with pytest.raises(InvalidEvent, match="out of range"):
        payment(0, location={"country": "FR", "lat": 91, "lon": 0})


def test_the_window_survives_its_state_row_round_trip() -> None:
    window = history(payment(0, location=PARIS), payment(1, seconds=5))
    again = CardWindow.from_state(window.to_state())
    assert again == window
    assert again.last_location == Location("FR", 48.86, 2.35)


def test_a_fraud_setting_that_is_no_rule_is_a_warning_naming_it(
        caplog: pytest.LogCaptureFixture) -> None:
    Rules.from_settings({"FRAUD_VELOCITY_LIMIT": "3", "FRAUD_EVENTHUBS": "Endpoint=sb://x",
                         "FRAUD_SERVICEBUS__fullyQualifiedNamespace": "x"})
    assert [r.getMessage() for r in caplog.records] == [
        "FRAUD_VELOCITY_LIMIT is not a fraud rule setting and is ignored"]


def test_every_fraud_setting_in_the_sample_and_in_bicep_is_a_rule_or_a_connection() -> None:
    local = json.loads((templates.REPO / "local.settings.sample.json").read_text())["Values"]
    names = {n.split("__")[0] for n in [*local, *templates.app_settings()]
             if n.startswith("FRAUD_")}
    rules = {f"FRAUD_{name.upper()}" for name in Rules.__dataclass_fields__}
    assert names - rules - CONNECTION_SETTINGS == set()
    assert {"FRAUD_ALERT_SCORE", "FRAUD_VELOCITY_COUNT"} <= names
