"""The chaos run's invariant checker, fed hand-made evidence: it reports each broken
invariant with the ids involved and what was seen, and passes evidence that is sound."""

from __future__ import annotations

import random

import pytest
import typer

from agents.orders.edge import order_id_for
from scripts.chaos import (
    ALL_FAULTS,
    DEAD_LETTER_REASONS,
    DEAD_LETTERS_EXACT,
    ORDERS_INVARIANTS,
    PLATFORM_INVARIANTS,
    Letter,
    Movements,
    OrdersEvidence,
    PlatformEvidence,
    Promise,
    SagaSeen,
    Verdict,
    fault_kinds,
    judge,
    schedule,
)

STEPS = ("reserve_stock", "charge_payment", "allocate_stock", "ship_order")
COMPLETED_KEY, COMPENSATED_KEY = "key-completed", "key-compensated"
COMPLETED, COMPENSATED = order_id_for(COMPLETED_KEY), order_id_for(COMPENSATED_KEY)


def saga(order_id: str, status: str, reason: str | None = None) -> SagaSeen:
    return SagaSeen(order_id, status, {"step": "ship_order", "reason": reason} if reason else None,
                    dict.fromkeys(STEPS, "succeeded"))


def sound_orders() -> OrdersEvidence:
    """One order completed and one compensated after its charge, as the services hold them."""
    return OrdersEvidence(
        sagas={COMPLETED: saga(COMPLETED, "completed"),
               COMPENSATED: saga(COMPENSATED, "compensated", "timeout")},
        movements={COMPLETED: Movements(charges=1, holds=1, allocated=True, shipments=1),
                   COMPENSATED: Movements(charges=1, refunds=1, holds=1, releases=1)},
        charge_events={COMPLETED: {"event-1"}, COMPENSATED: {"event-2"}},
        answers={COMPLETED_KEY: {COMPLETED}, COMPENSATED_KEY: {COMPENSATED}},
    )


def broken(verdicts: list[Verdict]) -> dict[str, list[tuple[tuple[str, ...], str]]]:
    return {verdict.invariant: [(v.ids, v.seen) for v in verdict.violations]
            for verdict in verdicts if not verdict.held}


def test_sound_orders_evidence_breaks_nothing() -> None:
    assert broken(judge(ORDERS_INVARIANTS, sound_orders())) == {}


def test_a_double_charge_is_reported_with_its_order() -> None:
    evidence = sound_orders()
    evidence.movements[COMPLETED].charges = 2
    assert broken(judge(ORDERS_INVARIANTS, evidence))["no double charge"] == [
        ((COMPLETED,), "2 charges recorded")]


def test_a_charge_announced_twice_on_the_stream_is_a_double_charge() -> None:
    evidence = sound_orders()
    evidence.charge_events[COMPLETED] = {"event-1", "event-9"}
    assert broken(judge(ORDERS_INVARIANTS, evidence))["no double charge"] == [
        ((COMPLETED,), "2 distinct charge events on the payment stream: event-1, event-9")]


def test_a_shipped_then_refunded_order_is_reported() -> None:
    evidence = sound_orders()
    evidence.movements[COMPENSATED].shipments = 1
    assert broken(judge(ORDERS_INVARIANTS, evidence)) == {
        "nothing shipped for a compensated order": [
            ((COMPENSATED,), "compensated (timeout at ship_order) with 1 shipment(s), "
                             "1 refund(s)")]}


def test_a_compensated_order_that_kept_the_money_is_reported() -> None:
    evidence = sound_orders()
    evidence.movements[COMPENSATED].refunds = 0
    assert broken(judge(ORDERS_INVARIANTS, evidence)) == {
        "every charge belongs to a completed order or has exactly one refund": [
            ((COMPENSATED,), "compensated with 1 charge(s), 0 refund(s)")]}


def test_a_hold_never_released_is_reported() -> None:
    evidence = sound_orders()
    evidence.movements[COMPENSATED].releases = 0
    assert broken(judge(ORDERS_INVARIANTS, evidence)) == {
        "stock holds = releases + allocations": [
            ((COMPENSATED,), "compensated with 1 hold(s), 0 release(s), 0 allocation(s)")]}


def test_a_saga_still_running_is_reported_with_its_steps() -> None:
    evidence = sound_orders()
    evidence.sagas[COMPENSATED] = SagaSeen(COMPENSATED, "compensating", None,
                                           {"reserve_stock": "compensating"})
    assert broken(judge(ORDERS_INVARIANTS, evidence))["every saga terminal"] == [
        ((COMPENSATED,), "compensating; steps reserve_stock compensating")]


