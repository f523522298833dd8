from agents.orders.model import (
    LineItem,
    Order,
    OrderStatus,
    Reply,
    Step,
    StepCommand,
    StepDeadline,
)


def _order() -> Order:
    return Order.place("o-1", "c-1", [LineItem("sku-1", 2, 500)], "card-ok", "hash")


def _commands(order: Order) -> list[Step]:
    return [item.step for item in order.collect() if isinstance(item, StepCommand)]


def _advance(order: Order, *replies: Reply) -> None:
    for reply in replies:
        order.handle_reply(reply)


def test_placing_an_order_asks_for_stock_with_a_deadline() -> None:
    order = _order()
    emitted = order.collect()
    assert [type(item) for item in emitted] == [StepCommand, StepDeadline]
    assert emitted[0].step is Step.RESERVE_STOCK
    assert emitted[0].data["amountCents"] == 1000
    assert order.status is OrderStatus.RESERVING


def test_happy_path_runs_every_step_in_order_and_completes() -> None:
    order = _order()
    steps = _commands(order)
    for reply in (Reply.STOCK_RESERVED, Reply.PAYMENT_CHARGED, Reply.STOCK_ALLOCATED,
                  Reply.SHIPMENT_DISPATCHED):
        order.handle_reply(reply)
        steps += _commands(order)
    assert steps == [Step.RESERVE_STOCK, Step.CHARGE_PAYMENT, Step.ALLOCATE_STOCK,
                     Step.SHIP_ORDER]
    assert order.status is OrderStatus.COMPLETED


def test_out_of_stock_at_reservation_rejects_without_compensation() -> None:
    order = _order()
    order.collect()
    order.handle_reply(Reply.STOCK_UNAVAILABLE, "sku-1 sold out")
    assert order.status is OrderStatus.REJECTED
    assert order.collect() == []


def test_out_of_stock_after_charge_refunds_then_releases() -> None:
    order = _order()
    _advance(order, Reply.STOCK_RESERVED, Reply.PAYMENT_CHARGED)
    order.collect()
    order.handle_reply(Reply.STOCK_ALLOCATION_FAILED)
    assert _commands(order) == [Step.REFUND_PAYMENT]
    order.handle_reply(Reply.PAYMENT_REFUNDED)
    assert _commands(order) == [Step.RELEASE_STOCK]
    order.handle_reply(Reply.STOCK_RELEASED)
    assert order.status is OrderStatus.COMPENSATED


def test_payment_decline_releases_stock_without_refund() -> None:
    order = _order()
    _advance(order, Reply.STOCK_RESERVED)
    order.collect()
    order.handle_reply(Reply.PAYMENT_DECLINED)
    assert _commands(order) == [Step.RELEASE_STOCK]
    order.handle_reply(Reply.STOCK_RELEASED)
    assert order.status is OrderStatus.COMPENSATED


def test_shipping_failure_undoes_allocation_and_charge_in_reverse_order() -> None:
    order = _order()
    _advance(order, Reply.STOCK_RESERVED, Reply.PAYMENT_CHARGED, Reply.STOCK_ALLOCATED)
    order.collect()
    order.handle_reply(Reply.SHIPMENT_FAILED)
    assert _commands(order) == [Step.RELEASE_STOCK]
    order.handle_reply(Reply.STOCK_RELEASED)
    assert _commands(order) == [Step.REFUND_PAYMENT]
    order.handle_reply(Reply.PAYMENT_REFUNDED)
    assert order.status is OrderStatus.COMPENSATED


def test_a_timed_out_charge_is_refunded_because_it_may_have_happened() -> None:
    order = _order()
    _advance(order, Reply.STOCK_RESERVED)
    deadline = [i for i in order.collect() if isinstance(i, StepDeadline)][-1]
    order.handle_deadline(deadline.step, deadline.sequence)
    assert _commands(order) == [Step.REFUND_PAYMENT]
    assert order.status is OrderStatus.COMPENSATING


def test_a_stale_deadline_is_ignored() -> None:
    order = _order()
    first = next(i for i in order.collect() if isinstance(i, StepDeadline))
    order.handle_reply(Reply.STOCK_RESERVED)
    order.handle_deadline(first.step, first.sequence)
    assert order.status is OrderStatus.CHARGING


def test_a_missed_compensation_deadline_asks_again() -> None:
    order = _order()
    _advance(order, Reply.STOCK_RESERVED)
    order.collect()
    order.handle_reply(Reply.PAYMENT_DECLINED)
    deadline = next(i for i in order.collect() if isinstance(i, StepDeadline))
    order.handle_deadline(deadline.step, deadline.sequence)
    retried = [i for i in order.collect() if isinstance(i, StepCommand)]
    assert [(c.step, c.attempt) for c in retried] == [(Step.RELEASE_STOCK, 2)]


def test_a_late_success_after_compensation_started_is_ignored() -> None:
    order = _order()
    _advance(order, Reply.STOCK_RESERVED)
    order.collect()
    order.handle_fraud_alert("velocity")
    order.collect()
    order.handle_reply(Reply.PAYMENT_CHARGED)
    assert order.status is OrderStatus.COMPENSATING
    assert order.collect() == []
    assert order.timeline[-1].status == "ignored"


def test_fraud_alert_while_charging_refunds_and_releases() -> None:
    order = _order()
    _advance(order, Reply.STOCK_RESERVED)
    order.collect()
    order.handle_fraud_alert("card velocity")
    assert _commands(order) == [Step.REFUND_PAYMENT]
    order.handle_reply(Reply.PAYMENT_REFUNDED)
    assert _commands(order) == [Step.RELEASE_STOCK]


def test_fraud_alert_after_shipment_refunds_only() -> None:
    order = _order()
    _advance(order, Reply.STOCK_RESERVED, Reply.PAYMENT_CHARGED, Reply.STOCK_ALLOCATED,
             Reply.SHIPMENT_DISPATCHED)
    order.collect()
    order.handle_fraud_alert("chargeback risk")
    assert _commands(order) == [Step.REFUND_PAYMENT]
    order.handle_reply(Reply.PAYMENT_REFUNDED)
    assert order.status is OrderStatus.COMPENSATED


def test_fraud_alert_on_a_compensated_order_changes_nothing() -> None:
    order = _order()
    order.collect()
    order.handle_reply(Reply.STOCK_UNAVAILABLE)
    order.handle_fraud_alert("late")
    assert order.status is OrderStatus.REJECTED
    assert order.collect() == []
