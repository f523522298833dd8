"""GET /api/orders/{id}'s body: formatted from the saga's structured step log."""

from __future__ import annotations

from datetime import UTC, datetime

from agents.backbone.saga import LogEntry, LogEvent, Phase, SagaStatus, SagaView, StepStatus
from agents.orders.blueprint import order_view

AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _view(*log: LogEntry, status: SagaStatus = SagaStatus.RUNNING) -> dict:
    saga = SagaView(saga_id="o1", status=status, data={"amountCents": 2500},
                    steps={"reserve_stock": {"status": StepStatus.SUCCEEDED},
                           "ship_order": {"status": StepStatus.IN_DOUBT}},
                    results={}, failure=None, log=list(log))
    return order_view(saga)


def test_each_timeline_entry_carries_the_logs_fields_and_a_detail_made_from_them() -> None:
    order = _view(LogEntry("ship_order", Phase.ACTION, LogEvent.SENT, AT, attempt=2))
    assert order["timeline"] == [{
        "step": "ship_order", "phase": "action", "status": "sent", "attempt": 2,
        "reason": None, "at": AT.isoformat(), "detail": "attempt 2"}]


def test_an_in_doubt_step_is_the_step_in_flight_and_says_it_goes_again() -> None:
    order = _view(LogEntry("ship_order", Phase.ACTION, LogEvent.IN_DOUBT, AT, attempt=1))
    assert order["step"] == "ship_order"
    assert order["timeline"][0]["detail"] == (
        "attempt 1 missed its deadline: the same command goes again")


def test_failures_late_replies_and_refused_aborts_read_as_sentences() -> None:
    order = _view(
        LogEntry("charge_payment", Phase.ACTION, LogEvent.FAILED, AT, attempt=1,
                 reason="card declined"),
        LogEntry("charge_payment", Phase.ACTION, LogEvent.LATE_SUCCESS, AT, attempt=1),
        LogEntry("charge_payment", Phase.COMPENSATION, LogEvent.GAVE_UP, AT, attempt=5,
                 reason="timeout"),
        LogEntry("ship_order", Phase.ACTION, LogEvent.ABORT_REFUSED, AT, reason="fraud"),
        status=SagaStatus.FAILED)
    assert order["status"] == "failed"
    assert [entry["detail"] for entry in order["timeline"]] == [
        "attempt 1: card declined",
        "attempt 1 succeeded after the saga stopped waiting: recorded only",
        "after 5 attempts: timeout",
        "fraud: past the point of no return, the order goes ahead",
    ]