def test_two_orders_for_one_key_are_reported() -> None:
    evidence = sound_orders()
    evidence.answers[COMPLETED_KEY] = {COMPLETED, COMPENSATED}
    reported = broken(judge(ORDERS_INVARIANTS, evidence))["one order per Idempotency-Key"]
    assert reported[0][0] == (COMPLETED_KEY, *sorted({COMPLETED, COMPENSATED}))


def test_a_saga_no_key_names_is_reported() -> None:
    evidence = sound_orders()
    del evidence.answers[COMPENSATED_KEY]
    assert broken(judge(ORDERS_INVARIANTS, evidence))["one order per Idempotency-Key"] == [
        ((COMPENSATED,), "a saga no Idempotency-Key names")]


def test_a_charge_missing_from_the_payment_stream_is_reported() -> None:
    evidence = sound_orders()
    del evidence.charge_events[COMPENSATED]
    assert broken(judge(ORDERS_INVARIANTS, evidence)) == {
        "every charge is on the payment stream": [
            ((COMPENSATED,), "charged, but no charge event on the payment stream")]}


POISON = Promise("orders-saga", "InvalidEncoding", "malformed JSON", message_id="poison-1")
EXHAUSTED = Promise("orders-saga", "CompensationExhausted", "saga s-1 gave up", saga_id="s-1")


def sound_platform() -> PlatformEvidence:
    return PlatformEvidence(
        letters=[Letter("orders-saga", "poison-1", "InvalidEncoding", "not JSON"),
                 Letter("orders-saga", "reply-7", "CompensationExhausted", "gave up", "s-1")],
        promised=[POISON, EXHAUSTED], pending_outbox=[], undrained={})


def test_sound_platform_evidence_breaks_nothing() -> None:
    assert broken(judge(PLATFORM_INVARIANTS, sound_platform())) == {}


def test_a_promised_dead_letter_that_never_arrived_is_reported() -> None:
    evidence = sound_platform()
    evidence.letters.pop()
    assert broken(judge(PLATFORM_INVARIANTS, evidence)) == {DEAD_LETTERS_EXACT: [
        (("s-1",), "saga s-1 gave up: not in orders-saga's dead-letter queue")]}


def test_an_unexpected_dead_letter_is_reported() -> None:
    evidence = sound_platform()
    evidence.letters.append(Letter("orders-payments", "m-9", "MaxDeliveryCountExceeded", "x"))
    assert broken(judge(PLATFORM_INVARIANTS, evidence)) == {DEAD_LETTERS_EXACT: [
        (("m-9",), "unexpected in orders-payments's dead-letter queue: "
                   "MaxDeliveryCountExceeded: x")]}


def test_a_dead_letter_with_the_brokers_reason_instead_of_ours_is_reported() -> None:
    evidence = sound_platform()
    evidence.letters[0] = Letter("orders-saga", "poison-1", "MaxDeliveryCountExceeded", "")
    assert broken(judge(PLATFORM_INVARIANTS, evidence)) == {DEAD_LETTER_REASONS: [
        (("poison-1",), "malformed JSON: dead-lettered with reason 'MaxDeliveryCountExceeded', "
                        "expected 'InvalidEncoding'")]}


def test_pending_outbox_rows_and_undrained_queues_are_reported() -> None:
    evidence = sound_platform()
    evidence.pending_outbox = ["orders: o-1 -> orders-payments"]
    evidence.undrained = {"orders-shipping": {"active": 2}}
    assert broken(judge(PLATFORM_INVARIANTS, evidence)) == {
        "no outbox row pending after the sweeper": [
            (("orders: o-1 -> orders-payments",), "pending after the sweeper ran")],
        "every queue drained": [(("orders-shipping",), "2 active")]}


def test_a_seed_names_one_fault_schedule_with_every_kind() -> None:
    first = schedule(random.Random(5), ALL_FAULTS, 30.0)
    assert first == schedule(random.Random(5), ALL_FAULTS, 30.0)
    assert {event.kind for event in first} == set(ALL_FAULTS)
    assert all(3.0 <= event.at <= 24.0 for event in first)


def test_fault_kinds_take_layers_and_refuse_unknown_names() -> None:
    assert fault_kinds("process,deliver-twice") == ["host-kill", "deliver-twice"]
    assert fault_kinds("none") == []
    with pytest.raises(typer.BadParameter, match="unknown fault kind 'meteor'"):
        fault_kinds("meteor")
