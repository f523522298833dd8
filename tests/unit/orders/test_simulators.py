import pytest

from agents.orders.model import Reply, Step
from agents.orders.simulators import (
    Mode,
    Switch,
    TransientServiceError,
    answer,
    scopes,
)


def test_normal_mode_succeeds_at_once() -> None:
    assert answer(Step.CHARGE_PAYMENT, Switch(), 1).reply is Reply.PAYMENT_CHARGED


def test_decline_refuses_the_charge() -> None:
    assert answer(Step.CHARGE_PAYMENT, Switch(Mode.DECLINE), 1).reply is Reply.PAYMENT_DECLINED


def test_decline_never_refuses_a_refund() -> None:
    assert answer(Step.REFUND_PAYMENT, Switch(Mode.DECLINE), 1).reply is Reply.PAYMENT_REFUNDED


def test_out_of_stock_after_charge_reserves_then_fails_allocation() -> None:
    switch = Switch(Mode.OUT_OF_STOCK_AFTER_CHARGE)
    assert answer(Step.RESERVE_STOCK, switch, 1).reply is Reply.STOCK_RESERVED
    assert answer(Step.ALLOCATE_STOCK, switch, 1).reply is Reply.STOCK_ALLOCATION_FAILED


def test_out_of_stock_refuses_the_reservation() -> None:
    assert answer(Step.RESERVE_STOCK, Switch(Mode.OUT_OF_STOCK), 1).reply is (
        Reply.STOCK_UNAVAILABLE)


def test_fail_makes_shipping_report_a_failure() -> None:
    assert answer(Step.SHIP_ORDER, Switch(Mode.FAIL), 1).reply is Reply.SHIPMENT_FAILED


def test_slow_answers_yes_but_late() -> None:
    reply = answer(Step.SHIP_ORDER, Switch(Mode.SLOW, slow_seconds=9), 1)
    assert (reply.reply, reply.delay_seconds) == (Reply.SHIPMENT_DISPATCHED, 9)


def test_flaky_fails_the_first_two_deliveries_then_succeeds() -> None:
    for delivery in (1, 2):
        with pytest.raises(TransientServiceError):
            answer(Step.RESERVE_STOCK, Switch(Mode.FLAKY), delivery)
    assert answer(Step.RESERVE_STOCK, Switch(Mode.FLAKY), 3).reply is Reply.STOCK_RESERVED


def test_scopes_go_from_most_to_least_specific() -> None:
    assert scopes("o", "c", ["a", "b"]) == ["order:o", "card:c", "sku:a", "sku:b", "*"]
