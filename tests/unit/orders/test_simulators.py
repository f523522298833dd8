import pytest

from agents.backbone.errors import RetryLater
from agents.orders.model import Action
from agents.orders.simulated.modes import (
    FLAKY_RETRY_AFTER_SECONDS,
    Mode,
    Switch,
    TransientServiceError,
    answer,
    scopes,
)


def test_normal_mode_succeeds_at_once() -> None:
    assert answer(Action.CHARGE_PAYMENT, Switch(), 1).succeeded


def test_decline_refuses_the_charge_with_a_reason() -> None:
    declined = answer(Action.CHARGE_PAYMENT, Switch(Mode.DECLINE), 1)
    assert not declined.succeeded
    assert declined.reason and "decline" in declined.reason


def test_decline_never_refuses_a_refund() -> None:
    assert answer(Action.REFUND_PAYMENT, Switch(Mode.DECLINE), 1).succeeded


def test_out_of_stock_after_charge_reserves_then_fails_allocation() -> None:
    switch = Switch(Mode.OUT_OF_STOCK_AFTER_CHARGE)
    assert answer(Action.RESERVE_STOCK, switch, 1).succeeded
    assert not answer(Action.ALLOCATE_STOCK, switch, 1).succeeded


def test_out_of_stock_refuses_the_reservation() -> None:
    assert not answer(Action.RESERVE_STOCK, Switch(Mode.OUT_OF_STOCK), 1).succeeded


def test_fail_makes_shipping_report_a_failure() -> None:
    assert not answer(Action.SHIP_ORDER, Switch(Mode.FAIL), 1).succeeded


def test_fail_never_refuses_a_release() -> None:
    assert answer(Action.RELEASE_STOCK, Switch(Mode.FAIL), 1).succeeded


def test_slow_answers_yes_but_late() -> None:
    late = answer(Action.SHIP_ORDER, Switch(Mode.SLOW, slow_seconds=9), 1)
    assert (late.succeeded, late.delay_seconds) == (True, 9)


def test_slow_never_delays_a_compensation() -> None:
    assert answer(Action.REFUND_PAYMENT, Switch(Mode.SLOW, slow_seconds=9), 1).delay_seconds == 0


def test_flaky_asks_to_be_tried_later_on_the_first_two_attempts_then_succeeds() -> None:
    for attempt in (1, 2):
        with pytest.raises(TransientServiceError) as refused:
            answer(Action.RESERVE_STOCK, Switch(Mode.FLAKY), attempt)
        assert isinstance(refused.value, RetryLater)
        assert refused.value.retry_after == FLAKY_RETRY_AFTER_SECONDS
    assert answer(Action.RESERVE_STOCK, Switch(Mode.FLAKY), 3).succeeded


def test_scopes_go_from_most_to_least_specific() -> None:
    assert scopes("o", "c", ["a", "b"]) == ["order:o", "card:c", "sku:a", "sku:b", "*"]
